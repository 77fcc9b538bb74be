"""Agent rollouts in the pure rollout code: the spec, the wave plan, what the devices' reported
agent version and self-update state mean to the gates, the engine's waves, and what an abort
sends each moved device back to."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from controller.fleet.device_registry import DeviceRow
from controller.fleet.versions import AgentVersion, ModelVersion
from controller.rollouts.decisions import Abort, Advance, Complete, Decision, Wait
from controller.rollouts.engine import (
    RolloutState,
    Status,
    apply,
    decide,
    initial_state,
    operator_abort,
    target_of,
)
from controller.rollouts.gates import FAILED_ACTIVATIONS
from controller.rollouts.observations import observe_agents, plan_ownership
from controller.rollouts.spec import SpecError
from controller.rollouts.spec_parse import rollout_kind, spec_from_dict, spec_to_dict
from controller.rollouts.store import RolloutRecord

OLD, NEW = "1.0.0", "2.0.0"
DEVICES = [f"pi-{i:02d}" for i in range(10)]


def agent_spec(**extra: object) -> dict[str, object]:
    return {"kind": "agent", "agent_version": NEW, "waves": "10%,50%,100%",
            "soak_seconds": 60, "on_gate_failure": "abort", **extra}


def row(device: str, agent: str = OLD, target: str | None = None,
        where: str | None = None) -> DeviceRow:
    return DeviceRow(device, True, {"site": "berlin"}, "active", ModelVersion("iris", 1), None,
                     ModelVersion("iris", 1), "ro-1", 0.0, agent_version=agent,
                     agent_update_target=target, agent_update_state=where)


def test_an_agent_spec_names_an_agent_version_and_reads_back_equal() -> None:
    spec = spec_from_dict(agent_spec(selector="site=berlin"))
    assert spec.kind == "agent" and spec.agent_version == NEW and spec.model == ""
    assert spec.display_name == f"agent {NEW}"
    assert target_of(spec) == AgentVersion(NEW)
    assert spec_from_dict(spec_to_dict(spec)) == spec
    # a model spec does not change shape: no kind key, older stored specs read back equal
    model = spec_from_dict({"model": "iris", "version": 2})
    assert "kind" not in spec_to_dict(model) and model.kind == "model"


@pytest.mark.parametrize("extra, words", [
    ({"gates": {"max_accuracy_drop": 0.02}}, "max_accuracy_drop: model gates"),
    ({"gates": {"max_p95_latency_ms": 50}}, "max_p95_latency_ms: model gates"),
    ({"model": "iris"}, "model: not for an agent rollout"),
    ({"probation": {"duration_s": 10}}, "probation: not for an agent rollout"),
    ({"agent_version": "2.0 beta"}, "is not an agent version"),
])
def test_an_agent_spec_refuses_what_only_a_model_rollout_has(extra: dict[str, object],
                                                              words: str) -> None:
    with pytest.raises(SpecError, match=words):
        spec_from_dict(agent_spec(**extra))


def test_a_model_spec_refuses_an_agent_version_and_kinds_are_two() -> None:
    with pytest.raises(SpecError, match="only for kind 'agent'"):
        spec_from_dict({"kind": "model", "model": "iris", "version": 2, "agent_version": NEW})
    with pytest.raises(SpecError, match="kind: expected 'model' or 'agent'"):
        spec_from_dict({"kind": "firmware", "model": "iris", "version": 2})


def test_a_spec_naming_an_agent_version_instead_of_a_model_is_an_agent_rollout() -> None:
    without_kind = {k: v for k, v in agent_spec().items() if k != "kind"}
    assert rollout_kind(without_kind) == "agent"
    spec = spec_from_dict(without_kind)
    assert spec == spec_from_dict(agent_spec()) and spec.kind == "agent"
    assert spec.agent_version == NEW and (spec.model, spec.version) == ("", 0)
    assert rollout_kind({"model": "iris"}) == rollout_kind({}) == "model"
    assert rollout_kind({"kind": "agent", "model": "iris"}) == "agent"


@pytest.mark.parametrize("doc, reason", [
    ({"model": "iris", "version": 2, "agent_version": NEW},
     "model and agent_version: name one, model (and version) for a model rollout or "
     "agent_version for an agent rollout, not both"),
    ({"waves": "100%"}, "nothing to roll out: name model (and version) for a model rollout, "
                        "or agent_version for an agent rollout"),
    ({"agent_version": NEW, "version": 2},
     "version: not for an agent rollout (it names agent_version; the launcher keeps its own "
     "probation)"),
    ({"agent_version": NEW, "gates": {"max_accuracy_drop": 0.02, "max_cpu_increase": "25%"}},
     "gates max_accuracy_drop, max_cpu_increase: model gates, not for an agent rollout (its "
     "gates are min_reporting_share and max_failed_activations)"),
])
def test_a_spec_without_kind_is_refused_in_one_line_for_both_targets_neither_or_model_parts(
        doc: dict[str, object], reason: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict(doc)
    assert info.value.problems == [reason]


def test_the_waves_split_the_devices_once_each_reproducibly() -> None:
    spec = spec_from_dict(agent_spec())
    state = initial_state(spec, DEVICES)
    waves = [[d for d, w in state.assignment.items() if w == i] for i in range(3)]
    assert [len(w) for w in waves] == [1, 4, 5]
    assert sorted(d for w in waves for d in w) == DEVICES
    assert initial_state(spec, list(reversed(DEVICES))) == state


def test_what_the_reported_agent_update_means_to_the_gates() -> None:
    target = AgentVersion(NEW)
    seen = observe_agents({
        "old": row("old"),  # not asked yet
        "downloading": row("downloading", OLD, NEW, "downloading"),
        "trial": row("trial", NEW, NEW, "probation"),  # runs it, not committed
        "done": row("done", NEW, NEW, "current"),
        "restored": row("restored", OLD, NEW, "failed"),  # its launcher restored the old one
        "refused": row("refused", OLD, NEW, "refused"),
        "other_failure": row("other_failure", OLD, "1.5.0", "failed"),  # not this version
    }, ["old", "downloading", "trial", "done", "restored", "refused", "other_failure",
        "unknown"], target)
    assert "unknown" not in seen
    assert [d for d, o in seen.items() if o.runs(target)] == ["done"]
    assert sorted(d for d, o in seen.items() if o.failed_on(target)) == ["refused", "restored"]
    assert seen["restored"].active == AgentVersion(OLD)
    assert seen["trial"].active == AgentVersion(NEW) and seen["trial"].update_state == "probation"


def tick(spec_d: Mapping[str, object], state: RolloutState, rows: Mapping[str, DeviceRow],
         now: float) -> tuple[RolloutState, Decision]:
    spec = spec_from_dict(dict(spec_d))
    decision = decide(spec, state, observe_agents(rows, list(state.assignment),
                                                  AgentVersion(spec.agent_version)), now)
    return apply(state, decision, now), decision


def test_waves_go_out_after_each_wave_runs_the_new_agent_committed_and_soaked() -> None:
    spec_d = agent_spec()
    spec = spec_from_dict(spec_d)
    rows = {d: row(d) for d in DEVICES}
    state = initial_state(spec, DEVICES)
    now = 1000.0
    sent: list[tuple[str, ...]] = []
    for _ in range(40):
        state, decision = tick(spec_d, state, rows, now)
        if isinstance(decision, Advance):
            sent.append(decision.devices)
            # what each device ran is recorded for an abort
            assert all(decision.previous[d] == AgentVersion(OLD) for d in decision.devices)
            for d in decision.devices:  # on probation first: the wave waits
                rows[d] = row(d, NEW, NEW, "probation")
        elif isinstance(decision, Wait) and not decision.soaking:
            for d in state.sent_in(state.wave):
                rows[d] = row(d, NEW, NEW, "current")
        if isinstance(decision, Complete):
            break
        now += 30
    assert [len(s) for s in sent] == [1, 4, 5]
    assert state.status is Status.COMPLETED
    assert set(state.previous) == set(DEVICES)


def test_a_canary_whose_launcher_restored_the_old_agent_aborts_and_only_it_is_reverted() -> None:
    spec_d = agent_spec()
    spec = spec_from_dict(spec_d)
    rows = {d: row(d) for d in DEVICES}
    state = initial_state(spec, DEVICES)
    state, first = tick(spec_d, state, rows, 1000.0)
    assert isinstance(first, Advance) and len(first.devices) == 1
    canary = first.devices[0]
    rows[canary] = row(canary, OLD, NEW, "failed")
    state, decision = tick(spec_d, state, rows, 1030.0)
    assert isinstance(decision, Abort) and decision.gate == FAILED_ACTIVATIONS
    assert dict(decision.revert) == {canary: AgentVersion(OLD)}
    assert state.status is Status.ABORTING
    # it runs the old agent already: the revert is confirmed at once, nobody else was sent
    state, decision = tick(spec_d, state, rows, 1060.0)
    assert isinstance(decision, Complete) and state.status is Status.ABORTED
    assert list(state.previous) == [canary]


def test_an_operator_abort_sends_every_moved_device_back_to_what_it_ran() -> None:
    spec = spec_from_dict(agent_spec(waves="2,100%"))
    previous = {"a": AgentVersion(OLD), "b": AgentVersion("0.9.0")}
    state = RolloutState(status=Status.SOAKING, wave=0, wave_count=2,
                         assignment={"a": 0, "b": 0, "c": 1}, previous=previous)
    abort = operator_abort(state, "stop")
    assert dict(abort.revert) == previous
    # the state keeps agent versions across a save
    saved = apply(state, abort, 5.0)
    assert RolloutState.from_dict(saved.to_dict()) == saved
    assert spec.kind == "agent"


def record(rid: int, spec_d: Mapping[str, object], devices: list[str]) -> RolloutRecord:
    spec = spec_from_dict(dict(spec_d))
    state = initial_state(spec, devices)
    state = RolloutState(status=Status.COMPLETED, wave=state.wave_count - 1,
                         wave_count=state.wave_count, assignment=state.assignment,
                         previous={d: None for d in devices})
    return RolloutRecord(rid, spec.display_name, spec, state, 0, 0.0, 0.0, "test")


def test_a_device_has_one_model_owner_and_one_agent_owner() -> None:
    rows = {d: row(d) for d in DEVICES}
    model = record(1, {"model": "iris", "version": 1, "waves": "100%"}, DEVICES)
    agent = record(2, agent_spec(waves="100%"), DEVICES)
    ownership = plan_ownership([model, agent], rows)
    assert ownership.releases == {}  # the newer agent rollout takes nothing from the model one
    # a new device joins the newest rollout of each kind
    rows["pi-new"] = DeviceRow("pi-new", True, {"site": "berlin"}, None, None, None, None, None,
                               0.0)
    joiners = plan_ownership([model, agent], rows).joiners
    assert joiners == {1: ["pi-new"], 2: ["pi-new"]}
