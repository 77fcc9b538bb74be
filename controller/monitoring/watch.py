"""Every sequential detector of one model version, for one device or one fleet group.

:class:`ModelWatch` is what the controller keeps per (device, model version), and per (fleet
group, model version): it reads window summaries, pools them, feeds each detector and returns
their decisions, each with its explanation. Its state is one JSON object
(:meth:`ModelWatch.to_dict`), to be stored beside the alert state and read back with
:meth:`ModelWatch.from_dict` at the next evaluation.

Which detectors (each alarm is a :class:`~edgewise_monitoring.sequential.Decision`):

==================  ==========================================================================
``drift``           :class:`~edgewise_monitoring.drift_test.DriftDetector`, feature and
                    prediction histograms against the reference profile
``error_rate``      classification: :class:`~edgewise_monitoring.accuracy_test.ErrorRateDetector`
                    on each window's labelled predictions, against the reference accuracy
``mae``, ``bias``   regression: :class:`~edgewise_monitoring.regression_test.MeanShiftDetector` on
                    the absolute and signed errors, against the reference MAE and bias
``device_error_rate`` the device's own per-label error-rate test reported alarms in a window
                    (faster than the window-level test: it fires at the label, not at the
                    window's end); reported as decisions, its state lives on the device
``adwin``           the device's ADWIN saw the error rate rise, only with ``alert_on_adwin`` (off
                    by default): a second opinion that needs no reference accuracy and, comparing
                    the device with its own past, sees a moderate loss sooner, but its false-alarm
                    rate is only measured, not bounded (bench: 0.12 per 100,000 rows)
==================  ==========================================================================

Reference figures come from the profile's ``quality`` block (written by converters given
labels) or, for older model versions, from the arguments (the manifest's
``parity.artifact_accuracy``, ``parity.artifact_mae`` and ``parity.n``). A detector without a
reference is not built, and :attr:`ModelWatch.missing` says why.

Bad input never raises from :meth:`ModelWatch.update_summaries`: a summary that cannot be read,
or of another profile, is counted in :attr:`ModelWatch.stats` and left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from controller.monitoring.drift_test import DriftDetector, DriftSettings
from edgewise_monitoring.accuracy_test import ErrorRateDetector, ErrorRateSettings
from edgewise_monitoring.errors import MonitoringError, ProfileError
from edgewise_monitoring.evidence import WindowEvidence, pool
from edgewise_monitoring.reference import ReferenceProfile
from edgewise_monitoring.regression_test import MeanShiftDetector, MeanShiftSettings
from edgewise_monitoring.sequential import Decision


@dataclass(frozen=True)
class WatchSettings:
    """All settings of the sequential detectors, grouped; :meth:`from_flat` reads the flat
    names a controller configuration uses (:meth:`flat_defaults` lists them)."""

    drift: DriftSettings = field(default_factory=DriftSettings)
    error_rate: ErrorRateSettings = field(default_factory=ErrorRateSettings)
    mae: MeanShiftSettings = field(default_factory=MeanShiftSettings)
    bias: MeanShiftSettings = field(default_factory=MeanShiftSettings)
    alert_on_adwin: bool = False

    _PREFIXES = (("drift_", "drift"), ("accuracy_", "error_rate"),
                 ("regression_mae_", "mae"), ("regression_bias_", "bias"))

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> WatchSettings:
        """Settings from flat names such as ``drift_alpha`` or ``accuracy_tolerance``; unknown
        names raise ``ValueError`` (a typo must not silently keep a default)."""
        groups: dict[str, dict[str, Any]] = {g: {} for _, g in cls._PREFIXES}
        alert_on_adwin = False
        for key, value in values.items():
            if key == "alert_on_adwin":
                alert_on_adwin = bool(value)
                continue
            for prefix, group in cls._PREFIXES:
                if key.startswith(prefix):
                    groups[group][key[len(prefix):]] = value
                    break
            else:
                raise ValueError(f"unknown monitoring setting {key!r}")
        kinds = {"drift": DriftSettings, "error_rate": ErrorRateSettings,
                 "mae": MeanShiftSettings, "bias": MeanShiftSettings}
        built: dict[str, Any] = {}
        for group, kwargs in groups.items():
            known = {f.name for f in fields(kinds[group])}
            unknown = set(kwargs) - known
            if unknown:
                prefix = next(p for p, g in cls._PREFIXES if g == group)
                raise ValueError(f"unknown setting(s) {sorted(prefix + u for u in unknown)}; "
                                 f"known: {sorted(cls.flat_defaults())}")
            for name in ("thetas", "deltas", "etas"):
                if name in kwargs:
                    kwargs[name] = tuple(float(x) for x in kwargs[name])
            built[group] = kinds[group](**kwargs)
        return cls(alert_on_adwin=alert_on_adwin, **built)

    @classmethod
    def flat_defaults(cls) -> dict[str, Any]:
        """Every flat setting name with its default (what docs/monitoring.md tabulates)."""
        return cls().flat()

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name, as :meth:`from_flat` reads them."""
        out: dict[str, Any] = {}
        for prefix, group in self._PREFIXES:
            for k, v in getattr(self, group).to_dict().items():
                out[prefix + k] = v
        out["alert_on_adwin"] = self.alert_on_adwin
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"drift": self.drift.to_dict(), "error_rate": self.error_rate.to_dict(),
                "mae": self.mae.to_dict(), "bias": self.bias.to_dict(),
                "alert_on_adwin": self.alert_on_adwin}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WatchSettings:
        return cls(DriftSettings.from_dict(d["drift"]), ErrorRateSettings.from_dict(d["error_rate"]),
                   MeanShiftSettings.from_dict(d["mae"]), MeanShiftSettings.from_dict(d["bias"]),
                   bool(d.get("alert_on_adwin", False)))


class ModelWatch:
    """The detectors of one model version for one device or one pooled group (module docstring).

    ``profile``: the manifest's ``reference_profile`` (``None`` or ``{}`` for a version without
    one: drift is then not watched). ``task``: ``"classification"`` or ``"regression"``. The
    ``reference_*`` arguments stand in for a profile without a ``quality`` block (the manifest's
    parity figures). ``scope`` is a label for explanations (``"device"`` or ``"fleet"``).
    """

    def __init__(self, profile: Mapping[str, Any] | None, task: str, *,
                 reference_accuracy: float | None = None, reference_mae: float | None = None,
                 reference_n: int | None = None, settings: WatchSettings | None = None,
                 scope: str = "device") -> None:
        if task not in ("classification", "regression"):
            raise ValueError(f"unknown task {task!r}")
        self.task = task
        self.scope = scope
        self.settings = settings or WatchSettings()
        self.missing: dict[str, str] = {}
        self.stats: dict[str, int] = {"summaries": 0, "unreadable": 0, "other_profile": 0,
                                      "updates": 0, "labels_unmatched": 0}
        try:
            ref = ReferenceProfile.from_dict(dict(profile) if profile else None)
        except ProfileError as exc:
            self.missing["profile"] = f"reference profile unusable: {exc}"
            ref = ReferenceProfile.from_dict(None)
        self.profile_id = ref.profile_id
        self.drift: DriftDetector | None = None
        if ref.is_empty:
            self.missing.setdefault("drift", "no reference profile: drift is not watched")
        else:
            self.drift = DriftDetector.from_profile(ref, self.settings.drift)
        quality = dict(ref.quality or {})
        if ref.problems:
            self.missing["profile_problems"] = "; ".join(ref.problems)
        self.error_rate: ErrorRateDetector | None = None
        self.mae: MeanShiftDetector | None = None
        self.bias: MeanShiftDetector | None = None
        n_q = int(quality["n"]) if "n" in quality else reference_n
        if task == "classification":
            acc = quality.get("accuracy", reference_accuracy)
            if acc is None or not (isinstance(acc, (int, float)) and math.isfinite(acc)):
                self.missing["error_rate"] = "no reference accuracy (labelled sample)"
            else:
                self.error_rate = ErrorRateDetector.from_accuracy(float(acc), n_q,
                                                                  self.settings.error_rate)
        else:
            mae = quality.get("mae", reference_mae)
            if mae is None or not math.isfinite(float(mae)):
                self.missing["mae"] = "no reference MAE (labelled sample)"
            else:
                self.mae = MeanShiftDetector(float(mae), quality.get("mae_sd"), n_q,
                                             self.settings.mae, direction="up", name="mae")
            if "bias" in quality and "error_sd" in quality:
                self.bias = MeanShiftDetector(quality["bias"], quality["error_sd"], n_q,
                                              self.settings.bias, direction="both", name="bias")
            else:
                self.missing["bias"] = "no reference bias and error spread (profile quality)"

    # -- feeding ------------------------------------------------------------------------------

    def update(self, evidence: WindowEvidence | Iterable[WindowEvidence]) -> list[Decision]:
        """Judge one update's evidence (pooled first when several), every detector once."""
        ev = evidence if isinstance(evidence, WindowEvidence) else pool(evidence)
        self.stats["updates"] += 1
        out: list[Decision] = []
        if self.drift is not None:
            out.append(self.drift.update(ev))
        if self.error_rate is not None:
            out.append(self.error_rate.update_evidence(ev))
        if self.mae is not None:
            out.append(self.mae.update_evidence(ev))
        if self.bias is not None:
            out.append(self.bias.update_evidence(ev))
        return out

    def update_summaries(self, summaries: Sequence[Mapping[str, Any]],
                         sources: Sequence[str] | None = None) -> list[Decision]:
        """Judge the windows received since the last evaluation (of one device, or of every
        device of a group): unreadable summaries and summaries of another profile are counted
        and skipped, the rest pooled and judged once. Also reports the devices' own per-label
        alarms found in the summaries (``device_error_rate``, ``adwin``)."""
        evidence: list[WindowEvidence] = []
        device_alarms: list[Decision] = []
        for i, s in enumerate(summaries):
            self.stats["summaries"] += 1
            source = sources[i] if sources is not None and i < len(sources) else None
            try:
                ev = WindowEvidence.from_summary(s, source)
            except MonitoringError:
                self.stats["unreadable"] += 1
                continue
            if ev.task != self.task or ev.profile_id != self.profile_id:
                self.stats["other_profile"] += 1
                continue
            evidence.append(ev)
            unmatched = s.get("feedback_unmatched")
            if isinstance(unmatched, int) and unmatched > 0:
                self.stats["labels_unmatched"] = self.stats.get("labels_unmatched", 0) + unmatched
            device_alarms.extend(self._device_alarms(s, source))
        if not evidence:
            return device_alarms
        return self.update(evidence) + device_alarms

    def _device_alarms(self, summary: Mapping[str, Any], source: str | None) -> list[Decision]:
        out = []
        test = summary.get("error_test")
        if isinstance(test, Mapping) and int(test.get("alarms", 0) or 0) > 0:
            details = [str(d) for d in test.get("details", [])]
            out.append(Decision(
                "device_error_rate", True, "alarm", False, True, math.inf, math.nan,
                details[0] if details else "the device's per-label error-rate test alarmed",
                {"test": "per-label e-CUSUM of Bernoulli likelihood ratios on the device",
                 "source": source, "alarms": int(test["alarms"]),
                 "labels": int(test.get("labels", 0)), "null_error": test.get("null_error"),
                 "details": details}, True))
        increases = summary.get("concept_drift_increases")
        if self.settings.alert_on_adwin and isinstance(increases, int) and increases > 0:
            out.append(Decision(
                "adwin", True, "alarm", False, True, math.inf, math.nan,
                f"ADWIN saw the error rate rise {increases} time(s) in the window",
                {"test": "ADWIN (delta 0.002) on the device's 0/1 error stream",
                 "source": source, "increases": increases}, True))
        return out

    # -- state --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "scope": self.scope, "profile_id": self.profile_id,
                "settings": self.settings.to_dict(), "missing": dict(self.missing),
                "stats": dict(self.stats),
                "drift": self.drift.to_dict() if self.drift else None,
                "error_rate": self.error_rate.to_dict() if self.error_rate else None,
                "mae": self.mae.to_dict() if self.mae else None,
                "bias": self.bias.to_dict() if self.bias else None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelWatch:
        out = cls.__new__(cls)
        out.task = str(d["task"])
        out.scope = str(d.get("scope", "device"))
        out.profile_id = d.get("profile_id")
        out.settings = WatchSettings.from_dict(d["settings"])
        out.missing = dict(d.get("missing", {}))
        out.stats = {k: int(v) for k, v in d.get("stats", {}).items()}
        out.drift = DriftDetector.from_dict(d["drift"]) if d.get("drift") else None
        out.error_rate = ErrorRateDetector.from_dict(d["error_rate"]) if d.get("error_rate") \
            else None
        out.mae = MeanShiftDetector.from_dict(d["mae"]) if d.get("mae") else None
        out.bias = MeanShiftDetector.from_dict(d["bias"]) if d.get("bias") else None
        return out
