"""The reference profile of a model: the bins and proportions drift is measured against.

The converter computes it on a reference sample at conversion time and ships it in the
manifest (``reference_profile``)::

    {"n": m, "bins": 10,
     "features": [{"name": str, "edges": [inner cut points], "proportions": [len(edges)+1]}],
     "prediction": {"kind": "categorical", "labels": [...], "proportions": [...]}
                or {"kind": "numeric", "edges": [...], "proportions": [...]}}

``n`` is the size of the reference sample; it matters because the reference proportions are
themselves noisy (see :mod:`edgewise_monitoring.psi`). An empty profile (``{}``, what a
manifest without one carries) is valid: it simply disables the drift statistics.

Two optional blocks, written by converters that were given labels (profiles without them, from
older converters, work as before)::

     "calibration": {"method": "isotonic" | "platt", "target": "positive_class" | "top_label",
                     "positive_label"?, "x"?, "y"? | "a"?, "b"?, "n_fit", "level_se",
                     "holdout": {...}}        (edgewise_monitoring/calibration.py)
     "quality": {"n": labelled rows, "accuracy", "log_loss", "brier"}          (classification)
              | {"n", "mae", "mae_sd", "bias", "error_sd"}                     (regression)

``quality`` holds the reference figures the sequential accuracy tests compare with
(:mod:`edgewise_monitoring.accuracy_test`); ``calibration`` the map behind the label-free
accuracy estimate. A malformed block is not fatal: it is ignored and named in
:attr:`ReferenceProfile.problems`, and the drift statistics still work.

:func:`profile_id` fingerprints a profile so that summaries counted against different bins are
never added together.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from edgewise_monitoring.calibration import CalibrationMap
from edgewise_monitoring.errors import ProfileError
from edgewise_monitoring.labels import Label, canonical_label

_PROPORTION_TOLERANCE = 1e-3


def _floats(value: Any, ctx: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in value
    ):
        raise ProfileError(f"{ctx} must be a list of numbers")
    out = tuple(float(x) for x in value)
    if not all(math.isfinite(x) for x in out):
        raise ProfileError(f"{ctx} must hold finite numbers")
    return out


def _edges(value: Any, ctx: str) -> tuple[float, ...]:
    edges = _floats(value, ctx)
    if any(b < a for a, b in zip(edges, edges[1:], strict=False)):
        raise ProfileError(f"{ctx} must be in ascending order")
    return edges


def _proportions(value: Any, n_bins: int, ctx: str) -> tuple[float, ...]:
    props = _floats(value, ctx)
    if len(props) != n_bins:
        raise ProfileError(f"{ctx} needs {n_bins} entries, has {len(props)}")
    if any(p < 0 for p in props) or abs(sum(props) - 1.0) > _PROPORTION_TOLERANCE:
        raise ProfileError(f"{ctx} must be non-negative and sum to 1")
    return props


@dataclass(frozen=True)
class FeatureReference:
    name: str
    edges: tuple[float, ...]
    proportions: tuple[float, ...]


@dataclass(frozen=True)
class PredictionReference:
    """Reference distribution of the model's output: per label, or binned like a feature."""

    kind: str  # "categorical" or "numeric"
    proportions: tuple[float, ...]
    labels: tuple[Label, ...] | None = None
    edges: tuple[float, ...] | None = None


_QUALITY_KEYS = ("accuracy", "log_loss", "brier", "mae", "mae_sd", "bias", "error_sd")


@dataclass(frozen=True)
class ReferenceProfile:
    n: int
    features: tuple[FeatureReference, ...]
    prediction: PredictionReference | None
    profile_id: str | None
    calibration: CalibrationMap | None = None
    quality: dict[str, float] | None = None
    problems: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.features and self.prediction is None

    @classmethod
    def from_dict(cls, d: Any) -> ReferenceProfile:
        """Validate and parse a profile dict; raises :class:`ProfileError`."""
        if d is None or d == {}:
            return cls(n=0, features=(), prediction=None, profile_id=None)
        if not isinstance(d, dict):
            raise ProfileError("a reference profile must be an object")
        n = d.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ProfileError("profile.n must be a positive integer (the reference sample size)")
        raw_features = d.get("features", [])
        if not isinstance(raw_features, list):
            raise ProfileError("profile.features must be a list")
        features = []
        for i, f in enumerate(raw_features):
            ctx = f"profile.features[{i}]"
            if not isinstance(f, dict):
                raise ProfileError(f"{ctx} must be an object")
            edges = _edges(f.get("edges"), f"{ctx}.edges")
            features.append(
                FeatureReference(
                    name=str(f.get("name", f"f{i}")),
                    edges=edges,
                    proportions=_proportions(f.get("proportions"), len(edges) + 1, f"{ctx}.proportions"),
                )
            )
        problems: list[str] = []
        calibration = None
        if d.get("calibration") is not None:
            try:
                calibration = CalibrationMap.from_dict(d["calibration"])
            except ProfileError as exc:
                problems.append(str(exc))
        quality = None
        if d.get("quality") is not None:
            try:
                quality = _quality(d["quality"])
            except ProfileError as exc:
                problems.append(str(exc))
        return cls(
            n=n,
            features=tuple(features),
            prediction=_prediction(d.get("prediction")),
            profile_id=profile_id(d),
            calibration=calibration,
            quality=quality,
            problems=tuple(problems),
        )


def _quality(q: Any) -> dict[str, float]:
    """The reference quality block: finite numbers, ``n`` a positive integer."""
    if not isinstance(q, dict):
        raise ProfileError("profile.quality must be an object")
    out: dict[str, float] = {}
    n = q.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ProfileError("profile.quality.n must be a positive integer (labelled rows)")
    out["n"] = n
    for key in _QUALITY_KEYS:
        v = q.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ProfileError(f"profile.quality.{key} must be a finite number")
        out[key] = float(v)
    if "accuracy" in out and not 0 <= out["accuracy"] <= 1:
        raise ProfileError("profile.quality.accuracy must lie in [0, 1]")
    return out


def _prediction(p: Any) -> PredictionReference | None:
    if p is None:
        return None
    if not isinstance(p, dict):
        raise ProfileError("profile.prediction must be an object")
    kind = p.get("kind")
    if kind == "categorical":
        raw = p.get("labels")
        if not isinstance(raw, list):
            raise ProfileError("profile.prediction.labels must be a list")
        try:
            labels = tuple(canonical_label(x) for x in raw)
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"profile.prediction.labels: {exc}") from exc
        if len(set(labels)) != len(labels):
            raise ProfileError("profile.prediction.labels must be distinct")
        props = _proportions(p.get("proportions"), len(labels), "profile.prediction.proportions")
        return PredictionReference(kind=kind, proportions=props, labels=labels)
    if kind == "numeric":
        edges = _edges(p.get("edges"), "profile.prediction.edges")
        props = _proportions(p.get("proportions"), len(edges) + 1, "profile.prediction.proportions")
        return PredictionReference(kind=kind, proportions=props, edges=edges)
    raise ProfileError(f"profile.prediction.kind must be 'categorical' or 'numeric', not {kind!r}")


def profile_id(profile: dict[str, Any]) -> str:
    """A short fingerprint of a profile: the first 16 hex digits of the SHA-256 of its JSON.

    The JSON is canonical (sorted keys, no spaces), and Python floats round-trip through JSON
    exactly, so the device and the controller compute the same id from the same manifest.
    """
    try:
        blob = json.dumps(profile, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"a reference profile must be plain, finite JSON: {exc}") from exc
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
