import json

import pytest

from edgewise_monitoring.errors import ProfileError
from edgewise_monitoring.reference import ReferenceProfile, profile_id

PROFILE = {
    "n": 1000,
    "bins": 3,
    "features": [
        {"name": "temp", "edges": [10.0, 20.0], "proportions": [0.3, 0.4, 0.3]},
        {"name": "const", "edges": [], "proportions": [1.0]},
    ],
    "prediction": {"kind": "categorical", "labels": ["ok", "fault"], "proportions": [0.9, 0.1]},
}


def test_parses_the_manifest_format() -> None:
    ref = ReferenceProfile.from_dict(PROFILE)
    assert ref.n == 1000
    assert [f.name for f in ref.features] == ["temp", "const"]
    assert ref.features[1].edges == ()
    assert ref.prediction is not None and ref.prediction.labels == ("ok", "fault")
    assert ref.profile_id == profile_id(json.loads(json.dumps(PROFILE)))  # stable over JSON


def test_empty_profile_disables_drift() -> None:
    ref = ReferenceProfile.from_dict({})
    assert ref.is_empty and ref.profile_id is None


@pytest.mark.parametrize(
    "bad",
    [
        {"n": 0},
        {"n": 10, "features": [{"name": "a", "edges": [2.0, 1.0], "proportions": [0.3, 0.3, 0.4]}]},
        {"n": 10, "features": [{"name": "a", "edges": [1.0], "proportions": [0.5, 0.6]}]},
        {"n": 10, "features": [{"name": "a", "edges": [1.0], "proportions": [1.0]}]},
        {"n": 10, "features": [{"name": "a", "edges": ["x"], "proportions": [0.5, 0.5]}]},
        {"n": 10, "prediction": {"kind": "ordinal", "proportions": [1.0]}},
        {"n": 10, "prediction": {"kind": "categorical", "labels": [1, 1.0], "proportions": [0.5, 0.5]}},
        {"n": 10, "bins": float("nan")},
    ],
)
def test_malformed_profiles_are_refused(bad: dict) -> None:
    with pytest.raises(ProfileError):
        ReferenceProfile.from_dict(bad)
