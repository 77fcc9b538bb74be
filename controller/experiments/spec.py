"""What an operator asks for when starting an experiment, and the checks made before anything is
sent.

An :class:`ExperimentSpec` names two arms of one model (the *control*, which the devices serve,
and the *candidate*), a mode (``shadow``: the candidate answers a ``sample`` share of the calls
off the serving path; ``ab``: the candidate serves a ``share`` of the traffic, split by device
or by request key), a selector and the statistical design
(:class:`edgewise_monitoring.experiment_test.Design`).

:func:`check` refuses, each with one line that says what to change:

- two arms of the same version;
- a candidate for other inputs than the control's (feature count, names, types, input schema);
- a share or a sample outside 0-100 %;
- devices that are in a live rollout (a device has one desired model: an experiment beside a
  rollout would test a moving control);
- a selector that matches no device, or devices that do not serve the control.

:func:`split_devices` picks the candidate's devices for an A/B split by device: a stable hash
of the experiment and the device id, so a restart picks the same ones.

Pure: no database, no MQTT, no clock.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.errors import ValidationError
from controller.fleet.selectors import SelectorError, parse_selector
from edgewise_monitoring.experiment_test import Design, DesignError
from edgewise_wire import Manifest

MODES = ("shadow", "ab")
SPLITS = ("device", "request")
_SHOWN = 5
_REF = re.compile(r"^(?P<model>[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}):(?P<version>[0-9]{1,9})$")


class ExperimentError(ValidationError):
    """The experiment cannot start as asked; the message is one line that says why."""


@dataclass(frozen=True)
class ArmRef:
    model: str
    version: int

    @classmethod
    def parse(cls, text: str, what: str) -> ArmRef:
        m = _REF.match(text.strip())
        if m is None:
            raise ExperimentError(f"{what} {text!r} is not MODEL:VERSION (iris:2)")
        return cls(m["model"], int(m["version"]))

    def __str__(self) -> str:
        return f"{self.model}:{self.version}"


def parse_share(value: str | float | int, what: str = "share") -> float:
    """``"10%"``, ``10`` (percent) or ``0.1`` (a fraction, below 1) -> a fraction in [0, 1]."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            number = float(text[:-1]) / 100.0
        else:
            number = float(text)
            if number > 1.0:
                number /= 100.0
    except ValueError:
        raise ExperimentError(f"{what} {value!r} is not a number or a percentage") from None
    if not 0.0 <= number <= 1.0 or number != number:
        raise ExperimentError(f"{what} {value!r} lies outside 0-100%")
    return number


@dataclass(frozen=True)
class ExperimentSpec:
    mode: str
    candidate: ArmRef
    control: ArmRef
    selector: str = ""
    sample: float = 1.0
    share: float = 0.0
    split: str = "device"
    design: Design = field(default_factory=Design)
    name: str = ""

    @property
    def display_name(self) -> str:
        return self.name or f"{self.mode} {self.candidate} vs {self.control}"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "candidate": str(self.candidate),
                "control": str(self.control), "selector": self.selector,
                "sample": self.sample, "share": self.share, "split": self.split,
                "design": self.design.to_dict(), "name": self.name}


def spec_from_dict(d: Mapping[str, Any]) -> ExperimentSpec:
    """Parse a request body (the CLI's flags); raise :class:`ExperimentError` in one line."""
    known = {"mode", "candidate", "control", "selector", "sample", "share", "split", "design",
             "name"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ExperimentError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    mode = str(d.get("mode", ""))
    if mode not in MODES:
        raise ExperimentError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    candidate = ArmRef.parse(str(d.get("candidate", "")), "candidate")
    control = ArmRef.parse(str(d.get("control", "")), "control (--against)")
    selector = str(d.get("selector", "") or "")
    try:
        parse_selector(selector)
    except SelectorError as exc:
        raise ExperimentError(f"selector: {exc}") from None
    sample = parse_share(d.get("sample", 1.0), "sample")
    share = parse_share(d.get("share", 0.0), "share")
    split = str(d.get("split", "device"))
    if split not in SPLITS:
        raise ExperimentError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if mode == "ab" and share == 0.0:
        raise ExperimentError("an A/B test needs a share above 0% for the candidate")
    if mode == "shadow" and sample == 0.0:
        raise ExperimentError("a shadow run needs a sample above 0%")
    design_body = d.get("design") or {}
    if not isinstance(design_body, Mapping):
        raise ExperimentError("design must be an object (mde, alpha, beta, baseline_accuracy)")
    try:
        design = Design(**{k: v for k, v in design_body.items()})
    except TypeError as exc:
        raise ExperimentError(f"design: {exc}") from None
    except DesignError as exc:
        raise ExperimentError(f"design: {exc}") from None
    name = str(d.get("name", "") or "")
    if len(name) > 128:
        raise ExperimentError("name is longer than 128 characters")
    return ExperimentSpec(mode, candidate, control, selector, sample, share, split, design, name)


def inputs_signature(manifest: Manifest) -> tuple[Any, ...]:
    """What a model takes: its input tensors (dtype and shape), feature names, record schema."""
    schema = manifest.input_schema
    return (tuple((t.dtype, tuple(t.shape)) for t in manifest.inputs),
            tuple(manifest.feature_names or ()),
            schema.to_dict() if schema is not None else None)


def _describe_inputs(manifest: Manifest) -> str:
    if manifest.input_schema is not None:
        fields = manifest.input_schema.to_dict().get("fields", [])
        return f"{len(fields)} record fields"
    shapes = ", ".join(f"{t.dtype}{list(t.shape)}" for t in manifest.inputs)
    names = len(manifest.feature_names or ())
    return f"{shapes}" + (f" ({names} named features)" if names else "")


def check(spec: ExperimentSpec, candidate: Manifest, control: Manifest, *,
          targets: Sequence[str], serving: Mapping[str, tuple[str, int] | None],
          in_rollouts: Mapping[str, str]) -> None:
    """Every check made before anything is sent (module docstring); ``targets`` the devices the
    selector matches, ``serving`` what each serves now, ``in_rollouts`` device -> the live
    rollout holding it."""
    if spec.candidate == spec.control:
        raise ExperimentError(f"the two arms are the same version {spec.control}: compare two "
                              "different versions")
    if candidate.model != control.model:
        raise ExperimentError(f"candidate {spec.candidate} and control {spec.control} are "
                              "different models")
    if candidate.task != control.task:
        raise ExperimentError(f"candidate {spec.candidate} is a {candidate.task} model, control "
                              f"{spec.control} a {control.task} model")
    if inputs_signature(candidate) != inputs_signature(control):
        raise ExperimentError(
            f"candidate {spec.candidate} takes other inputs than {spec.control}: "
            f"{_describe_inputs(candidate)} against {_describe_inputs(control)}")
    if not targets:
        raise ExperimentError(f"no device matches selector {spec.selector!r}"
                              if spec.selector else "there are no devices")
    busy = sorted(d for d in targets if d in in_rollouts)
    if busy:
        rollouts = sorted({in_rollouts[d] for d in busy})
        raise ExperimentError(
            f"{len(busy)} device(s) are in a live rollout ({', '.join(repr(r) for r in rollouts)}"
            f"): {_list(busy)}; wait for it to finish or narrow the selector")
    wrong = sorted(d for d in targets
                   if serving.get(d) != (spec.control.model, spec.control.version))
    if wrong:
        raise ExperimentError(
            f"{len(wrong)} device(s) do not serve the control {spec.control}: {_list(wrong)}; "
            "narrow the selector to devices that serve it")


def split_devices(experiment_id: str, devices: Sequence[str], share: float) -> list[str]:
    """The candidate's devices of an A/B split by device: the ``share`` (rounded up, at least
    one, never all when there are two or more) with the lowest stable hashes."""
    if not devices or share <= 0.0:
        return []
    ranked = sorted(devices, key=lambda d: hashlib.sha256(
        f"{experiment_id}\x00{d}".encode()).hexdigest())
    count = max(1, -(-int(round(share * len(devices) * 1000)) // 1000))
    if share < 1.0 and len(devices) > 1:
        count = min(count, len(devices) - 1)
    return sorted(ranked[:count])


def _list(devices: Sequence[str]) -> str:
    more = len(devices) - _SHOWN
    return ", ".join(devices[:_SHOWN]) + (f" and {more} more" if more > 0 else "")
