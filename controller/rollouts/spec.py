"""What an operator asks for when rolling a model version out, and the wave plan it implies.

A :class:`RolloutSpec` is plain data read from a TOML/JSON file or a REST body by
:func:`spec_from_dict`. :func:`validate` checks it against the number of devices the selector
matches *now*, because "is the last wave 100%?" and "are the waves increasing?" only have an
answer for a fleet size. :func:`plan_waves` turns cumulative wave sizes into disjoint device
lists, ordered by a stable hash so canaries land across sites instead of on the alphabetically
first rack.

One module on purpose (about 430 lines): the spec's types, its parser and its checks are one
grammar; the parser runs the checks and the wave planner reuses them, so apart they would import
each other.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from controller.errors import ValidationError
from controller.fleet.selectors import SelectorError, parse_selector
from edgewise_wire import ProbationPolicy, SchemaError
from edgewise_wire.manifest import check_agent_version

GateFailurePolicy = Literal["pause", "abort"]
RolloutKind = Literal["model", "agent"]
MAX_INT32 = 2**31 - 1  # versions and priorities are stored as 32-bit integers


class SpecError(ValidationError):
    """The rollout spec is malformed or cannot work for the matched fleet.

    ``problems`` lists every issue found, so an operator fixes a file in one round.
    """

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class WaveSize:
    """A cumulative wave target: ``value`` devices, or ``value`` percent of the fleet."""

    value: int | float
    is_percent: bool = False

    @classmethod
    def devices(cls, count: int) -> WaveSize:
        return cls(count, False)

    @classmethod
    def percent(cls, pct: float) -> WaveSize:
        return cls(pct, True)

    def target(self, total: int) -> int:
        """Devices covered once this wave is done (percent rounds up, so 1% of 5 is 1)."""
        if self.is_percent:
            return min(total, math.ceil(Fraction(str(self.value)) * total / 100))
        return min(total, int(self.value))

    def covers_all(self, total: int) -> bool:
        return self.value >= 100 if self.is_percent else self.value >= total

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.is_percent else str(self.value)


DEFAULT_WAVES: tuple[WaveSize, ...] = (
    WaveSize.devices(1), WaveSize.percent(10), WaveSize.percent(50), WaveSize.percent(100))


@dataclass(frozen=True)
class FailureBudget:
    """How many failed activations a wave tolerates: a ``count``, or a ``share`` of the wave."""

    count: int | None = 0
    share: float | None = None

    def __str__(self) -> str:
        return f"{self.share:g} of the wave" if self.share is not None else f"{self.count} devices"


@dataclass(frozen=True)
class Gates:
    """Thresholds a wave must meet before the next one starts. ``None`` switches a gate off."""

    min_reporting_share: float = 0.9
    max_failed_activations: FailureBudget = field(default_factory=FailureBudget)
    max_accuracy_drop: float | None = None
    max_p95_latency_ms: float | None = None
    max_drift_psi: float | None = None
    min_labelled: int = 30
    # resource gates: how much more the new version may cost than the previous one on the same
    # devices (0.25: 25% more); session memory at activation, CPU time per prediction
    max_memory_increase: float | None = None
    max_cpu_increase: float | None = None


@dataclass(frozen=True)
class RolloutSpec:
    """One model version going to the devices a selector picks, wave by wave.

    ``soak_seconds`` is one value for every wave, or one per wave (a longer canary soak); the
    soak starts once the wave reports the version. ``wave_timeout_seconds`` bounds two waits:
    for the wave to report (from the wave's start) and for gates still short of evidence (from
    the soak's start, if longer than the soak). Either running out is a gate failure.

    ``probation``: the health window each device keeps the new version under before
    it commits it (sent with the desired state; None: the agent's own default). The wave
    counts a device as done only once it committed.

    ``kind`` ``"agent"``: the rollout moves devices to agent ``agent_version`` (a registered
    agent bundle) instead of a model version; ``model`` and ``version`` stay empty. Its device
    is done once it reports that agent version after the launcher's probation; a device whose
    launcher restored the old agent counts as a failed activation. Metric gates and
    ``probation`` are model-only (the launcher keeps its own probation).
    """

    model: str
    version: int
    selector: str = ""
    waves: tuple[WaveSize, ...] = DEFAULT_WAVES
    soak_seconds: float | tuple[float, ...] = 600.0
    gates: Gates = field(default_factory=Gates)
    on_gate_failure: GateFailurePolicy = "pause"
    priority: int = 0
    wave_timeout_seconds: float = 3600.0
    name: str = ""
    probation: ProbationPolicy | None = None
    kind: RolloutKind = "model"
    agent_version: str = ""

    @property
    def display_name(self) -> str:
        """The name, or ``model:version`` (``agent VERSION``) when none was given; used in
        errors and logs."""
        if self.name:
            return self.name
        return f"agent {self.agent_version}" if self.kind == "agent" \
            else f"{self.model}:{self.version}"

    def soak_for(self, wave: int) -> float:
        if isinstance(self.soak_seconds, tuple):
            return self.soak_seconds[min(wave, len(self.soak_seconds) - 1)]
        return self.soak_seconds


def parse_waves(text: str) -> tuple[WaveSize, ...]:
    """Parse ``"1,10%,50%,100%"``: plain numbers are device counts, ``N%`` fleet shares."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip():
        raise SpecError("waves: none given; write e.g. '1,10%,50%,100%'")
    waves, problems = [], []
    for i, item in enumerate(items, 1):
        try:
            if item.endswith("%"):
                pct = float(item[:-1])
                if not math.isfinite(pct):
                    raise ValueError(item)
                waves.append(WaveSize.percent(pct))
            else:
                waves.append(WaveSize.devices(int(item)))
        except ValueError:
            problems.append(f"wave {i} {item!r}: expected a device count like 5 "
                            "or a percentage like 10%")
    problems += [p for i, w in enumerate(waves) if (p := _wave_size_problem(i, w))]
    if problems:
        raise SpecError(problems)
    return tuple(waves)


_TOP_KEYS = {"model", "version", "selector", "waves", "soak_seconds", "gates", "on_gate_failure",
             "priority", "wave_timeout_seconds", "name", "probation", "kind", "agent_version"}
_PROBATION_KEYS = {"duration_s", "max_error_rate", "max_p95_latency_ms", "min_predictions"}
_GATE_KEYS = {"min_reporting_share", "max_failed_activations", "max_accuracy_drop",
              "max_p95_latency_ms", "max_drift_psi", "min_labelled", "max_memory_increase",
              "max_cpu_increase"}


def spec_from_dict(d: Mapping[str, Any]) -> RolloutSpec:
    """Build a spec from a parsed TOML/JSON document, checking types and unknown keys.

    Range checks that need no fleet run here too, so a bad file fails before it reaches the
    fleet; :func:`validate` repeats them alongside the fleet-dependent ones.
    """
    _no_unknown(d, _TOP_KEYS, "rollout spec")
    kind = _typed(d, "kind", str, "a string", "model")
    if kind == "agent":
        given = sorted(k for k in ("model", "version", "probation") if d.get(k) is not None)
        if given:
            raise SpecError(f"{', '.join(given)}: not for an agent rollout (it names "
                            "agent_version; the launcher keeps its own probation)")
        model, version = "", 0
        agent_version = _typed(d, "agent_version", str, "a string")
    elif kind == "model":
        if d.get("agent_version") is not None:
            raise SpecError("agent_version: only for kind 'agent'")
        model = _typed(d, "model", str, "a string")
        version = _typed(d, "version", int, "an integer")
        agent_version = ""
    else:
        raise SpecError(f"kind: expected 'model' or 'agent', got {kind!r}")
    raw_waves = d.get("waves", None)
    if raw_waves is None:
        waves = DEFAULT_WAVES
    elif isinstance(raw_waves, str):
        waves = parse_waves(raw_waves)
    elif isinstance(raw_waves, list):
        waves = parse_waves(",".join(str(w) for w in raw_waves))
    else:
        raise SpecError("waves: expected a string like '1,10%,100%' or a list")
    soak = d.get("soak_seconds", 600.0)
    if isinstance(soak, list):
        soak = tuple(_number(s, "soak_seconds") for s in soak)
    else:
        soak = _number(soak, "soak_seconds")
    spec = RolloutSpec(
        model=model, version=version,
        selector=_typed(d, "selector", str, "a string", ""),
        waves=waves, soak_seconds=soak,
        gates=_gates_from_dict(d.get("gates", {})),
        on_gate_failure=_typed(d, "on_gate_failure", str, "a string", "pause"),
        priority=_typed(d, "priority", int, "an integer", 0),
        wave_timeout_seconds=_number(d.get("wave_timeout_seconds", 3600.0), "wave_timeout_seconds"),
        name=_typed(d, "name", str, "a string", ""),
        probation=_probation_from_dict(d.get("probation")),
        kind="agent" if kind == "agent" else "model", agent_version=agent_version,
    )
    problems = _static_problems(spec)
    if problems:
        raise SpecError(problems)
    return spec


def spec_to_dict(spec: RolloutSpec) -> dict[str, Any]:
    """The JSON/TOML document :func:`spec_from_dict` reads back into an equal spec."""
    g = spec.gates
    budget = g.max_failed_activations
    gates: dict[str, Any] = {
        "min_reporting_share": g.min_reporting_share,
        "max_failed_activations": (float(budget.share) if budget.share is not None
                                   else int(budget.count or 0)),
        "min_labelled": g.min_labelled,
    }
    for key in ("max_accuracy_drop", "max_p95_latency_ms", "max_drift_psi",
                "max_memory_increase", "max_cpu_increase"):
        if getattr(g, key) is not None:
            gates[key] = getattr(g, key)
    soak = spec.soak_seconds
    extra: dict[str, Any] = {}
    if spec.probation is not None:  # left out when unset: older stored specs read back equal
        extra["probation"] = {k: v for k, v in spec.probation.to_dict().items() if v is not None}
    if spec.kind == "agent":  # model rollouts leave kind out: older stored specs read back equal
        target: dict[str, Any] = {"kind": "agent", "agent_version": spec.agent_version}
    else:
        target = {"model": spec.model, "version": spec.version}
    return {
        "name": spec.name,
        **target,
        "selector": spec.selector,
        "waves": ",".join(_wave_text(w) for w in spec.waves),
        "soak_seconds": list(soak) if isinstance(soak, tuple) else soak,
        "gates": gates,
        "on_gate_failure": spec.on_gate_failure,
        "priority": spec.priority,
        "wave_timeout_seconds": spec.wave_timeout_seconds,
        **extra,
    }


def _wave_text(wave: WaveSize) -> str:
    """``str(wave)`` unless ``:g`` would round a percentage (33.333...%)."""
    text = str(wave)
    if wave.is_percent and float(text[:-1]) != wave.value:
        return f"{wave.value!r}%"
    return text


def validate(spec: RolloutSpec, fleet_size_matched: int) -> None:
    """Raise :class:`SpecError` listing every reason this spec cannot run on the matched fleet."""
    problems = _static_problems(spec)
    if fleet_size_matched <= 0:
        problems.append(f"selector {spec.selector!r} matches no devices")
    elif spec.waves and not any(_wave_size_problem(i, w) for i, w in enumerate(spec.waves)):
        problems += _wave_plan_problems(spec.waves, fleet_size_matched)
    if problems:
        raise SpecError(problems)


def plan_waves(device_ids: Sequence[str], waves: Sequence[WaveSize],
               salt: str = "") -> list[list[str]]:
    """Split the devices into one disjoint list per wave; each device appears exactly once.

    Wave sizes are cumulative targets (``5%,25%,100%`` of 100 gives 5, 20, 75 devices). Each
    wave gets at least one device, so a small fleet still gets a canary; the devices are
    ordered by ``sha256(salt, id)`` so the canaries are spread and the plan is reproducible.
    """
    ordered = sorted(set(device_ids), key=lambda d: hashlib.sha256(
        f"{salt}\0{d}".encode()).hexdigest())
    total, count = len(ordered), len(waves)
    problems = [p for i, w in enumerate(waves) if (p := _wave_size_problem(i, w))]
    problems += _wave_plan_problems(waves, total) if total else ["no devices to plan"]
    if problems:
        raise SpecError(problems)
    plan, done = [], 0
    for i, wave in enumerate(waves):
        target = max(wave.target(total), done + 1)
        target = min(target, total - (count - 1 - i))
        plan.append(ordered[done:target])
        done = target
    return plan


def _static_problems(spec: RolloutSpec) -> list[str]:
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
    problems += [p for i, w in enumerate(spec.waves) if (p := _wave_size_problem(i, w))]
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


def _wave_size_problem(i: int, wave: WaveSize) -> str | None:
    if wave.is_percent and not 0 < wave.value <= 100:
        return f"wave {i + 1} ({wave}): percentage must be in (0, 100]"
    if not wave.is_percent and (not isinstance(wave.value, int) or wave.value < 1):
        return f"wave {i + 1} ({wave}): device count must be a whole number >= 1"
    return None


def _wave_plan_problems(waves: Sequence[WaveSize], total: int) -> list[str]:
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


def _gates_from_dict(d: Any) -> Gates:
    if not isinstance(d, Mapping):
        raise SpecError("gates: expected a table of thresholds")
    _no_unknown(d, _GATE_KEYS, "gates")

    def optional(key: str) -> float | None:
        value = d.get(key)
        return None if value is None else _number(value, f"gates.{key}")

    return Gates(
        min_reporting_share=_number(d.get("min_reporting_share", 0.9), "gates.min_reporting_share"),
        max_failed_activations=_budget(d.get("max_failed_activations", 0)),
        max_accuracy_drop=optional("max_accuracy_drop"),
        max_p95_latency_ms=optional("max_p95_latency_ms"),
        max_drift_psi=optional("max_drift_psi"),
        min_labelled=_typed(d, "min_labelled", int, "an integer", 30),
        max_memory_increase=_increase(d.get("max_memory_increase"), "max_memory_increase"),
        max_cpu_increase=_increase(d.get("max_cpu_increase"), "max_cpu_increase"),
    )


def _increase(value: Any, key: str) -> float | None:
    """A share (0.25) or a percentage ('25%') of the previous version's cost."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            pass
    elif isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value):
        return float(value)
    raise SpecError(f"gates.{key}: expected a share (0.25) or a percentage ('25%'), "
                    f"got {value!r}")


def _probation_from_dict(d: Any) -> ProbationPolicy | None:
    """``[probation]``: the fields of ``edgewise_wire.ProbationPolicy``."""
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise SpecError("probation: expected a table with duration_s (and optionally "
                        "max_error_rate, max_p95_latency_ms, min_predictions)")
    _no_unknown(d, _PROBATION_KEYS, "probation")
    try:
        return ProbationPolicy.from_dict(dict(d), "probation")
    except SchemaError as exc:
        raise SpecError(str(exc)) from None


def _budget(value: Any) -> FailureBudget:
    """An integer is a count, a float a share, and ``"5%"`` a share of 0.05."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return FailureBudget(count=None, share=float(value.strip()[:-1]) / 100)
        except ValueError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        return FailureBudget(count=value)
    elif isinstance(value, float):
        return FailureBudget(count=None, share=value)
    raise SpecError(f"gates.max_failed_activations: expected a count (2), a share (0.05) "
                    f"or a percentage ('5%'), got {value!r}")


def _no_unknown(d: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise SpecError(f"unknown key(s) {', '.join(map(repr, unknown))} in {where}; "
                        f"known keys: {', '.join(sorted(known))}")


def _typed(d: Mapping[str, Any], key: str, kind: type, what: str, default: Any = ...) -> Any:
    if key not in d:
        if default is ...:
            raise SpecError(f"{key}: missing")
        return default
    value = d[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SpecError(f"{key}: expected {what}, got {value!r}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"{key}: expected a number, got {value!r}")
    return float(value)
