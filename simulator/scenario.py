"""Scenario files: a fleet, a workload and a timeline of events, in TOML.

This module only reads and checks a scenario (no broker, no agents); ``simulator.scenario_run``
runs one and ``simulator.scenario_report`` describes what happened. The format, with every key
and what each event really does, is in docs/simulator.md. A short example::

    name = "flaky-berlin"
    duration_s = 40

    [model]
    dataset = "iris"
    estimator = "logistic_regression"

    [[fleet]]
    name = "berlin"
    count = 20
    labels = { site = "berlin" }

    [workload]
    rate_per_device = 2.0
    feedback_delay_s = 1.0
    feedback_coverage = 0.5

    [[events]]
    at = 10
    action = "disconnect"
    labels = { site = "berlin" }
    count = 5

Every mistake is a :class:`ScenarioError` naming the file, the key and what to write instead.

One module on purpose, about 450 lines: the scenario file format, its dataclasses and the
parser that refuses a bad file with the line at fault, are one grammar.
"""

from __future__ import annotations

import random
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_agent.config import AgentConfig
from simulator.workload import DATASETS

ESTIMATORS = ("logistic_regression", "random_forest", "mlp")
DRIFT_KINDS = ("covariate_shift", "sensor_offset", "concept_change")
_AGENT_KEYS = {f.name for f in fields(AgentConfig)} - {"device_id", "data_dir", "broker",
                                                        "labels", "device_class"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}$")


class ScenarioError(ValueError):
    """A scenario that cannot run; the message says where and what to change."""


# -- the parts of a scenario ------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupSpec:
    name: str
    count: int
    labels: dict[str, str] = field(default_factory=dict)
    device_class: str = "generic"
    agent: dict[str, Any] = field(default_factory=dict)  # AgentConfig overrides


@dataclass(frozen=True)
class ModelSpec:
    dataset: str = "iris"
    estimator: str = "logistic_regression"
    name: str = ""  # registry name; default: the dataset's name
    seed: int = 0

    @property
    def registry_name(self) -> str:
        return self.name or self.dataset


@dataclass(frozen=True)
class WorkloadSpec:
    dataset: str = ""  # default: the model's dataset
    rate_per_device: float = 2.0
    feedback_delay_s: float = 1.0
    feedback_coverage: float = 1.0


@dataclass(frozen=True)
class Selector:
    """Which devices an event applies to: all, or by group / labels / ids, then optionally a
    seeded sample of ``count`` of them or a ``fraction``."""

    groups: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    count: int | None = None
    fraction: float | None = None

    def describe(self) -> str:
        parts = []
        if self.groups:
            parts.append("group " + ",".join(self.groups))
        if self.labels:
            parts.append(",".join(f"{k}={v}" for k, v in self.labels.items()))
        if self.devices:
            parts.append(",".join(self.devices))
        what = " ".join(parts) or "all devices"
        if self.count is not None:
            return f"{self.count} of {what}"
        if self.fraction is not None:
            return f"{self.fraction:.0%} of {what}"
        return what


@dataclass(frozen=True)
class Event:
    at: float
    action: str
    selector: Selector
    params: dict[str, Any]
    index: int  # position in the file, for messages

    def param(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)


@dataclass(frozen=True)
class Expectations:
    """What the report must show for the run to pass (exit code 0)."""

    lost: int | None = 0  # telemetry records lost (None: not checked)
    all_online: bool = True  # at the end, every device not left killed is online
    all_on_latest: bool = True  # ... and runs the last version rolled out to it
    alerts: tuple[str, ...] = ()  # alert kinds that must have fired


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    seed: int
    groups: tuple[GroupSpec, ...]
    model: ModelSpec
    workload: WorkloadSpec
    events: tuple[Event, ...]
    expect: Expectations
    controller: dict[str, Any]  # ControllerConfig keys for the controller the runner starts
    source: str = "<string>"

    @property
    def device_count(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def dataset(self) -> str:
        return self.workload.dataset or self.model.dataset

    def device_ids(self, prefix: str = "sim") -> list[str]:
        return [f"{prefix}-{g.name}-{i:04d}" for g in self.groups for i in range(g.count)]


# -- events -----------------------------------------------------------------------------------------

# action -> (required params, optional params with defaults); "at" and selector keys are common
ACTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "rollout": ((), {"estimator": None, "seed": None}),
    "disconnect": ((), {}),
    "partition": (("duration_s",), {}),
    "slow_link": (("duration_s",), {"latency_s": 0.2, "bandwidth_kbps": None}),
    "lossy_link": (("duration_s",), {"loss": 0.05, "reset_every_s": None}),
    "kill": ((), {}),
    "restart": ((), {}),
    "corrupt_chunks": (("duration_s",), {"per_second": 20}),
    "full_disk": (("duration_s",), {}),
    "clock_skew": (("skew_s",), {}),
    "broker_restart": ((), {"down_s": 2.0}),
    "drift": (("kind",), {"features": None, "sd": 0.0, "offset": 0.0, "rate": 1.0,
                          "duration_s": None}),
    # device health faults on the simulated boards (simulator/boards.py)
    "heat": (("temp_c",), {"ramp_s": 30.0}),
    "memory_leak": (("mib_per_min",), {}),
    "fill_disk": (("free_mib",), {"ramp_s": 30.0}),
    "heal": ((), {}),
}
_SELECTOR_KEYS = {"group", "groups", "labels", "devices", "count", "fraction"}
# events that act on the whole simulation, not on selected devices
GLOBAL_ACTIONS = {"clock_skew", "broker_restart"}
# events whose devices must reach the broker through the simulator's link proxy
PROXIED_ACTIONS = {"partition", "slow_link", "lossy_link"}


def select(selector: Selector, devices: Sequence[tuple[str, str, dict[str, str]]],
           rng: random.Random) -> list[str]:
    """The device ids ``selector`` picks from ``devices`` = [(device_id, group, labels)]; the
    sample (count/fraction) is drawn with ``rng`` and keeps the fleet's order."""
    picked = [d for d, group, labels in devices
              if (not selector.groups or group in selector.groups)
              and all(labels.get(k) == v for k, v in selector.labels.items())
              and (not selector.devices or d in selector.devices)]
    n = len(picked)
    if selector.count is not None:
        n = min(selector.count, n)
    elif selector.fraction is not None:
        n = round(selector.fraction * n)
    if n < len(picked):
        chosen = set(rng.sample(picked, n))
        picked = [d for d in picked if d in chosen]
    return picked


# -- loading ----------------------------------------------------------------------------------------

def load_scenario(path: Path) -> Scenario:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ScenarioError(f"scenario file {path} does not exist") from None
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc}") from None
    return parse_scenario(text, source=str(path))


def parse_scenario(text: str, source: str = "<string>") -> Scenario:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    return _Parser(source).scenario(raw)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {where}: {message}")

    def known(self, table: dict[str, Any], allowed: set[str], where: str) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.fail(where, f"unknown keys {unknown}; known: {sorted(allowed)}")

    def number(self, table: dict[str, Any], key: str, where: str, default: Any = None, *,
               minimum: float | None = None, maximum: float | None = None,
               integer: bool = False) -> Any:
        value = table.get(key, default)
        if value is None:
            return None
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            kind = "an integer" if integer else "a number"
            raise self.fail(f"{where}.{key}", f"must be {kind}, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(f"{where}.{key}", f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(f"{where}.{key}", f"must be <= {maximum}, got {value}")
        return value

    def string(self, table: dict[str, Any], key: str, where: str, default: str = "",
               choices: Sequence[str] | None = None) -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", f"must be a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(f"{where}.{key}", f"must be one of {list(choices)}, got {value!r}")
        return value

    def labels(self, value: Any, where: str) -> dict[str, str]:
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, (str, int, float)) and not isinstance(v, bool)
                for k, v in value.items()):
            raise self.fail(where, f"must be a table of label = value, e.g. "
                                   f'{{ site = "berlin" }}, got {value!r}')
        return {k: str(v) for k, v in value.items()}

    def scenario(self, raw: dict[str, Any]) -> Scenario:
        self.known(raw, {"name", "description", "duration_s", "seed", "fleet", "model",
                         "workload", "events", "expect", "controller"}, "top level")
        name = self.string(raw, "name", "top level", "scenario")
        duration = self.number(raw, "duration_s", "top level", 60.0, minimum=1.0)
        seed = self.number(raw, "seed", "top level", 0, integer=True)
        groups = self.groups(raw.get("fleet"))
        model = self.model(raw.get("model", {}))
        workload = self.workload(raw.get("workload", {}), model)
        devices = [(f"sim-{g.name}-{i:04d}", g.name, g.labels)
                   for g in groups for i in range(g.count)]
        events = self.events(raw.get("events", []), duration, groups, devices)
        expect = self.expect(raw.get("expect", {}))
        controller = raw.get("controller", {})
        if not isinstance(controller, dict):
            raise self.fail("[controller]", "must be a table of controller settings")
        return Scenario(name=name, description=self.string(raw, "description", "top level"),
                        duration_s=float(duration), seed=seed, groups=groups, model=model,
                        workload=workload, events=events, expect=expect,
                        controller=dict(controller), source=self.source)

    def groups(self, value: Any) -> tuple[GroupSpec, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail("[[fleet]]", 'needs at least one group, e.g. [[fleet]] name = "site-a"'
                                         " count = 10")
        out, seen = [], set()
        for i, g in enumerate(value):
            where = f"[[fleet]] #{i + 1}"
            if not isinstance(g, dict):
                raise self.fail(where, "must be a table")
            self.known(g, {"name", "count", "labels", "device_class", "agent"}, where)
            name = self.string(g, "name", where, f"g{i + 1}")
            if not _NAME.fullmatch(name):
                raise self.fail(f"{where}.name", "1-32 letters, digits, '.', '_' or '-', "
                                                 f"got {name!r}")
            if name in seen:
                raise self.fail(f"{where}.name", f"group {name!r} is defined twice")
            seen.add(name)
            count = self.number(g, "count", where, 1, minimum=1, maximum=5000, integer=True)
            agent = g.get("agent", {})
            if not isinstance(agent, dict):
                raise self.fail(f"{where}.agent", "must be a table of agent settings")
            self.known(agent, _AGENT_KEYS, f"{where}.agent")
            out.append(GroupSpec(name, count, self.labels(g.get("labels", {}), f"{where}.labels"),
                                 self.string(g, "device_class", where, "generic"), dict(agent)))
        total = sum(g.count for g in out)
        if total > 5000:
            raise self.fail("[[fleet]]", f"{total} devices; one simulator process holds at most "
                                         "5000")
        return tuple(out)

    def model(self, m: Any) -> ModelSpec:
        if not isinstance(m, dict):
            raise self.fail("[model]", "must be a table")
        self.known(m, {"dataset", "estimator", "name", "seed"}, "[model]")
        return ModelSpec(dataset=self.string(m, "dataset", "[model]", "iris", DATASETS),
                         estimator=self.string(m, "estimator", "[model]", "logistic_regression",
                                               ESTIMATORS),
                         name=self.string(m, "name", "[model]", ""),
                         seed=self.number(m, "seed", "[model]", 0, integer=True))

    def workload(self, w: Any, model: ModelSpec) -> WorkloadSpec:
        if not isinstance(w, dict):
            raise self.fail("[workload]", "must be a table")
        self.known(w, {"dataset", "rate_per_device", "feedback_delay_s", "feedback_coverage"},
                   "[workload]")
        dataset = self.string(w, "dataset", "[workload]", model.dataset, DATASETS)
        if dataset != model.dataset:
            raise self.fail("[workload].dataset", f"the model is trained on {model.dataset!r}; "
                                                  "the workload must send rows of the same shape")
        return WorkloadSpec(
            dataset=dataset,
            rate_per_device=self.number(w, "rate_per_device", "[workload]", 2.0, minimum=0.0,
                                        maximum=1000.0),
            feedback_delay_s=self.number(w, "feedback_delay_s", "[workload]", 1.0, minimum=0.0),
            feedback_coverage=self.number(w, "feedback_coverage", "[workload]", 1.0, minimum=0.0,
                                          maximum=1.0))

    def selector(self, e: dict[str, Any], where: str,
                 groups: tuple[GroupSpec, ...]) -> Selector:
        names = e.get("groups", e.get("group", []))
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise self.fail(f"{where}.group", "must be a group name or a list of them")
        unknown = sorted(set(names) - {g.name for g in groups})
        if unknown:
            raise self.fail(f"{where}.group", f"no group {unknown}; groups: "
                                              f"{[g.name for g in groups]}")
        devices = e.get("devices", [])
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise self.fail(f"{where}.devices", "must be a list of device ids")
        count = self.number(e, "count", where, None, minimum=0, integer=True)
        fraction = self.number(e, "fraction", where, None, minimum=0.0, maximum=1.0)
        if count is not None and fraction is not None:
            raise self.fail(where, "give count or fraction, not both")
        return Selector(tuple(names), self.labels(e.get("labels", {}), f"{where}.labels"),
                        tuple(devices), count, fraction)

    def events(self, value: Any, duration: float, groups: tuple[GroupSpec, ...],
               devices: list[tuple[str, str, dict[str, str]]]) -> tuple[Event, ...]:
        if not isinstance(value, list):
            raise self.fail("[[events]]", "must be an array of tables")
        known_ids = {d for d, _, _ in devices}
        out = []
        for i, e in enumerate(value):
            where = f"[[events]] #{i + 1}"
            if not isinstance(e, dict):
                raise self.fail(where, "must be a table")
            action = self.string(e, "action", where, "", tuple(ACTIONS))
            where = f"{where} ({action})"
            required, optional = ACTIONS[action]
            self.known(e, {"at", "action", *required, *optional, *_SELECTOR_KEYS}, where)
            at = self.number(e, "at", where, None, minimum=0.0, maximum=duration)
            if at is None:
                raise self.fail(where, f"needs at = SECONDS (0 to duration_s = {duration})")
            missing = [k for k in required if k not in e]
            if missing:
                raise self.fail(where, f"needs {missing}")
            selector = self.selector(e, where, groups)
            if action in GLOBAL_ACTIONS and selector != Selector():
                raise self.fail(where, "acts on the whole simulation; remove the device selection")
            unknown_ids = sorted(set(selector.devices) - known_ids)
            if unknown_ids:
                raise self.fail(f"{where}.devices", f"no devices {unknown_ids[:3]}; ids look like "
                                                    f"{devices[0][0]!r}")
            params = {**optional, **{k: v for k, v in e.items()
                                     if k not in _SELECTOR_KEYS | {"at", "action"}}}
            self.check_params(action, params, where, duration - at)
            out.append(Event(float(at), action, selector, params, i + 1))
        return tuple(sorted(out, key=lambda ev: (ev.at, ev.index)))

    def check_params(self, action: str, p: dict[str, Any], where: str, remaining: float) -> None:
        for key in ("duration_s", "latency_s", "down_s", "per_second", "bandwidth_kbps",
                    "reset_every_s", "ramp_s", "mib_per_min", "free_mib"):
            if p.get(key) is not None:
                self.number(p, key, where, minimum=0.0)
        if p.get("duration_s") is not None and p["duration_s"] > remaining:
            raise self.fail(f"{where}.duration_s", f"{p['duration_s']} s runs past the end of "
                                                   f"the scenario ({remaining:g} s left)")
        if action == "lossy_link":
            self.number(p, "loss", where, minimum=0.0, maximum=1.0)
        if action == "clock_skew":
            self.number(p, "skew_s", where)
        if action == "heat":
            self.number(p, "temp_c", where, minimum=-40.0, maximum=120.0)
        if action == "rollout":
            if p.get("estimator") is not None:
                self.string(p, "estimator", where, choices=ESTIMATORS)
            if p.get("seed") is not None:
                self.number(p, "seed", where, integer=True)
        if action == "drift":
            self.string(p, "kind", where, choices=DRIFT_KINDS)
            if p["kind"] == "concept_change":
                self.number(p, "rate", where, minimum=0.0, maximum=1.0)
            else:
                features = p.get("features")
                if not isinstance(features, list) or not features or not all(
                        isinstance(f, (int, str)) and not isinstance(f, bool) for f in features):
                    raise self.fail(f"{where}.features", "a covariate shift or sensor offset "
                                                         "needs features = [names or indices]")
                self.number(p, "sd", where)
                self.number(p, "offset", where)
                if p["kind"] == "sensor_offset" and not p.get("offset"):
                    raise self.fail(f"{where}.offset", "a sensor offset needs offset = VALUE")
                if p["kind"] == "covariate_shift" and not p.get("sd"):
                    raise self.fail(f"{where}.sd", "a covariate shift needs sd = STANDARD_DEVIATIONS")

    def expect(self, x: Any) -> Expectations:
        if not isinstance(x, dict):
            raise self.fail("[expect]", "must be a table")
        self.known(x, {"lost", "all_online", "all_on_latest", "alerts"}, "[expect]")
        lost = x.get("lost", 0)
        if lost is not False and lost is not None:
            lost = self.number(x, "lost", "[expect]", 0, minimum=0, integer=True)
        for key in ("all_online", "all_on_latest"):
            if not isinstance(x.get(key, True), bool):
                raise self.fail(f"[expect].{key}", "must be true or false")
        alerts = x.get("alerts", [])
        if not isinstance(alerts, list) or not all(isinstance(a, str) for a in alerts):
            raise self.fail("[expect].alerts", 'must be a list of alert kinds, e.g. ["drift"]')
        return Expectations(lost=None if lost is False else lost,
                            all_online=x.get("all_online", True),
                            all_on_latest=x.get("all_on_latest", True), alerts=tuple(alerts))
