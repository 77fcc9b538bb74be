"""ModelWatch: what the controller calls per (device, version) and per fleet group; bad input."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from controller.monitoring.watch import ModelWatch, WatchSettings
from edgewise_monitoring import MonitoringWindow
from tests.harness.profiles import make_profile

WINDOW = 500


def _profile(rng: np.random.Generator, task: str = "classification") -> dict[str, Any]:
    ref = rng.normal(size=(5000, 4))
    if task == "classification":
        profile = make_profile(ref, (ref[:, 0] > 0).astype(int), labels=[0, 1])
        profile["quality"] = {"n": 5000, "accuracy": 0.9}
    else:
        profile = make_profile(ref, ref[:, 0] * 2.0)
        profile["quality"] = {"n": 5000, "mae": 0.8, "mae_sd": 0.6, "bias": 0.0,
                              "error_sd": 1.0}
    return profile


def _summary(rng: np.random.Generator, profile: dict[str, Any], shift: float = 0.0,
             error: float = 0.1, nan_share: float = 0.0, rows: int = WINDOW,
             task: str = "classification") -> dict[str, Any]:
    window = MonitoringWindow(profile, task, [0, 1] if task == "classification" else None,
                              embed_reference=False, error_test=False)
    x = rng.normal(size=(rows, 4))
    x[:, 2] += shift
    if nan_share:
        x[rng.random(rows) < nan_share, 1] = np.nan
    if task == "classification":
        pred = (x[:, 0] > 0).astype(int)
        window.observe(x, pred, rng.uniform(0.5, 1, rows))
        truth = np.where(rng.random(rows) < error, 1 - pred, pred)
        window.observe_feedback(pred, truth)
    else:
        pred = x[:, 0] * 2.0
        window.observe(x, pred)
        window.observe_feedback(pred, pred - rng.normal(shift, 1.0, rows))
    return window.summary(1.0)


def test_quiet_device_then_drift_then_accuracy_loss() -> None:
    rng = np.random.default_rng(0)
    profile = _profile(rng)
    watch = ModelWatch(profile, "classification")
    assert watch.missing == {}
    for _ in range(20):
        assert not any(d.alarm for d in watch.update_summaries([_summary(rng, profile)]))
    drift = [d for d in watch.update_summaries([_summary(rng, profile, shift=1.0)]) if d.alarm]
    assert [d.detector for d in drift] == ["drift"]
    state = json.loads(json.dumps(watch.to_dict(), allow_nan=False))
    watch = ModelWatch.from_dict(state)  # persisted and read back by the controller
    fired = []
    for _ in range(10):
        fired += [d.detector for d in watch.update_summaries([_summary(rng, profile,
                                                                        error=0.3)]) if d.alarm]
    assert "error_rate" in fired


def test_regression_watch_sees_a_target_shift() -> None:
    rng = np.random.default_rng(1)
    profile = _profile(rng, "regression")
    watch = ModelWatch(profile, "regression")
    for _ in range(10):
        assert not any(d.alarm for d in watch.update_summaries(
            [_summary(rng, profile, task="regression")]))
    fired = [d.detector for d in watch.update_summaries(
        [_summary(rng, profile, shift=0.0, task="regression")]) if d.alarm]
    assert fired == []
    window = MonitoringWindow(profile, "regression", embed_reference=False)
    x = rng.normal(size=(WINDOW, 4))
    window.observe(x, x[:, 0] * 2)
    window.observe_feedback(x[:, 0] * 2, x[:, 0] * 2 - rng.normal(0.6, 1.0, WINDOW))
    fired = [d.detector for d in watch.update_summaries([window.summary(1.0)]) if d.alarm]
    assert "bias" in fired


def test_bad_input_is_counted_never_raised_never_alarmed() -> None:
    rng = np.random.default_rng(2)
    profile = _profile(rng)
    watch = ModelWatch(profile, "classification")
    good = _summary(rng, profile)
    other = dict(good, profile_id="0123456789abcdef")
    broken: dict[str, Any] = {"task": "classification", "features": [{"name": "x0"}]}
    negative = json.loads(json.dumps(good))
    negative["features"][0]["counts"][0] = -5
    decisions = watch.update_summaries([other, broken, negative, {"task": "ranking"}])
    assert decisions == []
    assert watch.stats["unreadable"] == 3 and watch.stats["other_profile"] == 1
    for _ in range(30):  # tiny windows, single-valued input, NaNs: no alarm
        for d in watch.update_summaries([_summary(rng, profile, rows=7, nan_share=0.5)]):
            assert not d.alarm


def test_a_version_without_profile_or_reference_says_what_it_cannot_watch() -> None:
    rng = np.random.default_rng(3)
    watch = ModelWatch({}, "classification")
    assert watch.drift is None and watch.error_rate is None
    assert set(watch.missing) == {"drift", "error_rate"}
    window = MonitoringWindow(None, "classification", [0, 1])
    window.observe(None, [0, 1, 1], None)
    assert [d.alarm for d in watch.update_summaries([window.summary(1.0)])] == []
    old = ModelWatch({}, "classification", reference_accuracy=0.9, reference_n=150)
    assert old.error_rate is not None and "error_rate" not in old.missing
    assert rng is not None


def test_fleet_group_pools_devices() -> None:
    """A 0.15 sd shift on ten devices: the group's watch alarms within two evaluations, one
    device's watch not in those two windows."""
    rng = np.random.default_rng(4)
    profile = _profile(rng)
    device = ModelWatch(profile, "classification")
    fleet = ModelWatch(profile, "classification", scope="fleet")
    fleet_fired, device_fired = [], []
    for _ in range(2):
        batch = [_summary(rng, profile, shift=0.15) for _ in range(10)]
        fleet_fired += [d.detector for d in
                        fleet.update_summaries(batch, [f"d{i}" for i in range(10)]) if d.alarm]
        device_fired += [d.detector for d in device.update_summaries(batch[:1]) if d.alarm]
    assert "drift" in fleet_fired and device_fired == []


def test_device_alarms_in_summaries_become_decisions() -> None:
    rng = np.random.default_rng(5)
    profile = _profile(rng)
    window = MonitoringWindow(profile, "classification", [0, 1], embed_reference=False)
    pred = rng.integers(0, 2, 300)
    window.observe(rng.normal(size=(300, 4)), pred, None)
    window.observe_feedback(pred, 1 - pred)
    watch = ModelWatch(profile, "classification")
    fired = {d.detector: d for d in watch.update_summaries([window.summary(1.0)], ["dev-1"])
             if d.alarm}
    assert {"device_error_rate", "error_rate"} <= set(fired)
    assert fired["device_error_rate"].explanation["source"] == "dev-1"
    json.dumps([d.to_dict() for d in fired.values()], allow_nan=False)


def test_flat_settings() -> None:
    s = WatchSettings.from_flat({"drift_alpha": 1e-6, "accuracy_tolerance": 0.02,
                                 "regression_bias_tolerance": 0.1, "alert_on_adwin": True})
    assert s.drift.alpha == 1e-6 and s.error_rate.tolerance == 0.02 and s.alert_on_adwin
    assert s.bias.tolerance == 0.1 and s.mae.tolerance == 0.05
    with pytest.raises(ValueError):
        WatchSettings.from_flat({"drift_alpah": 1e-6})
    assert WatchSettings.flat_defaults()["drift_alpha"] == 1e-7
    assert WatchSettings.flat_defaults()["alert_on_adwin"] is False
