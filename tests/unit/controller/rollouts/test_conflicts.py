import pytest

from controller import errors
from controller.rollouts.conflicts import ConflictError, check_conflict
from controller.rollouts.engine import initial_state, release_devices
from controller.rollouts.spec import RolloutSpec
from controller.rollouts.spec_parse import parse_waves

BERLIN = {f"ber-{i}" for i in range(5)}
MUNICH = {f"muc-{i}" for i in range(5)}


def spec(name: str, priority: int = 0, model: str = "cam") -> RolloutSpec:
    return RolloutSpec(model=model, version=4, name=name, priority=priority)


def test_disjoint_rollouts_do_not_conflict() -> None:
    result = check_conflict(spec("new"), MUNICH, [(spec("old"), BERLIN)])
    assert result.moves == {} and result.devices == set()


@pytest.mark.parametrize("priority", [0, -1])
def test_overlap_without_higher_priority_is_refused(priority: int) -> None:
    with pytest.raises(ConflictError) as info:
        check_conflict(spec("new", priority), {"ber-1", "ber-2", "muc-0"},
                       [(spec("old"), BERLIN), (spec("other"), {"x"})])
    err = info.value
    assert err.conflicts == {"old": ("ber-1", "ber-2")}
    assert str(err) == (
        "rollout 'new' overlaps rollout 'old' (priority 0) on 2 devices: ber-1, ber-2; "
        "give it a priority above 0 to take these devices over, or narrow its selector")
    assert isinstance(err, errors.ConflictError)  # the HTTP layer maps it to 409


def test_any_model_conflicts_because_a_device_has_one_desired_model() -> None:
    with pytest.raises(ConflictError, match="'thermo:4'"):
        check_conflict(spec("new"), BERLIN, [(RolloutSpec(model="thermo", version=4), BERLIN)])


def test_higher_priority_takes_the_devices_over() -> None:
    result = check_conflict(spec("hotfix", priority=10), BERLIN | {"muc-0"},
                            [(spec("old"), BERLIN), (spec("munich", 3), MUNICH)])
    assert result.moves == {"old": tuple(sorted(BERLIN)), "munich": ("muc-0",)}
    assert result.devices == BERLIN | {"muc-0"}


def test_one_blocking_rollout_refuses_the_whole_start() -> None:
    with pytest.raises(ConflictError) as info:
        check_conflict(spec("new", priority=5), BERLIN | MUNICH,
                       [(spec("low", 1), BERLIN), (spec("high", 9), MUNICH)])
    assert set(info.value.conflicts) == {"high"}
    assert "give it a priority above 9" in str(info.value)


def test_long_device_lists_are_shortened() -> None:
    many = {f"d{i:02d}" for i in range(25)}
    with pytest.raises(ConflictError, match=r"d09 and 15 more;"):
        check_conflict(spec("new"), many, [(spec("old"), many)])


def test_the_loser_releases_the_moved_devices() -> None:
    old = spec("old")
    state = initial_state(RolloutSpec(model="cam", version=3, waves=parse_waves("1,100%")),
                          BERLIN)
    moved = check_conflict(spec("hotfix", 1), {"ber-0", "ber-1"}, [(old, BERLIN)]).moves["old"]
    released = release_devices(state, moved, "taken over by 'hotfix'")
    assert set(released.assignment) == BERLIN - {"ber-0", "ber-1"}
    assert released.reasons[-1] == "2 devices released: taken over by 'hotfix'"
    assert release_devices(released, moved, "again") is released
