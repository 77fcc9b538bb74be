import copy
import json
from dataclasses import replace
from typing import Literal

import pytest

from controller.rollouts.decisions import (
    Abort,
    Advance,
    Complete,
    Fail,
    Pause,
    Wait,
    decision_to_dict,
)
from controller.rollouts.engine import (
    RolloutState,
    Status,
    TransitionError,
    admit_late_joiners,
    apply,
    decide,
    initial_state,
    late_joiners,
    operator_abort,
    operator_pause,
    resume,
)
from controller.rollouts.gates import ACCURACY_DROP, DRIFT, FAILED_ACTIVATIONS, P95_LATENCY
from controller.rollouts.spec import Gates, RolloutSpec
from controller.rollouts.spec_parse import parse_waves
from tests.harness.fleet_sim import NEW, OLD, Behaviour, FakeFleet, Run

DEVICES = [f"pi-{i:03d}" for i in range(100)]
SOAK = 600.0


def make_run(gates: Gates | None = None, policy: Literal["pause", "abort"] = "abort",
             waves: str = "1,10%,50%,100%", devices: list[str] = DEVICES,
             behaviour: Behaviour | None = None) -> Run:
    spec = RolloutSpec(model="cam", version=4, selector="site=berlin", waves=parse_waves(waves),
                       soak_seconds=SOAK, gates=gates or Gates(), on_gate_failure=policy,
                       wave_timeout_seconds=1800.0)
    fleet = FakeFleet(list(devices), behaviour=behaviour or Behaviour())
    return Run(spec, initial_state(spec, devices), fleet)


def first_wave(run: Run) -> list[str]:
    return sorted(d for d, w in run.state.assignment.items() if w == 0)


def test_good_rollout_goes_through_every_wave() -> None:
    run = make_run(Gates(max_accuracy_drop=0.05, max_p95_latency_ms=50, max_drift_psi=0.2))
    state = run.until()
    assert state.status is Status.COMPLETED
    advances = run.of(Advance)
    assert [a.wave for a in advances] == [0, 1, 2, 3]
    assert [len(a.devices) for a in advances] == [1, 9, 40, 50]
    assert all(o.active == NEW for o in run.fleet.obs.values())
    assert sorted(run.fleet.sent_log) == DEVICES  # each device sent exactly once
    assert state.previous == {d: OLD for d in DEVICES}
    starts = [t for t, d in run.decisions if isinstance(d, Advance)]
    assert all(b - a >= SOAK for a, b in zip(starts, starts[1:], strict=False))
    assert len(run.of(Complete)) == 1
    assert state.reasons[-1] == "all 4 waves passed: 100 devices run cam:4"
    assert any(isinstance(d, Wait) and d.soaking for _, d in run.decisions)


def test_wait_flips_running_and_soaking() -> None:
    run = make_run()
    run.tick()  # wave 1 sent
    assert run.state.status is Status.RUNNING
    run.tick()  # the canary reports; soak starts
    assert run.state.status is Status.SOAKING


def test_failed_activations_in_first_wave_abort_with_previous_versions() -> None:
    run = make_run(waves="5,50%,100%")
    canaries = first_wave(run)
    run.fleet.overrides = {canaries[0]: Behaviour(fails=True), canaries[1]: Behaviour(fails=True)}
    run.until(lambda s: s.status is Status.ABORTING)
    abort = run.of(Abort)[0]
    assert abort.gate == FAILED_ACTIVATIONS
    assert (abort.value, abort.threshold) == (2, 0)
    assert abort.revert == {d: OLD for d in canaries}
    assert run.now - run.decisions[0][0] < SOAK  # failed fast, did not wait out the soak
    state = run.until()
    assert state.status is Status.ABORTED
    assert [a.wave for a in run.of(Advance)] == [0]  # no later wave was ever sent
    assert sorted(run.fleet.sent_log) == canaries
    assert all(o.active == OLD for o in run.fleet.obs.values())


def test_accuracy_drop_aborts() -> None:
    run = make_run(Gates(max_accuracy_drop=0.05, min_labelled=30),
                   behaviour=Behaviour(accuracy=0.70, labelled=40))
    state = run.until()
    assert state.status is Status.ABORTED
    abort = run.of(Abort)[0]
    assert abort.gate == ACCURACY_DROP
    assert abort.value == pytest.approx(0.22)
    assert abort.threshold == 0.05
    assert "0.700 vs baseline 0.920 over 40 labels" in abort.detail


def test_too_few_labels_waits_instead_of_passing() -> None:
    run = make_run(Gates(max_accuracy_drop=0.05, min_labelled=30), policy="pause",
                   behaviour=Behaviour(labelled=10))
    run.until(lambda s: run.now - run.decisions[0][0] > SOAK + 120)
    last = run.decisions[-1][1]
    assert isinstance(last, Wait) and last.soaking
    assert "accuracy_drop" in last.why and "need 30 labels" in last.why
    assert [a.wave for a in run.of(Advance)] == [0]
    # never enough evidence within the wave timeout: a failure of that gate, not a pass
    state = run.until()
    assert state.status is Status.PAUSED
    pause = run.of(Pause)[0]
    assert pause.gate == ACCURACY_DROP and "still pending after the wave timeout" in pause.detail


@pytest.mark.parametrize(
    ("gates", "behaviour", "gate", "value"),
    [
        (Gates(max_p95_latency_ms=50), Behaviour(p95_latency_ms=80), P95_LATENCY, 80),
        (Gates(max_drift_psi=0.2), Behaviour(drift_psi=0.4), DRIFT, 0.4),
    ],
)
def test_latency_and_drift_gates(gates: Gates, behaviour: Behaviour, gate: str,
                                 value: float) -> None:
    run = make_run(gates, behaviour=behaviour)
    run.until()
    abort = run.of(Abort)[0]
    assert (abort.gate, abort.value, abort.threshold) == (
        gate, value, gates.max_p95_latency_ms or gates.max_drift_psi)
    good = make_run(gates)
    assert good.until().status is Status.COMPLETED


def test_pause_policy_pauses_and_resume_continues() -> None:
    run = make_run(Gates(max_p95_latency_ms=50), policy="pause")
    slow = {d: Behaviour(p95_latency_ms=90) for d, w in run.state.assignment.items() if w >= 1}
    run.fleet.overrides = slow
    state = run.until()
    assert state.status is Status.PAUSED and state.wave == 1
    pause = run.of(Pause)[0]
    assert (pause.gate, pause.value, pause.threshold) == (P95_LATENCY, 90, 50)
    assert isinstance(decide(run.spec, state, run.fleet.obs, run.now), Wait)
    # an operator fixes the devices (say, a thermal issue) and resumes
    for d in slow:
        run.fleet.obs[d] = replace(run.fleet.obs[d], p95_latency_ms=30)
    run.fleet.overrides = {}
    run.state = resume(state, run.now)
    assert run.state.status is Status.RUNNING and run.state.wave_started_at == run.now
    resumed_at = run.now
    assert run.until().status is Status.COMPLETED
    next_wave = next(t for t, d in run.decisions if isinstance(d, Advance) and d.wave == 2)
    assert next_wave - resumed_at >= SOAK  # the soak starts over after a resume


def test_reporting_timeout_is_a_gate_failure() -> None:
    run = make_run(policy="pause", waves="10,100%")
    run.fleet.overrides = {d: Behaviour(reports=False) for d in first_wave(run)[:2]}
    state = run.until()
    assert state.status is Status.PAUSED
    pause = run.of(Pause)[0]
    assert pause.gate == "reporting" and pause.value == 0.8
    assert "after the 1800s wave timeout" in pause.detail
    assert run.decisions[-1][0] - run.decisions[0][0] >= 1800


def test_abort_that_cannot_confirm_reverts_fails() -> None:
    run = make_run(waves="10,100%", gates=Gates(max_p95_latency_ms=50),
                   behaviour=Behaviour(p95_latency_ms=99))
    dark = first_wave(run)[0]
    run.fleet.overrides = {dark: Behaviour(p95_latency_ms=99, takes_reverts=False)}
    state = run.until()
    assert state.status is Status.FAILED
    fail = run.of(Fail)[0]
    assert fail.unconfirmed == (dark,)


def test_operator_pause_and_abort() -> None:
    run = make_run()
    run.until(lambda s: s.wave == 1)
    state = apply(run.state, operator_pause("investigating"), run.now)
    assert state.status is Status.PAUSED and state.reasons[-1] == "paused (operator: investigating)"
    abort = operator_abort(state, "bad model")
    assert set(abort.revert) == set(state.previous) and len(abort.revert) == 10
    assert apply(state, abort, run.now).status is Status.ABORTING


def test_invalid_transitions_raise() -> None:
    run = make_run()
    state = run.until()
    with pytest.raises(TransitionError, match="cannot pause a rollout that is completed"):
        apply(state, operator_pause("late"), run.now)
    with pytest.raises(TransitionError, match="cannot resume a rollout that is completed"):
        resume(state, run.now)


def test_state_round_trip_mid_rollout_gives_identical_decisions() -> None:
    run = make_run(Gates(max_accuracy_drop=0.05, max_p95_latency_ms=50))
    run.until(lambda s: s.wave == 2 and s.status is Status.SOAKING)
    saved = json.loads(json.dumps(run.state.to_dict()))
    restored = RolloutState.from_dict(saved)
    assert restored == run.state
    twin = Run(run.spec, restored, copy.deepcopy(run.fleet), run.now)
    split = len(run.decisions)
    run.until()
    twin.until()
    assert twin.decisions == run.decisions[split:]
    assert twin.state == run.state and twin.state.status is Status.COMPLETED


def test_corrupt_state_is_refused() -> None:
    good = make_run().state.to_dict()
    with pytest.raises(ValueError, match="schema"):
        RolloutState.from_dict({**good, "schema": 99})
    with pytest.raises(ValueError, match="corrupt rollout state"):
        RolloutState.from_dict({**good, "status": "exploded"})


def test_late_joiners_wait_for_the_last_wave() -> None:
    run = make_run()
    run.until(lambda s: s.wave == 1)
    run.fleet.add("pi-new")
    joiners = late_joiners(run.spec, run.state, [*DEVICES, "pi-new"])
    assert joiners == ["pi-new"]
    run.state = admit_late_joiners(run.state, joiners)
    assert run.state.assignment["pi-new"] == 3
    run.until(lambda s: s.wave == 2)
    assert "pi-new" not in run.fleet.sent_log
    state = run.until()
    assert state.status is Status.COMPLETED
    assert run.fleet.obs["pi-new"].active == NEW and state.previous["pi-new"] == OLD


def test_late_joiners_during_the_last_wave_and_after_completion_go_at_once() -> None:
    run = make_run(waves="1,100%")
    run.until(lambda s: s.wave == 1)
    run.state = admit_late_joiners(run.state, ["pi-late"])
    run.fleet.add("pi-late")
    top_up = run.tick()
    assert isinstance(top_up, Advance) and top_up.devices == ("pi-late",) and top_up.wave == 1
    state = run.until()
    assert state.status is Status.COMPLETED
    run.fleet.add("pi-later")
    run.state = admit_late_joiners(state, late_joiners(run.spec, state, ["pi-later", *DEVICES]))
    decision = run.tick()
    assert isinstance(decision, Advance) and decision.devices == ("pi-later",)
    assert run.state.status is Status.COMPLETED
    assert isinstance(run.tick(), Wait)
    assert run.fleet.obs["pi-later"].active == NEW


def test_aborted_rollouts_take_no_late_joiners() -> None:
    run = make_run(policy="abort", behaviour=Behaviour(fails=True))
    state = run.until()
    assert state.status is Status.ABORTED
    assert late_joiners(run.spec, state, ["pi-new"]) == []
    assert admit_late_joiners(state, ["pi-new"]) is state


def test_pending_state_with_everything_released_completes() -> None:
    spec = make_run().spec
    state = RolloutState(wave_count=2)
    decision = decide(spec, state, {}, 0.0)
    assert isinstance(decision, Complete)
    assert apply(state, decision, 0.0).status is Status.COMPLETED


def test_decisions_serialise_for_the_audit_log() -> None:
    run = make_run(waves="2,100%", behaviour=Behaviour(fails=True))
    run.until()
    advance, abort = run.of(Advance)[0], run.of(Abort)[0]
    record = json.loads(json.dumps(decision_to_dict(advance)))
    assert record == {"kind": "advance", "wave": 0, "devices": list(advance.devices),
                      "previous": {d: "cam:3" for d in advance.devices}}
    record = decision_to_dict(abort)
    assert record["kind"] == "abort" and record["gate"] == FAILED_ACTIVATIONS
    assert record["revert"] == {d: "cam:3" for d in advance.devices}


def test_going_back_a_wave_is_refused() -> None:
    run = make_run()
    run.until(lambda s: s.wave == 1)
    with pytest.raises(TransitionError, match="cannot go back from wave 2 to wave 1"):
        apply(run.state, Advance(0, ("x",), {"x": OLD}), run.now)


def test_soak_starts_when_the_wave_reports_not_when_it_was_sent() -> None:
    run = make_run(waves="1,100%")
    canary = first_wave(run)[0]
    t0 = run.now
    sent = decide(run.spec, run.state, run.fleet.obs, t0)
    assert isinstance(sent, Advance)
    state = apply(run.state, sent, t0)
    obs = dict(run.fleet.obs)
    waiting = decide(run.spec, state, obs, t0 + 400)  # still downloading
    assert isinstance(waiting, Wait) and not waiting.soaking
    obs[canary] = replace(obs[canary], active=NEW, update_state="active")
    reported = decide(run.spec, state, obs, t0 + 500)
    assert isinstance(reported, Wait) and reported.soaking
    state = apply(state, reported, t0 + 500)
    assert state.status is Status.SOAKING and state.soak_started_at == t0 + 500
    assert isinstance(decide(run.spec, state, obs, t0 + 1099), Wait)
    assert isinstance(decide(run.spec, state, obs, t0 + 1100), Advance)


def test_zero_soak_advances_as_soon_as_the_wave_reports() -> None:
    run = make_run(waves="1,100%")
    run.spec = replace(run.spec, soak_seconds=0.0)
    run.tick()  # canary sent
    assert isinstance(run.tick(), Advance)  # reported: next wave at once
