"""ArtifactDigest, fed in any pieces, describes an artifact exactly as ArtifactRef.describe does
from the whole bytes (the REST upload streams to disk and hashes on the way)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.models.artifact_store import ArtifactDigest
from edgewise_wire import ArtifactRef


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=5000), chunk_size=st.integers(1, 700),
       cuts=st.lists(st.integers(0, 5000), max_size=8))
def test_pieces_describe_like_the_whole(data: bytes, chunk_size: int, cuts: list[int]) -> None:
    digest = ArtifactDigest(chunk_size)
    start = 0
    for cut in sorted(c for c in cuts if c <= len(data)) + [len(data)]:
        digest.update(data[start:cut])
        start = cut
    assert digest.ref() == ArtifactRef.describe(data, chunk_size)


def test_empty_and_exact_multiples() -> None:
    for data in (b"", b"x" * 64, b"x" * 65):
        digest = ArtifactDigest(32)
        digest.update(data)
        assert digest.ref() == ArtifactRef.describe(data, 32)


def test_a_chunk_size_below_one_is_refused() -> None:
    from controller.errors import ValidationError

    with pytest.raises(ValidationError):
        ArtifactDigest(0)
