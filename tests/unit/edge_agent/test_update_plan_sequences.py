"""Generated event sequences through the update plan: desired states (accepted or refused,
repeated, superseding), the work of each state succeeding, failing or retrying, and restarts,
in any order. A small model of the device carries the commands out the way the updater does
(journal step, pointer, what serves); the invariants hold after every event.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge_agent.update import (
    REST_STATES,
    TABLE,
    Event,
    UpdateState,
    UpdateStep,
    advance,
    idle,
    resume,
)
from edge_agent.update.plan import (
    Command,
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
from edge_agent.update.rollback import RollbackTo, rollback_to
from edgewise_wire.message_base import ModelRef

MODELS = [ModelRef("iris", v, f"{v:064x}") for v in range(1, 5)]
DEPLOYMENTS = ["dep-a", "dep-b", "dep-c"]
S = UpdateState
WORK_OUTCOMES = {
    S.DOWNLOADING: [Event.SUCCESS, Event.RETRY, Event.FAILURE],
    S.VERIFYING: [Event.SUCCESS, Event.RETRY, Event.FAILURE],
    S.STAGED: [Event.SUCCESS, Event.RETRY],
    S.ACTIVATING: [Event.SUCCESS, Event.FAILURE],
    S.PROBATION: [Event.SUCCESS, Event.FAILURE],
    S.ROLLING_BACK: [Event.SUCCESS, Event.RETRY],
}
STARTS_WORK = (Install, Replace, RollBack, Unload, Withdraw)


@dataclass(frozen=True)
class Arrival:
    """A desired state as it arrives: what it names, and whether the device's checks pass."""

    deployment_id: str
    target: ModelRef | None
    refused: bool

    def offer(self) -> DesiredRef | Refused:
        if self.refused:
            return Refused(self.deployment_id, "refused by the checks")
        return DesiredRef(self.deployment_id, self.target)


arrivals = st.builds(Arrival, st.sampled_from(DEPLOYMENTS),
                     st.sampled_from([None, *MODELS]), st.booleans())


class PlanMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.time = 0.0
        self.active: ModelRef | None = MODELS[0]  # the pointer's active slot: what serves
        self.previous: ModelRef | None = None  # the pointer's previous slot
        self.step: UpdateStep = idle(now=0.0, running=self.active)
        self.carried: Arrival | None = None  # the desired state the step carries out
        self.pending: Arrival | None = None
        self.abort_probation = False
        # every model that passed the device's checks (the one on disk at the start did)
        self.verified = {MODELS[0].sha256}
        # came to rest without settling: by a restart past the attempt cap (no at-rest work
        # ran), or by a rollback that gave up (the device serves what the pointer names)
        self.unsettled_rest = False
        self.commands: list[Command] = []

    # -- the model of the updater ------------------------------------------------------------

    def now(self) -> float:
        self.time += 1.0
        return self.time

    def advance(self, event: Event, *, target: ModelRef | None = None,
                error: str | None = None) -> None:
        assert (self.step.state, event) in TABLE, (self.step.state, event)
        was_rolling_back = self.step.state is S.ROLLING_BACK
        self.step = advance(self.step, event, now=self.now(), target=target, error=error)
        self.unsettled_rest = was_rolling_back and self.step.state is S.FAILED

    def situation(self) -> Situation:
        carried = self.carried
        return Situation(self.step, self.active, self.previous,
                         DesiredRef(carried.deployment_id, carried.target) if carried else None)

    def arrive(self, arrival: Arrival) -> None:
        state_before = self.step.state
        command = plan(self.situation(), arrival.offer())
        self.commands.append(command)
        event = event_of(command)
        assert event is None or (state_before, event) in TABLE, (state_before, command)
        if arrival.refused:
            assert isinstance(command, Reject)
            assert command.at_rest == (state_before in REST_STATES)
        else:
            self.verified |= {arrival.target.sha256} if arrival.target else set()
        if isinstance(command, Install | Replace):
            assert command.target == arrival.target  # only ever the target offered
        if isinstance(command, Replace):
            assert state_before in (S.DOWNLOADING, S.VERIFYING, S.STAGED)
        if isinstance(command, Install | Unload | Confirm | RollBack):
            assert state_before in REST_STATES
        if isinstance(command, RollBack):
            assert command.to == self.previous and state_before is S.ACTIVE
        if isinstance(command, Defer):
            assert state_before in (S.ACTIVATING, S.PROBATION, S.ROLLING_BACK)
        carried = self.carried
        if state_before in (S.FAILED, S.ROLLED_BACK) and carried is not None \
                and (carried.deployment_id, carried.target) == \
                (arrival.deployment_id, arrival.target):
            # the deployment that just failed, again: not retried in a loop
            assert not isinstance(command, Install), command
        self.carry_out(command, arrival)
        if not arrival.refused:
            # the same desired state again (the retained message after a reconnect) starts
            # nothing new
            again = plan(self.situation(), arrival.offer())
            assert not isinstance(again, STARTS_WORK), (command, again)
            assert again != Confirm(settle=True), (command, again)

    def carry_out(self, command: Command, arrival: Arrival) -> None:
        match command:
            case Ignore():
                pass
            case Reject(at_rest=at_rest):
                if at_rest:
                    self.carried = arrival
                    self.advance(Event.REJECTED, error="refused")
            case Install(target=target) | Replace(target=target):
                self.carried = arrival
                self.advance(Event.NEW_TARGET, target=target)
            case Withdraw(then=then):
                self.advance(Event.ABORTED)
                assert self.step.state is S.IDLE
                self.carry_out(then, arrival)
            case Unload():
                self.carried = arrival
                self.advance(Event.DEACTIVATE)
                self.active, self.previous = None, self.active
            case Confirm(settle=settle):
                self.carried = arrival
                if settle:
                    self.advance(Event.ABORTED)
            case RollBack():
                self.carried = arrival
                self.advance(Event.ROLLBACK_ORDER)
            case Defer(abort_probation=abort):
                self.pending = arrival
                self.abort_probation = self.abort_probation or abort

    def at_rest(self) -> None:
        carried = self.carried
        if self.step.state is S.ROLLED_BACK and settles(
                self.step.state, carried.target if carried else None, self.active):
            self.advance(Event.ABORTED)
        pending, self.pending = self.pending, None
        if pending is not None:
            self.arrive(pending)

    # -- rules ---------------------------------------------------------------------------------

    @rule(arrival=arrivals)
    def a_desired_state_arrives(self, arrival: Arrival) -> None:
        self.arrive(arrival)

    @precondition(lambda self: self.step.state not in REST_STATES)
    @rule(pick=st.integers(min_value=0, max_value=2))
    def the_work_of_the_state_ends(self, pick: int) -> None:
        state, target = self.step.state, self.step.target
        outcomes = WORK_OUTCOMES[state]
        event = outcomes[pick % len(outcomes)]
        if state is S.ACTIVATING:
            if self.active == target:  # a crash after the switch: the previous slot serves
                self.active, self.previous = self.previous, None
            if event is Event.SUCCESS:
                assert target is not None and target.sha256 in self.verified
                self.active, self.previous = target, self.active
        elif state is S.PROBATION:
            if self.abort_probation:
                self.abort_probation, event = False, Event.ABORTED
            elif self.active != target:
                event = Event.FAILURE
        elif state is S.ROLLING_BACK and event is Event.SUCCESS:
            where = rollback_to(self.step.previous, self.active, self.previous)
            if where is RollbackTo.NOTHING:
                self.active, self.previous = None, None
            elif where is RollbackTo.PREVIOUS_SLOT:
                self.active, self.previous = self.previous, None
            elif where is RollbackTo.GONE:
                event = Event.FAILURE
        self.advance(event, error=None if event is Event.SUCCESS else "work failed")
        if self.step.state in REST_STATES:
            self.at_rest()

    @rule(still_valid=st.booleans())
    def the_agent_restarts(self, still_valid: bool) -> None:
        self.pending, self.abort_probation = None, False  # memory is lost; disk is not
        was_at_rest = self.step.state in REST_STATES
        self.step, _, _ = resume(self.step, now=self.now())
        if not was_at_rest:
            self.unsettled_rest = self.step.state in REST_STATES
        if recheck_on_resume(self.step.state) and self.carried is not None and not still_valid:
            self.advance(Event.FAILURE, error="not resumed after the restart")

    @precondition(lambda self: self.step.state is S.ACTIVATING)
    @rule()
    def the_agent_crashes_right_after_the_switch(self) -> None:
        # the pointer is one step ahead of the journal, which still says activating
        target = self.step.target
        assert target is not None and target.sha256 in self.verified
        if self.active == target:  # activating again after an earlier crash: point back first
            self.active, self.previous = self.previous, None
        self.active, self.previous = target, self.active
        self.the_agent_restarts(still_valid=True)

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def only_checked_models_are_ever_served_or_kept(self) -> None:
        for slot in (self.active, self.previous):
            assert slot is None or slot.sha256 in self.verified

    @invariant()
    def a_committed_or_watched_model_is_the_one_that_serves(self) -> None:
        if self.step.state in (S.PROBATION, S.ACTIVE):
            assert self.active == self.step.target

    @invariant()
    def a_device_on_the_model_it_is_asked_for_reports_no_failure(self) -> None:
        # (the model does each step's work and its at-rest work at once; a real device that
        # crashes in between is like one that came to rest by a restart)
        carried = self.carried
        if self.step.state in (S.FAILED, S.ROLLED_BACK) and carried is not None \
                and not carried.refused and carried.target is not None \
                and carried.target == self.active:
            assert self.unsettled_rest
            # and the retained desired state, delivered again, settles it
            assert plan(self.situation(), carried.offer()) == Confirm(settle=True)

    @invariant()
    def a_desired_state_waits_only_while_the_update_cannot_take_it(self) -> None:
        if self.pending is not None:
            assert self.step.state in (S.ACTIVATING, S.PROBATION, S.ROLLING_BACK)


PlanMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40,
                                         deadline=None)
TestPlanSequences = PlanMachine.TestCase
