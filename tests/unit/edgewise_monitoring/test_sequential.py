"""The e-CUSUM core and the normal-distribution helpers the device uses instead of scipy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgewise_monitoring.sequential import (
    AlarmState,
    EvidenceCusum,
    log_mean_exp,
    normal_quantile,
    normal_sf,
)


@pytest.mark.parametrize(("p", "z"), [(0.5, 0.0), (0.975, 1.959963984540054),
                                      (0.999, 3.090232306167813), (1e-7, -5.199337582290661)])
def test_normal_quantile(p: float, z: float) -> None:
    assert normal_quantile(p) == pytest.approx(z, abs=1e-9)
    assert normal_sf(z) == pytest.approx(1 - p, rel=1e-9)


def test_normal_quantile_matches_scipy_across_the_range() -> None:
    """The device's hand-made quantile against scipy's (skipped on a device, which has none)."""
    norm = pytest.importorskip("scipy.stats").norm
    for p in (1e-12, 1e-9, 1e-7, 1e-3, 0.02425, 0.1, 0.5, 0.9, 0.97575, 0.999, 1 - 1e-9):
        assert normal_quantile(p) == pytest.approx(float(norm.ppf(p)), rel=1e-9, abs=1e-12)


def test_cusum_accumulates_restarts_and_weights_rows() -> None:
    c = EvidenceCusum(2, alpha=1e-3)
    assert c.score == -math.inf and c.threshold == pytest.approx(math.log(1000))
    c.add([1.0, -1.0], 100)  # both start a run at log(100)
    assert c.log_c.tolist() == pytest.approx([math.log(100) + 1, math.log(100) - 1])
    c.add([1.0, -10.0], 100)  # the first continues; the second restarts from log(100)
    assert c.run_updates.tolist() == [2, 1] and c.run_rows.tolist() == [200, 100]
    assert c.score == pytest.approx(log_mean_exp(c.log_c))
    c.add([5.0, 5.0], 10, mask=[True, False])  # the second is untouched
    assert c.run_updates.tolist() == [3, 1]
    assert c.crossed()
    again = EvidenceCusum.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again.log_c.tolist() == c.log_c.tolist()
    c.reset()
    assert c.score == -math.inf


def test_cusum_false_alarm_bound_on_exact_e_values() -> None:
    """Exact e-values (Gaussian likelihood ratios under the null): at most alpha alarms per
    row; measured with alpha = 1e-3, 20,000 updates of 50 rows (1e6 rows)."""
    rng = np.random.default_rng(0)
    c = EvidenceCusum(1, alpha=1e-3)
    alarms = 0
    for z in rng.normal(size=20_000):
        c.add([0.5 * z - 0.125], 50)
        if c.crossed():
            alarms += 1
            c.reset()
    assert alarms <= 1000  # the bound: 1e-3 per row
    assert alarms <= 200


def test_alarm_state_clears_after_quiet_updates() -> None:
    s = AlarmState(clear_after=2)
    assert not s.step(True, 5.0, {"why": "x"})
    assert s.state == "alarm"
    assert not s.step(False, -1.0, None)
    assert not s.step(False, 1.0, None)  # evidence again: the streak restarts
    assert not s.step(False, -1.0, None)
    assert s.step(False, -1.0, None)
    assert s.state == "watching" and s.alarms == 1
    assert AlarmState.from_dict(s.to_dict()).to_dict() == s.to_dict()
