"""The optional download URL of an artifact: checked, signed with the manifest, no part of the
content address, and absent from refs that have none (their signed form is unchanged)."""

from __future__ import annotations

import dataclasses

import pytest

from edgewise_wire import ArtifactRef, SchemaError
from edgewise_wire.manifest import MAX_URL_LENGTH, check_artifact_url

DATA = bytes(range(256)) * 20


def test_a_ref_without_url_keeps_its_exact_form() -> None:
    ref = ArtifactRef.describe(DATA, 1024)
    assert "url" not in ref.to_dict()
    assert ArtifactRef.from_dict(ref.to_dict(), "a").url is None


def test_the_url_round_trips_and_is_no_part_of_the_address() -> None:
    ref = ArtifactRef.describe(DATA, 1024)
    located = dataclasses.replace(ref, url="https://s3.example.com/b/p/ab/x?X-Amz-Signature=1")
    back = ArtifactRef.from_dict(located.to_dict(), "a")
    assert back.url == located.url
    assert back == ref and hash(back) == hash(ref)


@pytest.mark.parametrize("bad", [
    "ftp://host/x", "file:///etc/passwd", "//host/x", "http://", "https:///path",
    "http://host/a b", "http://host/\x00", "http://host/\r\nX-Injected: 1", "javascript:alert(1)",
    "http://" + "a" * MAX_URL_LENGTH,
])
def test_bad_urls_are_refused(bad: str) -> None:
    with pytest.raises(SchemaError):
        check_artifact_url(bad)
    d = {**ArtifactRef.describe(DATA, 1024).to_dict(), "url": bad}
    with pytest.raises(SchemaError):
        ArtifactRef.from_dict(d, "a")


def test_a_url_that_is_not_a_string_is_refused() -> None:
    d = {**ArtifactRef.describe(DATA, 1024).to_dict(), "url": 5}
    with pytest.raises(SchemaError):
        ArtifactRef.from_dict(d, "a")
