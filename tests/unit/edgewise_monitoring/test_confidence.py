import json

import numpy as np
import pytest

from edgewise_monitoring.confidence import ConfidenceEstimate
from tests.harness.profiles import assert_close


def test_estimate_is_mean_confidence_plus_offset() -> None:
    est = ConfidenceEstimate()
    assert est.estimated_accuracy() is None
    est.add([0.9, 0.8, 0.7, np.nan])
    assert est.count == 3
    assert est.estimated_accuracy() == pytest.approx(0.8)
    assert est.estimated_accuracy(calibration_offset=-0.05) == pytest.approx(0.75)
    assert est.estimated_accuracy(calibration_offset=0.5) == 1.0  # clipped
    assert est.histogram.counts.tolist() == [0] * 7 + [1, 1, 1]
    assert est.histogram.other == 1


def test_probability_matrix_uses_row_maximum() -> None:
    est = ConfidenceEstimate()
    est.add(np.array([[0.2, 0.8], [0.6, 0.4]]))
    assert est.mean_confidence == pytest.approx(0.7)


def test_estimate_tracks_accuracy_of_a_calibrated_model() -> None:
    # A calibrated model: a prediction made with confidence c is right with probability c.
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, size=20_000)
    correct = rng.random(conf.size) < conf
    est = ConfidenceEstimate()
    est.add(conf)
    assert est.estimated_accuracy() == pytest.approx(correct.mean(), abs=0.01)
    # An over-confident model (true accuracy = c - 0.1): the offset measured at conversion
    # time on a labelled sample corrects the estimate.
    sample = rng.uniform(0.6, 1.0, size=5_000)
    offset = float(np.mean(rng.random(sample.size) < sample - 0.1) - sample.mean())
    live = rng.uniform(0.6, 1.0, size=20_000)
    live_accuracy = float(np.mean(rng.random(live.size) < live - 0.1))
    over = ConfidenceEstimate()
    over.add(live)
    assert over.estimated_accuracy() == pytest.approx(live_accuracy + 0.1, abs=0.015)
    assert over.estimated_accuracy(offset) == pytest.approx(live_accuracy, abs=0.015)


def test_merge_and_json() -> None:
    a, b, both = ConfidenceEstimate(), ConfidenceEstimate(), ConfidenceEstimate()
    a.add([0.95, 0.55])
    b.add([0.75])
    both.add([0.95, 0.55, 0.75])
    a.merge(b)
    assert_close(a.to_dict(), both.to_dict())
    restored = ConfidenceEstimate.from_dict(json.loads(json.dumps(a.to_dict(), allow_nan=False)))
    assert restored.to_dict() == a.to_dict()
