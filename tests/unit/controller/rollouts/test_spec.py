import json
import tomllib
from dataclasses import replace
from typing import Any

import pytest

from controller.rollouts.spec import (
    DEFAULT_WAVES,
    FailureBudget,
    Gates,
    RolloutSpec,
    SpecError,
    WaveSize,
)
from controller.rollouts.spec_checks import validate
from controller.rollouts.spec_parse import parse_waves, spec_from_dict
from controller.rollouts.wave_plan import plan_waves

W, P = WaveSize.devices, WaveSize.percent
DEVICES = [f"dev-{i:03d}" for i in range(100)]


def sizes(plan: list[list[str]]) -> list[int]:
    return [len(w) for w in plan]


# --- parse_waves ---------------------------------------------------------------------------

def test_parse_waves() -> None:
    assert parse_waves("1,10%,50%,100%") == (W(1), P(10), P(50), P(100))
    assert parse_waves(" 2 , 12.5% ,100% ") == (W(2), P(12.5), P(100))
    assert [str(w) for w in parse_waves("1,12.5%,100%")] == ["1", "12.5%", "100%"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "waves: none given"),
        ("1,,100%", "wave 2 '': expected a device count like 5 or a percentage like 10%"),
        ("1.5,100%", "wave 1 '1.5': expected a device count"),
        ("ten%", "wave 1 'ten%': expected a device count"),
        ("nan%", "wave 1 'nan%'"),
        ("0,100%", "wave 1 (0): device count must be a whole number >= 1"),
        ("0%,100%", "wave 1 (0%): percentage must be in (0, 100]"),
        ("150%", "wave 1 (150%): percentage must be in (0, 100]"),
    ],
)
def test_parse_waves_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=None) as info:
        parse_waves(text)
    assert message in str(info.value)


# --- plan_waves ----------------------------------------------------------------------------

def test_percent_waves_are_cumulative() -> None:
    assert sizes(plan_waves(DEVICES, parse_waves("5%,25%,100%"))) == [5, 20, 75]


def test_count_waves() -> None:
    assert sizes(plan_waves(DEVICES, parse_waves("1,10,100"))) == [1, 9, 90]
    assert sizes(plan_waves(DEVICES, parse_waves("1,10%,50%,100%"))) == [1, 9, 40, 50]


def test_percent_rounds_up() -> None:
    seven = DEVICES[:7]
    # 10% of 7 is 0.7 -> 1 device; 50% is 3.5 -> 4
    assert sizes(plan_waves(seven, parse_waves("10%,50%,100%"))) == [1, 3, 3]


def test_small_fleet_still_gets_one_device_per_wave() -> None:
    # 1, 10% and 50% of 4 would be 1, 1, 2: the 10% wave is bumped so no wave is empty
    assert sizes(plan_waves(DEVICES[:4], DEFAULT_WAVES)) == [1, 1, 1, 1]
    assert sizes(plan_waves(DEVICES[:5], DEFAULT_WAVES)) == [1, 1, 1, 2]


@pytest.mark.parametrize("waves", ["5%,25%,100%", "1,10%,50%,100%", "3,7,100%", "100%"])
@pytest.mark.parametrize("total", [4, 7, 100, 1000])
def test_every_device_exactly_once(waves: str, total: int) -> None:
    devices = [f"d{i}" for i in range(total)]
    plan = plan_waves(devices, parse_waves(waves))
    flat = [d for wave in plan for d in wave]
    assert sorted(flat) == sorted(devices)
    assert len(flat) == len(set(flat))
    assert all(plan)


def test_plan_is_deterministic_and_not_alphabetical() -> None:
    waves = parse_waves("10%,100%")
    plan = plan_waves(DEVICES, waves)
    assert plan == plan_waves(list(reversed(DEVICES)), waves)  # input order does not matter
    assert plan[0] != DEVICES[:10]  # canaries are spread, not the first rack
    assert plan_waves(DEVICES, waves, salt="other:2")[0] != plan[0]


def test_plan_refuses_a_plan_that_cannot_cover() -> None:
    with pytest.raises(SpecError, match="does not cover the fleet"):
        plan_waves(DEVICES, parse_waves("1,50%"))
    with pytest.raises(SpecError, match="4 waves need at least 4 devices"):
        plan_waves(DEVICES[:3], DEFAULT_WAVES)


# --- validate ------------------------------------------------------------------------------

def spec(**changes: Any) -> RolloutSpec:
    return replace(RolloutSpec(model="cam", version=3, selector="site=berlin"), **changes)


def problem(s: RolloutSpec, fleet: int = 100) -> str:
    with pytest.raises(SpecError) as info:
        validate(s, fleet)
    return str(info.value)


def test_a_good_spec_validates() -> None:
    validate(spec(), 100)
    validate(spec(waves=parse_waves("1,5")), 5)  # a count >= the fleet covers it


@pytest.mark.parametrize(
    ("changes", "fleet", "message"),
    [
        ({}, 0, "selector 'site=berlin' matches no devices"),
        ({"selector": "site="}, 10, "selector: expected label value at position 5"),
        ({"model": ""}, 10, "model: must not be empty"),
        ({"waves": ()}, 10, "waves: none given"),
        ({"waves": (P(10), P(5), P(100))}, 100,
         "waves must be strictly increasing: wave 2 (5%) is not larger than 10%"),
        ({"waves": (W(5), W(5), P(100))}, 100,
         "waves must be strictly increasing: wave 2 (5) is not larger than 5"),
        ({"waves": (P(50), W(10), P(100))}, 100,
         "waves must be strictly increasing: wave 2 (10) covers fewer than wave 1 (50%) "
         "on 100 devices"),
        ({"waves": (W(1), P(50))}, 100,
         "last wave (50%) does not cover the fleet: end with 100% or a count >= 100"),
        ({"waves": (W(1), W(50))}, 100, "last wave (50) does not cover the fleet"),
        ({"waves": (P(0), P(100))}, 100, "wave 1 (0%): percentage must be in (0, 100]"),
        ({"waves": (P(10), P(120))}, 100, "wave 2 (120%): percentage must be in (0, 100]"),
        ({"waves": DEFAULT_WAVES}, 3, "4 waves need at least 4 devices, the selector matches 3"),
        ({"soak_seconds": -1.0}, 100, "soak_seconds: must be >= 0, got -1.0"),
        ({"soak_seconds": (60.0, 60.0)}, 100, "soak_seconds: 2 values given for 4 waves"),
        ({"wave_timeout_seconds": 0.0}, 100, "wave_timeout_seconds: must be > 0"),
        ({"on_gate_failure": "explode"}, 100,
         "on_gate_failure: must be 'pause' or 'abort', got 'explode'"),
        ({"gates": Gates(min_reporting_share=1.5)}, 100,
         "gates.min_reporting_share: 1.5 is outside [0, 1]"),
        ({"gates": Gates(max_accuracy_drop=-0.1)}, 100,
         "gates.max_accuracy_drop: -0.1 is outside [0, 1]"),
        ({"gates": Gates(max_failed_activations=FailureBudget(None, 1.2))}, 100,
         "gates.max_failed_activations: 1.2 is outside [0, 1]"),
        ({"gates": Gates(max_failed_activations=FailureBudget(-1))}, 100,
         "gates.max_failed_activations: count -1 is negative"),
        ({"gates": Gates(max_failed_activations=FailureBudget(None, None))}, 100,
         "gates.max_failed_activations: give either a count or a share"),
        ({"gates": Gates(max_p95_latency_ms=-5.0)}, 100,
         "gates.max_p95_latency_ms: must be > 0, got -5.0"),
        ({"gates": Gates(max_drift_psi=-0.2)}, 100, "gates.max_drift_psi: must be >= 0"),
        ({"gates": Gates(min_labelled=-1)}, 100, "gates.min_labelled: must be >= 0"),
    ],
)
def test_validation_errors(changes: dict[str, Any], fleet: int, message: str) -> None:
    assert message in problem(spec(**changes), fleet)


def test_validation_lists_every_problem() -> None:
    err = problem(spec(soak_seconds=-1.0, gates=Gates(min_reporting_share=2.0)))
    assert "soak_seconds" in err and "gates.min_reporting_share" in err


# --- spec_from_dict ------------------------------------------------------------------------

TOML = """
name = "cam-v4-berlin"
model = "cam"
version = 4
selector = "site=berlin,hw in (pi4,pi5)"
waves = "1,10%,50%,100%"
soak_seconds = [1800, 900, 600, 600]
on_gate_failure = "abort"
priority = 5
wave_timeout_seconds = 7200

[gates]
min_reporting_share = 0.95
max_failed_activations = "5%"
max_accuracy_drop = 0.05
max_p95_latency_ms = 40
max_drift_psi = 0.2
min_labelled = 50
"""


def test_spec_from_toml() -> None:
    s = spec_from_dict(tomllib.loads(TOML))
    assert s.display_name == "cam-v4-berlin"
    assert (s.model, s.version, s.priority, s.on_gate_failure) == ("cam", 4, 5, "abort")
    assert s.waves == (W(1), P(10), P(50), P(100))
    assert [s.soak_for(i) for i in range(4)] == [1800, 900, 600, 600]
    assert s.gates == Gates(0.95, FailureBudget(None, 0.05), 0.05, 40.0, 0.2, 50)
    validate(s, 20)


def test_spec_from_json_defaults() -> None:
    s = spec_from_dict(json.loads('{"model": "cam", "version": 1, "waves": [1, "50%", "100%"]}'))
    assert s.waves == (W(1), P(50), P(100))
    assert s.gates == Gates()
    assert s.gates.max_failed_activations == FailureBudget(count=0)
    assert (s.selector, s.on_gate_failure, s.display_name) == ("", "pause", "cam:1")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"version": 1}, "nothing to roll out: name model (and version) for a model rollout, "
                         "or agent_version for an agent rollout"),
        ({"kind": "model", "version": 1}, "model: missing"),
        ({"model": "cam", "version": "4"}, "version: expected an integer, got '4'"),
        ({"model": "cam", "version": 1, "wvaes": "1"}, "unknown key(s) 'wvaes' in rollout spec"),
        ({"model": "cam", "version": 1, "gates": {"max_latency": 3}}, "unknown key(s) 'max_latency'"),
        ({"model": "cam", "version": 1, "priority": True}, "priority: expected an integer"),
        ({"model": "cam", "version": 1, "soak_seconds": "1h"}, "soak_seconds: expected a number"),
        ({"model": "cam", "version": 1, "gates": {"max_failed_activations": "lots"}},
         "gates.max_failed_activations: expected a count (2), a share (0.05) or a percentage"),
        ({"model": "cam", "version": 1, "gates": {"min_reporting_share": 90}},
         "gates.min_reporting_share: 90.0 is outside [0, 1]"),
        ({"model": "cam", "version": 1, "waves": 5}, "waves: expected a string"),
    ],
)
def test_spec_from_dict_errors(doc: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict(doc)
    assert message in str(info.value)


# --- spec_to_dict ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    RolloutSpec(model="cam", version=4),
    RolloutSpec(model="cam", version=4, selector="site=berlin,hw in (pi4,pi5)", name="canary",
                waves=parse_waves("1,33.333333333%,100%"), soak_seconds=(60.0, 30.0, 0.0),
                gates=Gates(min_reporting_share=0.8, max_failed_activations=FailureBudget(None, 0.05),
                            max_accuracy_drop=0.02, max_p95_latency_ms=40.0, max_drift_psi=0.1,
                            min_labelled=10),
                on_gate_failure="abort", priority=3, wave_timeout_seconds=120.0),
    RolloutSpec(model="cam", version=4, gates=Gates(max_failed_activations=FailureBudget(2))),
])
def test_spec_to_dict_round_trips_through_json_and_toml(spec: RolloutSpec) -> None:
    from controller.rollouts.spec_parse import spec_to_dict

    doc = spec_to_dict(spec)
    assert spec_from_dict(json.loads(json.dumps(doc))) == spec
    toml_text = "\n".join(f"{k} = {json.dumps(v)}" for k, v in doc.items() if k != "gates")
    toml_text += "\n[gates]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in doc["gates"].items())
    assert spec_from_dict(tomllib.loads(toml_text)) == spec


def test_the_documented_request_body_names_exactly_the_keys_the_parser_takes() -> None:
    from controller.rollouts import spec_parse
    from controller.rollouts.schemas import RolloutSpecBody

    assert set(RolloutSpecBody.model_fields) == spec_parse._TOP_KEYS
    # and every example a reader could copy from the schema's defaults parses
    defaults = RolloutSpecBody(model="iris", version=1).model_dump()
    assert spec_from_dict(defaults).model == "iris"


def test_resource_gates_take_a_share_or_a_percentage() -> None:
    from controller.rollouts.spec import SpecError
    from controller.rollouts.spec_parse import spec_from_dict, spec_to_dict

    spec = spec_from_dict({"model": "m", "version": 2, "gates": {
        "max_memory_increase": "25%", "max_cpu_increase": 0.5}})
    assert spec.gates.max_memory_increase == 0.25 and spec.gates.max_cpu_increase == 0.5
    assert spec_from_dict(spec_to_dict(spec)) == spec
    for bad in ("lots", -0.1, True):
        with pytest.raises(SpecError, match="max_memory_increase"):
            spec_from_dict({"model": "m", "version": 2, "gates": {"max_memory_increase": bad}})
