"""What the devices of a wave report, and the gates judged from it.

:func:`evaluate_gates` is separate from the engine so the CLI and the dashboard can show every
gate's value against its threshold while a wave is in flight. A gate is in one of three
states: passed, failed (definitively: waiting longer cannot make it pass), or pending (not
enough evidence yet). The engine turns "pending for too long" into a failure; this module never
looks at a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.fleet.versions import ModelVersion as ModelVersion
from controller.fleet.versions import Version
from controller.rollouts.spec import Gates

# FAILED_UPDATE_STATES: states that may mean "this device tried the version and gave up on
# it"; defined with the other state rules in edgewise_wire/update_states.py, re-exported here
from edgewise_wire.update_states import FAILED_UPDATE_STATES as FAILED_UPDATE_STATES
from edgewise_wire.update_states import gave_up_on, runs

REPORTING = "reporting"
FAILED_ACTIVATIONS = "failed_activations"
ACCURACY_DROP = "accuracy_drop"
P95_LATENCY = "p95_latency_ms"
DRIFT = "drift_psi"
MEMORY_INCREASE = "memory_increase"
CPU_INCREASE = "cpu_increase"

_EPS = 1e-9  # 0.90 - 0.85 is 0.05000000000000004; a threshold is not missed by float noise
Z_ONE_SIDED_95 = 1.645  # how sure the accuracy gate must be before it fails a wave


@dataclass(frozen=True)
class DeviceObservation:
    """One device as the controller last saw it.

    ``active`` and ``update_state`` come from the retained reported state. The metric fields
    describe the *rollout's* version on this device (ignored unless it runs it);
    ``baseline_accuracy`` is the accuracy the device measured for its previous version.
    ``accuracy`` is over ``labelled`` samples with ground truth.
    """

    active: Version | None = None
    update_state: str = "idle"
    online: bool = True
    accuracy: float | None = None
    labelled: int = 0
    p95_latency_ms: float | None = None
    drift_psi: float | None = None
    baseline_accuracy: float | None = None
    # resource cost of the rollout's version on this device and of the version it ran before
    # (session memory at activation in bytes, CPU ms per prediction); None: not measured (an
    # agent from before device health measures neither)
    session_bytes: float | None = None
    cpu_ms_per_prediction: float | None = None
    baseline_session_bytes: float | None = None
    baseline_cpu_ms_per_prediction: float | None = None

    def runs(self, target: Version) -> bool:
        """Whether the device reports ``target`` active and committed (not staged, not in
        probation, not failed), or is back on it after a rollback."""
        return runs(self.update_state, self.active, target)

    def failed_on(self, target: Version) -> bool:
        """Whether the device gave up on ``target``: ``failed``, or ``rolled_back`` while
        ``target`` is not active (``observe`` leaves out failures of other versions)."""
        return gave_up_on(self.update_state, self.active, target)


Observations = Mapping[str, DeviceObservation]


@dataclass(frozen=True)
class GateResult:
    """One gate against its threshold. ``value`` is None when nothing was measured yet."""

    name: str
    value: float | None
    threshold: float
    passed: bool
    pending: bool = False
    detail: str = ""

    @property
    def failed(self) -> bool:
        return not self.passed and not self.pending

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "threshold": self.threshold,
                "passed": self.passed, "pending": self.pending, "detail": self.detail}


def evaluate_gates(gates: Gates, wave_devices: Sequence[str], observations: Observations,
                   target: Version) -> list[GateResult]:
    """Judge one wave's devices; gates switched off (``None``) are left out.

    Order: failed activations, reporting, accuracy drop, p95 latency, drift: the engine acts on
    the first failure, and a failed activation is the most direct evidence.
    Metric gates use only devices running ``target``. They fail as soon as the evidence is
    over the threshold, but pass only once enough of the wave has contributed: the labelled
    count for accuracy, and ``min_reporting_share`` of the wave for latency and drift. The
    accuracy gate fails only when the drop exceeds its threshold beyond sampling noise (95%
    one-sided); a drop over the threshold but within the noise stays pending for more labels.
    """
    seen = [observations.get(d, DeviceObservation()) for d in wave_devices]
    running = [o for o in seen if o.runs(target)]
    size = len(seen)
    failed = sum(1 for o in seen if o.failed_on(target))
    enough = math.ceil(gates.min_reporting_share * size - _EPS)
    results = [_failures(gates, failed, size), _reporting(gates, len(running), failed, size)]
    if gates.max_accuracy_drop is not None:
        results.append(_accuracy(gates.max_accuracy_drop, gates.min_labelled, running))
    if gates.max_p95_latency_ms is not None:
        results.append(_worst(P95_LATENCY, gates.max_p95_latency_ms, enough,
                              [o.p95_latency_ms for o in running]))
    if gates.max_drift_psi is not None:
        results.append(_worst(DRIFT, gates.max_drift_psi, enough, [o.drift_psi for o in running]))
    if gates.max_memory_increase is not None:
        results.append(_increase(MEMORY_INCREASE, gates.max_memory_increase, enough, [
            (o.session_bytes, o.baseline_session_bytes) for o in running], "session memory"))
    if gates.max_cpu_increase is not None:
        results.append(_increase(CPU_INCREASE, gates.max_cpu_increase, enough, [
            (o.cpu_ms_per_prediction, o.baseline_cpu_ms_per_prediction) for o in running],
            "CPU time per prediction"))
    return results


def _failures(gates: Gates, failed: int, size: int) -> GateResult:
    budget = gates.max_failed_activations
    if budget.share is not None:
        value, threshold = (failed / size if size else 0.0), budget.share
    else:
        value, threshold = float(failed), float(budget.count or 0)
    return GateResult(FAILED_ACTIVATIONS, value, threshold, value <= threshold + _EPS,
                      detail=f"{failed} of {size} devices failed to activate")


def _reporting(gates: Gates, running: int, failed: int, size: int) -> GateResult:
    share = running / size if size else 1.0
    threshold = gates.min_reporting_share
    passed = share >= threshold - _EPS
    # Failed devices will not report the version, so past a point waiting cannot help.
    reachable = size == 0 or (size - failed) / size >= threshold - _EPS
    return GateResult(REPORTING, share, threshold, passed, pending=not passed and reachable,
                      detail=f"{running} of {size} devices report the version active")


def _accuracy(max_drop: float, min_labelled: int,
              running: Sequence[DeviceObservation]) -> GateResult:
    """Label-weighted accuracy of the new version against the same devices' baseline."""
    rows = [o for o in running if o.accuracy is not None and o.labelled > 0
            and o.baseline_accuracy is not None]
    labelled = sum(o.labelled for o in rows)
    if not rows:
        why = ("no labelled feedback yet" if not any(o.labelled for o in running)
               else "no baseline accuracy for the previous version")
        return GateResult(ACCURACY_DROP, None, max_drop, False, pending=True,
                          detail=f"{why} (need {min_labelled} labels)")
    new = sum(o.accuracy * o.labelled for o in rows if o.accuracy is not None) / labelled
    base = sum(o.baseline_accuracy * o.labelled for o in rows
               if o.baseline_accuracy is not None) / labelled
    drop = base - new
    detail = f"accuracy {new:.3f} vs baseline {base:.3f} over {labelled} labels"
    if labelled < min_labelled:
        return GateResult(ACCURACY_DROP, drop, max_drop, False, pending=True,
                          detail=f"{detail}; need {min_labelled} labels")
    if drop <= max_drop + _EPS:
        return GateResult(ACCURACY_DROP, drop, max_drop, True, detail=detail)
    # Over the threshold. A definite failure needs the drop to exceed it beyond sampling noise
    # (one-sided 95%, Laplace-smoothed binomial error of the new version's accuracy): 18 of 20
    # right is not evidence against a 97% baseline; 4 of 30 is.
    p = (new * labelled + 1) / (labelled + 2)
    margin = Z_ONE_SIDED_95 * math.sqrt(p * (1 - p) / labelled)
    if drop - margin > max_drop + _EPS:
        return GateResult(ACCURACY_DROP, drop, max_drop, False,
                          detail=f"{detail}; the drop is at least {drop - margin:.3f} "
                                 "with 95% confidence")
    return GateResult(ACCURACY_DROP, drop, max_drop, False, pending=True,
                      detail=f"{detail}; over the threshold but within sampling noise "
                             f"(+/-{margin:.3f}): waiting for more labels")


def _increase(name: str, threshold: float, enough: int,
              pairs: Sequence[tuple[float | None, float | None]], what: str) -> GateResult:
    """The new version's cost against the previous version's on the same devices: the median
    of the per-device increases (``new / old - 1``), so one noisy measurement decides nothing.
    Judged once ``enough`` devices measured both; devices that did not (an agent from before
    device health, a device that ran no model before) are not counted."""
    increases = sorted(new / old - 1.0 for new, old in pairs
                       if new is not None and old is not None and old > 0)
    if not increases:
        return GateResult(name, None, threshold, False, pending=True,
                          detail=f"no device measured the {what} of both versions yet (need "
                                 f"{enough}; agents from before device health measure none)")
    mid = len(increases) // 2
    median = increases[mid] if len(increases) % 2 else (increases[mid - 1] + increases[mid]) / 2
    detail = (f"{what} {median:+.0%} against the previous version (median of "
              f"{len(increases)} devices, need {enough})")
    if len(increases) < enough:
        return GateResult(name, median, threshold, False, pending=True, detail=detail)
    return GateResult(name, median, threshold, median <= threshold + _EPS, detail=detail)


def _worst(name: str, threshold: float, enough: int, values: Sequence[float | None]) -> GateResult:
    """The worst device decides: one overheating Pi is what this gate exists to catch."""
    measured = [v for v in values if v is not None]
    worst = max(measured) if measured else None
    detail = f"worst of {len(measured)} devices (need {enough})"
    if worst is not None and worst > threshold + _EPS:
        return GateResult(name, worst, threshold, False, detail=detail)
    if len(measured) < enough:
        return GateResult(name, worst, threshold, False, pending=True, detail=detail)
    return GateResult(name, worst, threshold, True, detail=detail)
