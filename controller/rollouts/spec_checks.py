"""The checks on a rollout spec: every problem found, so an operator fixes a file in one round.

:func:`static_problems` needs no fleet (the parser runs it, so a bad file fails before it
reaches the fleet); :func:`validate` adds the checks that need the number of devices the
selector matches now, and the wave planner runs the wave checks on the devices it splits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from controller.fleet.selectors import SelectorError, parse_selector
from controller.rollouts.spec import MAX_INT32, Gates, RolloutSpec, SpecError, WaveSize
from edgewise_wire import SchemaError
from edgewise_wire.manifest import check_agent_version


def validate(spec: RolloutSpec, fleet_size_matched: int) -> None:
    """Raise :class:`SpecError` listing every reason this spec cannot run on the matched fleet."""
    problems = static_problems(spec)
    if fleet_size_matched <= 0:
        problems.append(f"selector {spec.selector!r} matches no devices")
    elif spec.waves and not any(wave_size_problem(i, w) for i, w in enumerate(spec.waves)):
        problems += wave_plan_problems(spec.waves, fleet_size_matched)
    if problems:
        raise SpecError(problems)


def static_problems(spec: RolloutSpec) -> list[str]:
    """Every problem of the spec that needs no fleet: the target, ranges, the selector's
    grammar, wave sizes, soaks, the gate failure policy and the gates."""
    problems = []
    if spec.kind == "agent":
        problems += _agent_problems(spec)
    elif not spec.model:
        problems.append("model: must not be empty")
    if not 0 <= spec.version <= MAX_INT32:
        problems.append(f"version: must be between 0 and {MAX_INT32}, got {spec.version}")
    if not -MAX_INT32 <= spec.priority <= MAX_INT32:
        problems.append(f"priority: must be between {-MAX_INT32} and {MAX_INT32}, "
                        f"got {spec.priority}")
    try:
        parse_selector(spec.selector)
    except SelectorError as exc:
        problems.append(f"selector: {exc}")
    if not spec.waves:
        problems.append("waves: none given; write e.g. '1,10%,50%,100%'")
    problems += [p for i, w in enumerate(spec.waves) if (p := wave_size_problem(i, w))]
    soaks = spec.soak_seconds if isinstance(spec.soak_seconds, tuple) else (spec.soak_seconds,)
    if isinstance(spec.soak_seconds, tuple) and len(soaks) != len(spec.waves):
        problems.append(f"soak_seconds: {len(soaks)} values given for {len(spec.waves)} waves")
    if any(not math.isfinite(s) or s < 0 for s in soaks):
        problems.append(f"soak_seconds: must be >= 0, got {spec.soak_seconds}")
    if not math.isfinite(spec.wave_timeout_seconds) or spec.wave_timeout_seconds <= 0:
        problems.append(f"wave_timeout_seconds: must be > 0, got {spec.wave_timeout_seconds}")
    if spec.on_gate_failure not in ("pause", "abort"):
        problems.append(f"on_gate_failure: must be 'pause' or 'abort', got {spec.on_gate_failure!r}")
    return problems + _gate_problems(spec.gates)


def _gate_problems(g: Gates) -> list[str]:
    problems = []

    def share(name: str, value: float | None) -> None:
        if value is not None and not 0 <= value <= 1:
            problems.append(f"gates.{name}: {value} is outside [0, 1]")

    share("min_reporting_share", g.min_reporting_share)
    share("max_accuracy_drop", g.max_accuracy_drop)
    budget = g.max_failed_activations
    if (budget.count is None) == (budget.share is None):
        problems.append("gates.max_failed_activations: give either a count or a share")
    share("max_failed_activations", budget.share)
    if budget.count is not None and budget.count < 0:
        problems.append(f"gates.max_failed_activations: count {budget.count} is negative")
    if g.max_p95_latency_ms is not None and not g.max_p95_latency_ms > 0:
        problems.append(f"gates.max_p95_latency_ms: must be > 0, got {g.max_p95_latency_ms}")
    if g.max_drift_psi is not None and not g.max_drift_psi >= 0:
        problems.append(f"gates.max_drift_psi: must be >= 0, got {g.max_drift_psi}")
    if g.min_labelled < 0:
        problems.append(f"gates.min_labelled: must be >= 0, got {g.min_labelled}")
    for name in ("max_memory_increase", "max_cpu_increase"):
        value = getattr(g, name)
        if value is not None and not 0 <= value <= 100:
            problems.append(f"gates.{name}: must be within [0, 100] (0.25 or '25%': a quarter "
                            f"more), got {value}")
    return problems


def wave_size_problem(i: int, wave: WaveSize) -> str | None:
    """What is wrong with wave ``i`` (from 0) on its own, or None."""
    if wave.is_percent and not 0 < wave.value <= 100:
        return f"wave {i + 1} ({wave}): percentage must be in (0, 100]"
    if not wave.is_percent and (not isinstance(wave.value, int) or wave.value < 1):
        return f"wave {i + 1} ({wave}): device count must be a whole number >= 1"
    return None


def wave_plan_problems(waves: Sequence[WaveSize], total: int) -> list[str]:
    """Order and coverage checks; same-kind waves must grow, mixed ones may tie after rounding."""
    problems = []
    last_pct: WaveSize | None = None
    last_count: WaveSize | None = None
    for i, wave in enumerate(waves):
        same = last_pct if wave.is_percent else last_count
        if same is not None and not wave.value > same.value:
            problems.append(f"waves must be strictly increasing: wave {i + 1} ({wave}) "
                            f"is not larger than {same}")
        elif i and wave.target(total) < waves[i - 1].target(total):
            problems.append(f"waves must be strictly increasing: wave {i + 1} ({wave}) covers "
                            f"fewer than wave {i} ({waves[i - 1]}) on {total} devices")
        if wave.is_percent:
            last_pct = wave
        else:
            last_count = wave
    if waves and not waves[-1].covers_all(total):
        problems.append(f"last wave ({waves[-1]}) does not cover the fleet: end with 100% "
                        f"or a count >= {total}, the matched devices")
    if len(waves) > total:
        problems.append(f"{len(waves)} waves need at least {len(waves)} devices, "
                        f"the selector matches {total}")
    return problems


def _agent_problems(spec: RolloutSpec) -> list[str]:
    """What an agent rollout cannot ask for: its gates are reporting and failed activations
    (the launcher restoring the old agent is a failed activation); the metric gates judge a
    model version's figures, which an agent version has none of."""
    problems = []
    try:
        check_agent_version(spec.agent_version, "agent_version")
    except SchemaError as exc:
        problems.append(str(exc))
    g = spec.gates
    metric = [key for key in ("max_accuracy_drop", "max_p95_latency_ms", "max_drift_psi",
                              "max_memory_increase", "max_cpu_increase")
              if getattr(g, key) is not None]
    if metric:
        problems.append(f"gates {', '.join(metric)}: model gates, not for an agent rollout "
                        "(its gates are min_reporting_share and max_failed_activations)")
    if spec.probation is not None:
        problems.append("probation: not for an agent rollout (the launcher keeps its own)")
    return problems

