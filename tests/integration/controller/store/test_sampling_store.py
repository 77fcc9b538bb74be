"""The sampling shares per selector on both backends: stored under the canonical spelling,
replaced when set again, cleared once."""

from __future__ import annotations

import pytest

from controller.errors import NotFoundError, ValidationError
from controller.sampling.store import SamplingStore
from controller.storage.db import Database


def test_set_replace_list_and_clear(db: Database) -> None:
    store = SamplingStore(db)
    store.set("group = berlin", 0.1, now=1.0)
    store.set("tier!=prod", 0.5, now=2.0)
    store.set("group==berlin", 0.2, now=3.0)  # the same selector, spelled otherwise
    assert [(str(r.selector), r.share, r.set_at) for r in store.rules()] == [
        ("tier!=prod", 0.5, 2.0), ("group=berlin", 0.2, 3.0)]
    store.clear("group=berlin")
    assert [str(r.selector) for r in store.rules()] == ["tier!=prod"]
    with pytest.raises(NotFoundError, match="group=berlin"):
        store.clear("group=berlin")
    with pytest.raises(ValidationError):
        store.set("group=", 0.5, now=4.0)
    with pytest.raises(ValidationError, match="share"):
        store.set("group=munich", 0.0, now=4.0)
    assert len(store.rules()) == 1
