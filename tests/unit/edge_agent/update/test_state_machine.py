from __future__ import annotations

import itertools
import json

import pytest

from edge_agent.update.state_machine import (
    MAX_ATTEMPTS_PER_STATE,
    REST_STATES,
    TABLE,
    Event,
    InvalidTransition,
    UpdateState,
    UpdateStep,
    advance,
    idle,
    next_state,
    on_restart,
)
from edgewise_wire.errors import SchemaError
from edgewise_wire.message_base import ModelRef

OLD = ModelRef("churn", 3, "a" * 64)
NEW = ModelRef("churn", 4, "b" * 64)
NEWER = ModelRef("churn", 5, "c" * 64)

ALL_PAIRS = list(itertools.product(UpdateState, Event))
MISSING = [pair for pair in ALL_PAIRS if pair not in TABLE]


@pytest.mark.parametrize(("state", "event"), list(TABLE), ids=lambda x: x.name)
def test_every_listed_pair_gives_the_listed_state(state: UpdateState, event: Event) -> None:
    assert next_state(state, event) is TABLE[(state, event)]


@pytest.mark.parametrize(("state", "event"), MISSING, ids=lambda x: x.name)
def test_every_unlisted_pair_is_refused(state: UpdateState, event: Event) -> None:
    with pytest.raises(InvalidTransition) as info:
        next_state(state, event)
    assert info.value.state is state and info.value.event is event
    assert state.value in str(info.value) and event.name in str(info.value)


def test_every_state_is_reachable_and_can_leave() -> None:
    sources = {s for s, _ in TABLE}
    targets = set(TABLE.values())
    assert sources == set(UpdateState)
    assert targets | {UpdateState.IDLE} == set(UpdateState)


def test_every_rest_state_accepts_a_new_target() -> None:
    for state in REST_STATES:
        assert next_state(state, Event.NEW_TARGET) is UpdateState.DOWNLOADING


def _drive(step: UpdateStep, *events: Event) -> UpdateStep:
    for i, event in enumerate(events):
        step = advance(step, event, now=float(i + 1))
    return step


def _started(running: ModelRef | None = OLD) -> UpdateStep:
    return advance(idle(now=0.0, running=running), Event.NEW_TARGET, now=0.5, target=NEW)


def test_happy_path_idle_to_active() -> None:
    step = _started()
    seen = [step.state]
    for _ in range(5):
        step = advance(step, Event.SUCCESS, now=step.entered_at + 1)
        seen.append(step.state)
    assert seen == [UpdateState.DOWNLOADING, UpdateState.VERIFYING, UpdateState.STAGED, UpdateState.ACTIVATING,
                    UpdateState.PROBATION, UpdateState.ACTIVE]
    assert step.target == NEW and step.previous == OLD and step.running == NEW
    assert step.last_error is None
    assert all(step.attempts_in(s) == 1 for s in seen if s not in REST_STATES)


def test_next_update_after_commit_remembers_the_committed_model_as_previous() -> None:
    active = _drive(_started(), *[Event.SUCCESS] * 5)
    step = advance(active, Event.NEW_TARGET, now=10.0, target=NEWER)
    assert (step.state, step.target, step.previous) == (UpdateState.DOWNLOADING, NEWER, NEW)
    assert step.attempts == ((UpdateState.DOWNLOADING, 1),)


def test_new_target_before_activation_supersedes_and_keeps_the_serving_model() -> None:
    staged = _drive(_started(), Event.SUCCESS, Event.SUCCESS)
    assert staged.state is UpdateState.STAGED
    step = advance(staged, Event.NEW_TARGET, now=10.0, target=NEWER)
    assert (step.state, step.target, step.previous) == (UpdateState.DOWNLOADING, NEWER, OLD)


FAILURE_BRANCHES = [
    ("download fails", [Event.FAILURE], UpdateState.FAILED),
    ("verification fails", [Event.SUCCESS, Event.FAILURE], UpdateState.FAILED),
    ("staged file fails", [Event.SUCCESS, Event.SUCCESS, Event.FAILURE], UpdateState.FAILED),
    ("aborted while downloading", [Event.ABORTED], UpdateState.IDLE),
    ("smoke test fails", [Event.SUCCESS] * 3 + [Event.FAILURE, Event.SUCCESS], UpdateState.ROLLED_BACK),
    ("aborted while activating", [Event.SUCCESS] * 3 + [Event.ABORTED, Event.SUCCESS],
     UpdateState.ROLLED_BACK),
    ("probation fails", [Event.SUCCESS] * 4 + [Event.FAILURE, Event.SUCCESS], UpdateState.ROLLED_BACK),
    ("rollback order after commit", [Event.SUCCESS] * 5 + [Event.ROLLBACK_ORDER, Event.SUCCESS],
     UpdateState.ROLLED_BACK),
    ("rollback itself fails", [Event.SUCCESS] * 3 + [Event.FAILURE, Event.FAILURE], UpdateState.FAILED),
]


@pytest.mark.parametrize(("events", "end"), [b[1:] for b in FAILURE_BRANCHES],
                         ids=[b[0] for b in FAILURE_BRANCHES])
def test_failure_branches_end_with_the_previous_model_restored(
    events: list[Event], end: UpdateState
) -> None:
    step = _drive(_started(), *events)
    assert step.state is end
    assert step.state in REST_STATES
    assert step.running == OLD and step.previous == OLD and step.target == NEW
    if Event.ROLLBACK_ORDER not in events:
        assert step.last_error  # why the update did not stick


def test_error_text_is_kept() -> None:
    step = advance(_started(), Event.FAILURE, now=2.0, error="artifact gone from registry")
    assert step.last_error == "artifact gone from registry"
    assert step.entered_at == 2.0


def test_retry_is_capped_and_becomes_a_failure() -> None:
    step = _started()
    for _ in range(MAX_ATTEMPTS_PER_STATE - 1):
        step = advance(step, Event.RETRY, now=1.0, error="broker offline")
        assert step.state is UpdateState.DOWNLOADING
    assert step.attempts_in(UpdateState.DOWNLOADING) == MAX_ATTEMPTS_PER_STATE
    step = advance(step, Event.RETRY, now=2.0, error="broker offline")
    assert step.state is UpdateState.FAILED and step.running == OLD
    assert step.last_error is not None and "gave up after 3 attempts in downloading" in step.last_error


def test_verify_download_retry_loop_is_capped_too() -> None:
    step = _started()
    for _ in range(10):
        if step.state in REST_STATES:
            break
        step = advance(step, Event.SUCCESS if step.state is UpdateState.DOWNLOADING else Event.RETRY,
                       now=1.0)
    assert step.state is UpdateState.FAILED


def test_target_only_with_new_target() -> None:
    with pytest.raises(ValueError):
        advance(idle(now=0.0), Event.NEW_TARGET, now=1.0)
    with pytest.raises(ValueError):
        advance(_started(), Event.SUCCESS, now=1.0, target=NEWER)


def test_advance_refuses_what_the_table_refuses() -> None:
    with pytest.raises(InvalidTransition):
        advance(idle(now=0.0), Event.SUCCESS, now=1.0)


def test_steps_are_immutable_values() -> None:
    step = _started()
    after = advance(step, Event.SUCCESS, now=9.0)
    assert step.state is UpdateState.DOWNLOADING and after is not step
    with pytest.raises(AttributeError):
        step.state = UpdateState.ACTIVE  # type: ignore[misc]
    assert hash(step) != hash(after)


# ------------------------------------------------------------------------------- crash cap


def _at(state: UpdateState) -> UpdateStep:
    """A step that has just entered ``state`` the normal way."""
    paths = {
        UpdateState.DOWNLOADING: [],
        UpdateState.VERIFYING: [Event.SUCCESS],
        UpdateState.STAGED: [Event.SUCCESS] * 2,
        UpdateState.ACTIVATING: [Event.SUCCESS] * 3,
        UpdateState.PROBATION: [Event.SUCCESS] * 4,
        UpdateState.ROLLING_BACK: [Event.SUCCESS] * 3 + [Event.FAILURE],
    }
    return _drive(_started(), *paths[state])


def test_restarting_three_times_in_activating_rolls_back() -> None:
    step = _at(UpdateState.ACTIVATING)
    for attempt in (2, 3):
        step, reason = on_restart(step, now=float(attempt))
        assert step.state is UpdateState.ACTIVATING
        assert f"attempt {attempt} of 3" in reason
    step, reason = on_restart(step, now=4.0)
    assert step.state is UpdateState.ROLLING_BACK
    assert "giving up" in reason and "activating" in reason
    assert step.last_error is not None and "activating" in step.last_error
    assert step.running == OLD and step.entered_at == 4.0


@pytest.mark.parametrize(
    ("state", "gives_up_to"),
    [(UpdateState.DOWNLOADING, UpdateState.FAILED), (UpdateState.VERIFYING, UpdateState.FAILED),
     (UpdateState.STAGED, UpdateState.FAILED), (UpdateState.ACTIVATING, UpdateState.ROLLING_BACK),
     (UpdateState.PROBATION, UpdateState.ROLLING_BACK), (UpdateState.ROLLING_BACK, UpdateState.FAILED)],
    ids=lambda x: x.name,
)
def test_crash_loop_past_the_cap_is_a_failure(state: UpdateState, gives_up_to: UpdateState) -> None:
    step = _at(state)
    for _ in range(MAX_ATTEMPTS_PER_STATE - step.attempts_in(state)):
        step, _ = on_restart(step, now=1.0)
        assert step.state is state
    step, _ = on_restart(step, now=2.0)
    assert step.state is gives_up_to


@pytest.mark.parametrize("state", [s for s in UpdateState if s not in REST_STATES], ids=lambda s: s.name)
def test_a_device_that_crashes_forever_stops_at_rest_serving_old_or_new(state: UpdateState) -> None:
    """Mender's standard: kill it in every state, again and again; it must settle."""
    step = _at(state)
    for _ in range(4 * MAX_ATTEMPTS_PER_STATE):
        step, _ = on_restart(step, now=1.0)
    assert step.state in REST_STATES
    assert step.running in (OLD, NEW)


@pytest.mark.parametrize("state", [s for s in UpdateState if s in REST_STATES], ids=lambda s: s.name)
def test_restart_at_rest_changes_nothing(state: UpdateState) -> None:
    step = UpdateStep(state, target=NEW, previous=OLD, entered_at=1.0)
    again, reason = on_restart(step, now=50.0)
    assert again == step and "nothing to resume" in reason


def test_restart_resets_entered_at_for_the_probation_window() -> None:
    step, _ = on_restart(_at(UpdateState.PROBATION), now=123.0)
    assert step.state is UpdateState.PROBATION and step.entered_at == 123.0


# ------------------------------------------------------------------------------ persistence


def test_step_round_trips_through_json() -> None:
    step = advance(_at(UpdateState.ACTIVATING), Event.FAILURE, now=7.5, error="smoke test: 2/8 off")
    step, _ = on_restart(step, now=8.0)
    loaded = UpdateStep.from_dict(json.loads(json.dumps(step.to_dict())))
    assert loaded == step
    assert idle(now=0.0) == UpdateStep.from_dict(idle(now=0.0).to_dict())


@pytest.mark.parametrize("bad", [
    [],
    {"state": "sleeping", "entered_at": 1.0},
    {"state": "idle"},
    {"state": "idle", "entered_at": 1.0, "attempts": {"downloading": -1}},
    {"state": "idle", "entered_at": 1.0, "attempts": {"napping": 1}},
    {"state": "idle", "entered_at": 1.0, "target": {"model": "m"}},
])
def test_corrupt_step_is_a_schema_error(bad: object) -> None:
    with pytest.raises(SchemaError):
        UpdateStep.from_dict(bad)
