import pytest

from controller.rollouts.gates import (
    ACCURACY_DROP,
    DRIFT,
    FAILED_ACTIVATIONS,
    P95_LATENCY,
    REPORTING,
    DeviceObservation,
    GateResult,
    ModelVersion,
    evaluate_gates,
)
from controller.rollouts.spec import FailureBudget, Gates

OLD, NEW = ModelVersion("cam", 3), ModelVersion("cam", 4)
WAVE = [f"d{i}" for i in range(10)]


def on_new(**metrics: object) -> DeviceObservation:
    return DeviceObservation(active=NEW, update_state="active", baseline_accuracy=0.92,
                             **metrics)  # type: ignore[arg-type]


def by_name(results: list[GateResult]) -> dict[str, GateResult]:
    return {r.name: r for r in results}


def test_switched_off_gates_are_left_out() -> None:
    names = [r.name for r in evaluate_gates(Gates(), WAVE, {}, NEW)]
    assert names == [FAILED_ACTIVATIONS, REPORTING]
    all_on = Gates(max_accuracy_drop=0.05, max_p95_latency_ms=50, max_drift_psi=0.2)
    names = [r.name for r in evaluate_gates(all_on, WAVE, {}, NEW)]
    assert names == [FAILED_ACTIVATIONS, REPORTING, ACCURACY_DROP, P95_LATENCY, DRIFT]


def test_reporting_is_pending_until_the_share_reports() -> None:
    obs = {d: on_new() for d in WAVE[:8]}
    r = by_name(evaluate_gates(Gates(), WAVE, obs, NEW))[REPORTING]
    assert (r.value, r.threshold, r.passed, r.pending) == (0.8, 0.9, False, True)
    assert r.detail == "8 of 10 devices report the version active"
    obs[WAVE[8]] = on_new()
    assert by_name(evaluate_gates(Gates(), WAVE, obs, NEW))[REPORTING].passed


def test_staged_or_old_versions_do_not_count_as_reporting() -> None:
    obs = {WAVE[0]: DeviceObservation(active=OLD, update_state="active"),
           WAVE[1]: DeviceObservation(active=NEW, update_state="activating")}
    r = by_name(evaluate_gates(Gates(min_reporting_share=0.1), WAVE[:2], obs, NEW))[REPORTING]
    assert r.value == 0.0 and r.pending


def test_reporting_fails_outright_when_failures_make_the_share_unreachable() -> None:
    obs = {d: DeviceObservation(active=OLD, update_state="failed") for d in WAVE[:2]}
    gates = Gates(max_failed_activations=FailureBudget(count=5))
    results = by_name(evaluate_gates(gates, WAVE, obs, NEW))
    assert results[FAILED_ACTIVATIONS].passed
    assert results[REPORTING].failed


@pytest.mark.parametrize(
    ("budget", "failed", "value", "passed"),
    [
        (FailureBudget(count=0), 0, 0, True),
        (FailureBudget(count=0), 1, 1, False),
        (FailureBudget(count=2), 2, 2, True),
        (FailureBudget(count=None, share=0.1), 1, 0.1, True),
        (FailureBudget(count=None, share=0.1), 2, 0.2, False),
    ],
)
def test_failed_activation_budget(budget: FailureBudget, failed: int, value: float,
                                  passed: bool) -> None:
    obs = {d: DeviceObservation(active=OLD, update_state="failed") for d in WAVE[:failed]}
    r = by_name(evaluate_gates(Gates(max_failed_activations=budget), WAVE, obs, NEW))
    assert r[FAILED_ACTIVATIONS].value == pytest.approx(value)
    assert r[FAILED_ACTIVATIONS].passed is passed
    assert not r[FAILED_ACTIVATIONS].pending


def test_accuracy_is_label_weighted_against_the_baseline() -> None:
    obs = {"a": on_new(accuracy=0.9, labelled=300), "b": on_new(accuracy=0.5, labelled=100)}
    r = by_name(evaluate_gates(Gates(max_accuracy_drop=0.05, min_labelled=30),
                               ["a", "b"], obs, NEW))[ACCURACY_DROP]
    assert r.value == pytest.approx(0.92 - 0.8)
    assert r.failed
    assert "with 95% confidence" in r.detail


@pytest.mark.parametrize(("accuracy", "labelled", "verdict"), [
    (0.90, 20, "pending"),  # 18 of 20 right: not evidence against 0.92 - 0.05
    (0.90, 2000, "failed"),  # the same share over many labels is
    (0.30, 30, "failed"),  # far below: a few labels suffice
    (0.88, 30, "passed"),  # within the threshold: passes on the point estimate
])
def test_accuracy_fails_only_beyond_sampling_noise(accuracy: float, labelled: int,
                                                   verdict: str) -> None:
    obs = {"a": DeviceObservation(active=NEW, update_state="active", accuracy=accuracy,
                                  labelled=labelled, baseline_accuracy=0.97)}
    r = by_name(evaluate_gates(Gates(max_accuracy_drop=0.05 if verdict != "passed" else 0.1,
                                     min_labelled=20), ["a"], obs, NEW))[ACCURACY_DROP]
    assert {"pending": r.pending, "failed": r.failed, "passed": r.passed}[verdict], r
    if verdict == "pending":
        assert "within sampling noise" in r.detail


def test_accuracy_drop_at_the_threshold_passes_despite_float_noise() -> None:
    obs = {"a": DeviceObservation(active=NEW, update_state="active", accuracy=0.85, labelled=50,
                                  baseline_accuracy=0.90)}
    r = by_name(evaluate_gates(Gates(max_accuracy_drop=0.05), ["a"], obs, NEW))[ACCURACY_DROP]
    assert r.passed


@pytest.mark.parametrize(
    ("obs", "detail"),
    [
        ({"a": on_new()}, "no labelled feedback yet (need 30 labels)"),
        ({"a": on_new(accuracy=0.9, labelled=10)}, "over 10 labels; need 30 labels"),
        ({"a": DeviceObservation(active=NEW, update_state="active", accuracy=0.9, labelled=50)},
         "no baseline accuracy for the previous version"),
    ],
)
def test_accuracy_without_enough_evidence_is_pending(obs: dict[str, DeviceObservation],
                                                     detail: str) -> None:
    r = by_name(evaluate_gates(Gates(max_accuracy_drop=0.05), ["a"], obs, NEW))[ACCURACY_DROP]
    assert r.pending and not r.passed
    assert detail in r.detail


def test_latency_fails_on_the_worst_device_but_passes_only_with_enough_devices() -> None:
    gates = Gates(max_p95_latency_ms=50, min_reporting_share=0.5)
    four = WAVE[:4]
    obs = {four[0]: on_new(p95_latency_ms=20)}
    r = by_name(evaluate_gates(gates, four, obs, NEW))[P95_LATENCY]
    assert r.pending and r.value == 20 and r.detail == "worst of 1 devices (need 2)"
    obs[four[1]] = on_new(p95_latency_ms=30)
    assert by_name(evaluate_gates(gates, four, obs, NEW))[P95_LATENCY].passed
    obs[four[2]] = on_new(p95_latency_ms=75)
    r = by_name(evaluate_gates(gates, four, obs, NEW))[P95_LATENCY]
    assert r.failed and r.value == 75


def test_metrics_from_devices_not_running_the_version_are_ignored() -> None:
    stale = DeviceObservation(active=OLD, update_state="active", drift_psi=0.9)
    r = by_name(evaluate_gates(Gates(max_drift_psi=0.2), ["a"], {"a": stale}, NEW))[DRIFT]
    assert r.pending and r.value is None


def test_gate_result_to_dict() -> None:
    r = GateResult(DRIFT, 0.3, 0.2, False, detail="worst of 3 devices (need 3)")
    assert r.to_dict() == {"name": DRIFT, "value": 0.3, "threshold": 0.2, "passed": False,
                           "pending": False, "detail": "worst of 3 devices (need 3)"}


# -- resource gates: the new version's cost against the previous one on the same devices --------

def costing(new_mem: float | None, old_mem: float | None, new_cpu: float | None = None,
            old_cpu: float | None = None) -> DeviceObservation:
    return on_new(session_bytes=new_mem, baseline_session_bytes=old_mem,
                  cpu_ms_per_prediction=new_cpu, baseline_cpu_ms_per_prediction=old_cpu)


def test_three_times_the_memory_fails_and_equal_cost_passes() -> None:
    from controller.rollouts.gates import CPU_INCREASE, MEMORY_INCREASE

    gates = Gates(max_memory_increase=0.25, max_cpu_increase=0.5)
    heavy = {d: costing(30e6, 10e6, 0.2, 0.1) for d in WAVE}
    results = by_name(evaluate_gates(gates, WAVE, heavy, NEW))
    memory, cpu = results[MEMORY_INCREASE], results[CPU_INCREASE]
    assert memory.failed and memory.value == pytest.approx(2.0)
    assert memory.detail == ("session memory +200% against the previous version (median of 10 "
                             "devices, need 9)")
    assert cpu.failed and cpu.value == pytest.approx(1.0)
    same = {d: costing(10.2e6, 10e6, 0.1, 0.1) for d in WAVE}
    assert all(r.passed for r in evaluate_gates(gates, WAVE, same, NEW))


def test_one_noisy_device_does_not_decide_the_memory_gate() -> None:
    from controller.rollouts.gates import MEMORY_INCREASE

    obs = {d: costing(10e6, 10e6) for d in WAVE}
    obs[WAVE[0]] = costing(90e6, 10e6)
    assert by_name(evaluate_gates(Gates(max_memory_increase=0.25), WAVE, obs, NEW))[
        MEMORY_INCREASE].passed


def test_without_costs_of_both_versions_the_resource_gate_waits() -> None:
    from controller.rollouts.gates import MEMORY_INCREASE

    gates = Gates(max_memory_increase=0.25)
    old_agents = {d: costing(None, None) for d in WAVE}  # agents from before device health
    r = by_name(evaluate_gates(gates, WAVE, old_agents, NEW))[MEMORY_INCREASE]
    assert r.pending and r.value is None and "agents from before device health" in r.detail
    few = {d: costing(30e6, 10e6) if d in WAVE[:3] else costing(30e6, None) for d in WAVE}
    r = by_name(evaluate_gates(gates, WAVE, few, NEW))[MEMORY_INCREASE]
    assert r.pending and r.value == pytest.approx(2.0)  # 3 of the 9 it needs
