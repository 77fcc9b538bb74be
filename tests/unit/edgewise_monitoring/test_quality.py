"""Log loss, Brier and prediction bias."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgewise_monitoring import ClassificationScore
from edgewise_monitoring.quality import ProbabilisticLoss, prediction_bias


def test_loss_figures_match_their_definitions() -> None:
    loss = ProbabilisticLoss()
    loss.add([1, 0, 1], [0.9, 0.8, np.nan])
    assert loss.n == 2
    assert loss.log_loss() == pytest.approx(-(math.log(0.9) + math.log(0.2)) / 2)
    assert loss.brier() == pytest.approx((0.01 + 0.64) / 2)
    other = ProbabilisticLoss.from_dict(loss.to_dict())
    other.merge(loss)
    assert other.n == 4 and other.log_loss() == pytest.approx(loss.log_loss())


def test_prediction_bias_flags_a_class_predicted_too_often() -> None:
    score = ClassificationScore()
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 2000)
    pred = truth.copy()
    flip = (truth == 0) & (rng.random(2000) < 0.2)  # predicts 1 where the label is 0
    pred[flip] = 1
    score.update(pred, truth)
    out = prediction_bias(score)
    assert out["judged"] and set(out["biased_classes"]) == {0, 1}
    row = next(c for c in out["classes"] if c["label"] == 1)
    assert row["predicted_share"] > row["label_share"]
    fair = ClassificationScore()
    noisy = truth.copy()
    noisy[rng.random(2000) < 0.1] ^= 1  # symmetric mistakes
    fair.update(noisy, truth)
    assert prediction_bias(fair)["biased_classes"] == []
