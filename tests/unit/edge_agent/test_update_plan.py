"""The update plan (edge_agent/update/plan.py): what a desired state means where the update
stands. Pure: no broker, no disk, no event loop."""

from __future__ import annotations

import pytest

from edge_agent.update import REST_STATES, TABLE, Event, UpdateState, UpdateStep, advance, idle
from edge_agent.update.plan import (
    Confirm,
    Defer,
    DesiredRef,
    Ignore,
    Install,
    Refused,
    Reject,
    Replace,
    RollBack,
    Situation,
    Unload,
    Withdraw,
    event_of,
    plan,
    recheck_on_resume,
    settles,
)
from edgewise_wire.message_base import ModelRef

V1 = ModelRef("iris", 1, "1" * 64)
V2 = ModelRef("iris", 2, "2" * 64)
V3 = ModelRef("iris", 3, "3" * 64)


def step_in(state: UpdateState, *, target: ModelRef | None = V2,
            previous: ModelRef | None = V1) -> UpdateStep:
    return UpdateStep(state, target=target, previous=previous, entered_at=0.0)


def situation(state: UpdateState, *, running: ModelRef | None = V1,
              previous_slot: ModelRef | None = None, carried: DesiredRef | None = None,
              target: ModelRef | None = V2) -> Situation:
    return Situation(step_in(state, target=target), running, previous_slot, carried)


# -- refusals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("state", list(UpdateState))
def test_a_refused_desired_state_is_only_recorded_at_rest(state: UpdateState) -> None:
    command = plan(situation(state), Refused("dep", "not signed"))
    assert command == Reject("not signed", at_rest=state in REST_STATES)


# -- at rest ---------------------------------------------------------------------------------------

def test_a_new_model_at_rest_is_installed() -> None:
    assert plan(situation(UpdateState.ACTIVE, target=V1), DesiredRef("d", V2)) == Install(V2)


def test_the_model_that_serves_is_confirmed_and_a_failure_settles() -> None:
    offer = DesiredRef("revert", V1)
    assert plan(situation(UpdateState.ACTIVE), offer) == Confirm(settle=False)
    assert plan(situation(UpdateState.IDLE), offer) == Confirm(settle=False)
    assert plan(situation(UpdateState.FAILED), offer) == Confirm(settle=True)
    assert plan(situation(UpdateState.ROLLED_BACK), offer) == Confirm(settle=True)


def test_the_previous_slot_after_a_commit_is_an_instant_rollback() -> None:
    s = situation(UpdateState.ACTIVE, running=V2, previous_slot=V1, target=V2)
    assert plan(s, DesiredRef("back", V1)) == RollBack(V1)
    # from another rest state the same model goes the normal way (found on disk)
    s = situation(UpdateState.FAILED, running=V2, previous_slot=V1, target=V3)
    assert plan(s, DesiredRef("back", V1)) == Install(V1)


def test_the_same_failed_deployment_is_not_retried_but_a_new_one_is() -> None:
    carried = DesiredRef("dep-2", V2)
    for state in (UpdateState.FAILED, UpdateState.ROLLED_BACK):
        s = situation(state, carried=carried)
        assert isinstance(plan(s, DesiredRef("dep-2", V2)), Ignore)
        assert plan(s, DesiredRef("dep-3", V2)) == Install(V2)


def test_no_model_unloads_unless_none_serves_already() -> None:
    assert plan(situation(UpdateState.ACTIVE), DesiredRef("off", None)) == Unload()
    assert plan(situation(UpdateState.FAILED, running=None), DesiredRef("off", None)) == Unload()
    assert isinstance(plan(situation(UpdateState.IDLE, running=None), DesiredRef("off", None)),
                      Ignore)


# -- in flight -------------------------------------------------------------------------------------

@pytest.mark.parametrize("state", [UpdateState.DOWNLOADING, UpdateState.VERIFYING,
                                   UpdateState.STAGED, UpdateState.ACTIVATING,
                                   UpdateState.PROBATION, UpdateState.ROLLING_BACK])
def test_the_target_in_flight_again_changes_nothing(state: UpdateState) -> None:
    assert isinstance(plan(situation(state), DesiredRef("again", V2)), Ignore)


@pytest.mark.parametrize("state", [UpdateState.DOWNLOADING, UpdateState.VERIFYING,
                                   UpdateState.STAGED])
def test_before_activation_a_newer_target_replaces_and_a_revert_withdraws(
        state: UpdateState) -> None:
    assert plan(situation(state), DesiredRef("newer", V3)) == Replace(V3)
    assert plan(situation(state), DesiredRef("revert", V1)) == Withdraw(Confirm(settle=False))
    assert plan(situation(state), DesiredRef("off", None)) == Withdraw(Unload())
    assert isinstance(plan(situation(state, running=None), DesiredRef("off", None)), Withdraw)
    # nothing served yet: any target is new
    assert plan(situation(state, running=None), DesiredRef("d", V1)) == Replace(V1)


@pytest.mark.parametrize("state", [UpdateState.ACTIVATING, UpdateState.PROBATION,
                                   UpdateState.ROLLING_BACK])
def test_past_the_switch_a_desired_state_waits_and_ends_probation(state: UpdateState) -> None:
    for offer in (DesiredRef("other", V3), DesiredRef("revert", V1), DesiredRef("off", None)):
        assert plan(situation(state), offer) == \
            Defer(abort_probation=state is UpdateState.PROBATION)


# -- the helpers -----------------------------------------------------------------------------------

def test_events_of_commands() -> None:
    assert event_of(Install(V2)) is event_of(Replace(V2)) is Event.NEW_TARGET
    assert event_of(Reject("x", at_rest=True)) is Event.REJECTED
    assert event_of(Reject("x", at_rest=False)) is None
    assert event_of(Withdraw(Unload())) is event_of(Confirm(settle=True)) is Event.ABORTED
    assert event_of(Confirm(settle=False)) is None
    assert event_of(Unload()) is Event.DEACTIVATE
    assert event_of(RollBack(V1)) is Event.ROLLBACK_ORDER
    assert event_of(Defer(abort_probation=True)) is event_of(Ignore("x")) is None


def test_settles_only_after_an_unsuccessful_update_on_what_serves() -> None:
    assert settles(UpdateState.FAILED, V1, V1) and settles(UpdateState.ROLLED_BACK, V1, V1)
    assert not settles(UpdateState.ACTIVE, V1, V1)
    assert not settles(UpdateState.FAILED, V2, V1)
    assert not settles(UpdateState.FAILED, None, None)


def test_only_updates_that_serve_nothing_yet_are_checked_again_on_resume() -> None:
    assert {s for s in UpdateState if recheck_on_resume(s)} == {
        UpdateState.DOWNLOADING, UpdateState.VERIFYING, UpdateState.STAGED}


def test_every_first_event_is_allowed_where_it_is_planned() -> None:
    """Exhaustive over states and a spread of offers (the generated tests go through
    sequences)."""
    offers = [DesiredRef("d", t) for t in (None, V1, V2, V3)] + [Refused("d", "no")]
    for state in UpdateState:
        for running in (None, V1):
            for previous_slot in (None, V1, V3):
                for offer in offers:
                    s = situation(state, running=running, previous_slot=previous_slot,
                                  carried=DesiredRef("d", V2))
                    event = event_of(plan(s, offer))
                    assert event is None or (state, event) in TABLE, (state, offer)
    assert advance(idle(now=0.0), Event.NEW_TARGET, now=1.0, target=V1).state is \
        UpdateState.DOWNLOADING
