"""A class-specific model version and the devices a rollout or deployment selects: devices
known to be of another class are skipped with the reason, devices of unknown class are targeted
(their agent decides), and a selection of nothing but other classes is refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.fleet.device_registry import DeviceRow
from controller.fleet.versions import ModelVersion
from controller.rollouts.decisions import Advance, Complete
from controller.rollouts.device_classes import (
    of_other_class,
    skip_reason,
    skipped_view,
    split_by_class,
)
from controller.rollouts.engine import (
    RolloutState,
    Status,
    admit_late_joiners,
    apply,
    decide,
    initial_state,
    skip_devices,
)
from controller.rollouts.gates import DeviceObservation
from controller.rollouts.observations import plan_ownership, rollout_view
from controller.rollouts.render import outcome_lines, render_rollout
from controller.rollouts.spec import RolloutSpec
from controller.rollouts.spec_parse import parse_waves
from controller.rollouts.store import RolloutRecord

V = ModelVersion("cam", 3)
CLASSES = {"pi-1": "pi4", "pi-2": "pi4", "cam-1": "camera-v2", "cam-2": "camera-v2",
           "old-1": None}


@pytest.mark.parametrize("version_class, device_class, other", [
    ("pi4", "camera-v2", True),
    ("pi4", "pi4", False),
    ("pi4", None, False),      # unknown: an older agent, which decides for itself
    ("pi4", "", False),
    (None, "camera-v2", False),  # a version for any class
])
def test_only_a_known_other_class_is_another_class(version_class: str | None,
                                                   device_class: str | None,
                                                   other: bool) -> None:
    assert of_other_class(version_class, device_class) is other


def test_split_targets_the_versions_class_and_the_unknown_and_skips_the_others() -> None:
    split = split_by_class(CLASSES, CLASSES, "pi4")
    assert split.targets == ("old-1", "pi-1", "pi-2")
    assert split.skipped == {"cam-1": "camera-v2", "cam-2": "camera-v2"}
    assert split.refusal("cam:3") is None
    assert skipped_view("pi4", split.skipped) == [
        {"device_id": "cam-1", "device_class": "camera-v2",
         "reason": "other_class: the device is 'camera-v2', the version is for 'pi4'"},
        {"device_id": "cam-2", "device_class": "camera-v2",
         "reason": skip_reason("pi4", "camera-v2")}]


def test_a_version_for_any_class_skips_nothing() -> None:
    split = split_by_class(CLASSES, CLASSES, None)
    assert split.targets == tuple(sorted(CLASSES)) and split.skipped == {}


def test_a_selection_of_only_other_classes_is_refused_in_one_line() -> None:
    split = split_by_class(["cam-1", "cam-2"], CLASSES, "pi4")
    assert split.targets == ()
    reason = split.refusal("cam:3")
    assert reason == ("cam:3 is for device class 'pi4', and every one of the 2 selected devices "
                      "is of another class ('camera-v2'): nothing to send")
    assert "\n" not in reason
    # one device of unknown class is enough to go ahead: its agent decides
    assert split_by_class(["cam-1", "old-1"], CLASSES, "pi4").refusal("cam:3") is None
    # selecting nothing is not this refusal's to make (the spec's check says so)
    assert split_by_class([], CLASSES, "pi4").refusal("cam:3") is None


def spec() -> RolloutSpec:
    return RolloutSpec(model=V.model, version=V.version, waves=parse_waves("1,100%"),
                       soak_seconds=0.0)


def planned() -> RolloutState:
    split = split_by_class(CLASSES, CLASSES, "pi4")
    return initial_state(spec(), split.targets, device_class="pi4", skipped=split.skipped)


def test_skipped_devices_are_not_planned_and_survive_a_save() -> None:
    state = planned()
    assert set(state.assignment) == {"old-1", "pi-1", "pi-2"}
    assert state.skipped == {"cam-1": "camera-v2", "cam-2": "camera-v2"}
    assert RolloutState.from_dict(state.to_dict()) == state
    # a state saved before device classes reads back as "any class, none skipped"
    old = {k: v for k, v in state.to_dict().items() if k not in ("device_class", "skipped")}
    loaded = RolloutState.from_dict(old)
    assert loaded.device_class is None and loaded.skipped == {}


def observation(active: ModelVersion | None, update_state: str = "active") -> DeviceObservation:
    return DeviceObservation(active=active, update_state=update_state, online=True)


def test_a_rollout_completes_on_its_targets_and_never_counts_skipped_devices() -> None:
    state, now = planned(), 0.0
    seen: dict[str, DeviceObservation] = {}
    while state.status is not Status.COMPLETED:
        decision = decide(spec(), state, seen, now)
        assert not (isinstance(decision, Advance) and set(decision.devices) & set(state.skipped))
        state = apply(state, decision, now)
        seen = {d: observation(V) for d in state.previous}  # every target takes the version
        now += 1.0
        assert now < 20, "the rollout never completed"
    assert isinstance(decision, Complete) and set(state.previous) == {"old-1", "pi-1", "pi-2"}
    record = RolloutRecord(4, "cam:3", spec(), state, 0, 0.0, now, "test")
    view = rollout_view(record, seen, now)
    assert (view["targets"], view["active"], view["device_class"]) == (3, 3, "pi4")
    assert [s["device_id"] for s in view["skipped"]] == ["cam-1", "cam-2"]
    assert all(w["failed"] == 0 for w in view["waves"])
    text = "\n".join(render_rollout(view))
    assert "skipped 2 devices of another class (other_class: the version is for 'pi4'): " \
           "cam-1 (camera-v2), cam-2 (camera-v2)" in text
    assert outcome_lines(view) == [
        "completed: 3 of 3 devices run cam:3; 2 devices of another class skipped"]


def test_skipping_takes_unsent_devices_out_and_leaves_sent_ones() -> None:
    state = replace(planned(), previous={"pi-1": None})
    after = skip_devices(state, {"pi-1": "camera-v2", "pi-2": "camera-v2", "new": "x86"})
    assert set(after.assignment) == {"old-1", "pi-1"}  # pi-1 was sent: its agent decides
    assert after.skipped == {**state.skipped, "pi-2": "camera-v2", "new": "x86"}
    assert after.reasons[-1] == "2 devices skipped: of another class than 'pi4'"
    assert skip_devices(after, {"pi-2": "camera-v2"}) is after  # nothing new
    aborting = replace(state, status=Status.ABORTING)
    assert skip_devices(aborting, {"pi-2": "camera-v2"}) is aborting


def test_a_skipped_device_that_now_reports_the_versions_class_joins() -> None:
    state = admit_late_joiners(planned(), ["cam-1"])
    assert "cam-1" in state.assignment and "cam-1" not in state.skipped


def row(device: str, device_class: str | None, site: str = "berlin") -> DeviceRow:
    return DeviceRow(device, True, {"site": site}, "active", None, None, None, None, 0.0,
                     device_class=device_class)


def record(rid: int, state: RolloutState, selector: str = "site=berlin") -> RolloutRecord:
    return RolloutRecord(rid, f"r{rid}", replace(spec(), selector=selector), state, 0, 0.0,
                         0.0, "test")


def test_ownership_skips_late_joiners_and_planned_devices_of_another_class() -> None:
    state = replace(planned(), status=Status.RUNNING, wave=0, previous={"pi-1": None})
    rows = {d: row(d, c) for d, c in CLASSES.items()}
    rows["pi-2"] = row("pi-2", "camera-v2")  # planned, not sent yet, now known to be a camera
    rows["cam-9"] = row("cam-9", "camera-v2")  # a late joiner of another class
    rows["pi-9"] = row("pi-9", "pi4")  # a late joiner of the version's class
    rows["new-9"] = row("new-9", None)  # a late joiner of unknown class
    ownership = plan_ownership([record(1, state)], rows)
    assert ownership.skips == {1: {"pi-2": "camera-v2", "cam-9": "camera-v2"}}
    assert sorted(ownership.joiners[1]) == ["new-9", "pi-9"]
    # once recorded, they are not skipped again
    skipped = skip_devices(state, ownership.skips[1])
    assert plan_ownership([record(1, skipped)], rows).skips == {}


def test_a_device_of_another_class_joins_the_rollout_it_fits() -> None:
    mine = replace(planned(), status=Status.COMPLETED, wave=1)
    cameras = initial_state(spec(), ["cam-1", "cam-2"], device_class="camera-v2")
    cameras = replace(cameras, status=Status.COMPLETED, wave=1)
    rows = {"cam-9": row("cam-9", "camera-v2")}
    # the newer pi4 rollout would take it; it is a camera, so the camera rollout does
    ownership = plan_ownership([record(1, cameras), record(2, mine)], rows)
    assert ownership.joiners == {1: ["cam-9"]}
    assert ownership.skips == {2: {"cam-9": "camera-v2"}}
