"""A rollout spec read from a parsed TOML/JSON document or REST body, and written back.

The parser checks types and unknown keys as it reads, then runs the checks that need no fleet
(:func:`controller.rollouts.spec_checks.static_problems`), so a bad file fails before it
reaches the fleet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from controller.rollouts.spec import (
    DEFAULT_WAVES,
    FailureBudget,
    Gates,
    RolloutSpec,
    SpecError,
    WaveSize,
)
from controller.rollouts.spec_checks import static_problems, wave_size_problem
from edgewise_wire import ProbationPolicy, SchemaError


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
    problems += [p for i, w in enumerate(waves) if (p := wave_size_problem(i, w))]
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
    fleet; :func:`validate` repeats them alongside the fleet-dependent ones. Without ``kind``
    the document names one target, ``model`` or ``agent_version`` (:func:`rollout_kind`).
    """
    _no_unknown(d, _TOP_KEYS, "rollout spec")
    kind = rollout_kind(d)
    if d.get("kind") is None:
        _one_target(d)
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
    problems = static_problems(spec)
    if problems:
        raise SpecError(problems)
    return spec


def rollout_kind(d: Mapping[str, Any]) -> str:
    """What a spec document rolls out: its ``kind`` when given (not null), else ``agent`` when it names an
    ``agent_version`` instead of a ``model``, else ``model``. (Whether that kind's target is
    complete is :func:`spec_from_dict`'s to check.)"""
    if d.get("kind") is not None:
        return str(_typed(d, "kind", str, "a string"))
    return "agent" if d.get("agent_version") is not None and d.get("model") is None else "model"


def _one_target(d: Mapping[str, Any]) -> None:
    """A document without ``kind`` says what it rolls out by naming one target."""
    model, agent = d.get("model") is not None, d.get("agent_version") is not None
    if model and agent:
        raise SpecError("model and agent_version: name one, model (and version) for a model "
                        "rollout or agent_version for an agent rollout, not both")
    if not model and not agent:
        raise SpecError("nothing to roll out: name model (and version) for a model rollout, "
                        "or agent_version for an agent rollout")


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
