"""Replica settings and the order of reports stored by two replicas."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import load_controller_config
from controller.errors import ValidationError
from controller.fleet.store import FleetStore
from controller.storage import migrator
from controller.storage.db import Database
from edgewise_wire import Reported


def test_an_older_report_stored_after_a_newer_one_is_not_applied(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "c.sqlite"))
    migrator.upgrade(db)
    fleet = FleetStore(db)
    fleet.set_reported("d1", Reported(state="active", active=None, ts=200.0))
    fleet.set_reported("d1", Reported(state="downloading", active=None, ts=100.0))  # late
    [row] = fleet.list_devices()
    assert row["state"] == "active" and fleet.stale_reports == 1
    fleet.set_reported("d1", Reported(state="failed", active=None, ts=300.0))
    [row] = fleet.list_devices()
    assert row["state"] == "failed" and fleet.stale_reports == 1
    db.dispose()


def test_a_share_group_with_topic_characters_is_refused() -> None:
    assert load_controller_config(share_group="edgewise-1").share_group == "edgewise-1"
    for bad in ("a/b", "a+", "#", ""):
        with pytest.raises(ValidationError, match="shared-subscription group"):
            load_controller_config(share_group=bad)
