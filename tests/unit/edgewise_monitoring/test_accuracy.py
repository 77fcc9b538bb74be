import json
import math

import numpy as np
import pytest

from edgewise_monitoring.accuracy import ClassificationScore, RegressionScore


def test_accuracy_and_macro_f1_by_hand() -> None:
    score = ClassificationScore()
    truth = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    score.update(pred, truth)
    # a: tp 2, fp 0, fn 1 -> F1 4/5;  b: tp 1, fp 1, fn 1 -> 2/4;  c: tp 1, fp 1, fn 0 -> 2/3
    assert score.count == 6
    assert score.accuracy() == pytest.approx(4 / 6)
    assert score.macro_f1() == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert score.per_class()["b"] == {"tp": 1, "fp": 1, "fn": 1}


def test_label_seen_only_as_truth_counts_in_macro_f1() -> None:
    score = ClassificationScore()
    score.update([1, 1], [1, 2])
    # 1: tp 1, fp 1 -> 2/3; 2: fn 1 -> 0
    assert score.macro_f1() == pytest.approx((2 / 3 + 0.0) / 2)


def test_matches_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, size=400)
    pred = np.where(rng.random(400) < 0.7, truth, rng.integers(0, 5, size=400))
    score = ClassificationScore()
    score.update(pred, truth)
    assert score.accuracy() == pytest.approx(metrics.accuracy_score(truth, pred))
    assert score.macro_f1() == pytest.approx(metrics.f1_score(truth, pred, average="macro"))


def test_empty_score_is_undefined() -> None:
    score = ClassificationScore()
    assert score.accuracy() is None and score.macro_f1() is None
    assert score.to_dict() == {"pairs": []}


def test_labels_are_canonical_and_survive_json() -> None:
    score = ClassificationScore()
    score.update(np.array([1, 2], dtype=np.int64), [1.0, "2"])
    score.update(True, 1)  # bool is the int 1
    score.update("x", "x")
    d = json.loads(json.dumps(score.to_dict(), allow_nan=False))
    assert d == {"pairs": [[1, 1, 2], [2, "2", 1], ["x", "x", 1]]}
    assert ClassificationScore.from_dict(d) == score
    assert score.accuracy() == pytest.approx(3 / 4)
    with pytest.raises(ValueError):
        score.update([1, 2], [1])
    with pytest.raises(ValueError):
        score.update(float("nan"), 1)


def test_classification_merge_adds() -> None:
    a, b, both = ClassificationScore(), ClassificationScore(), ClassificationScore()
    a.update([0, 1, 1], [0, 1, 0])
    b.update([2, 1], [2, 2])
    both.update([0, 1, 1, 2, 1], [0, 1, 0, 2, 2])
    a.merge(b)
    assert a == both


def test_regression_by_hand() -> None:
    score = RegressionScore()
    score.update([1.0, 2.0, 4.0], [1.5, 2.0, 2.0])  # errors -0.5, 0, 2
    assert score.mae() == pytest.approx(2.5 / 3)
    assert score.rmse() == pytest.approx(math.sqrt(4.25 / 3))
    assert score.bias() == pytest.approx(1.5 / 3)
    other = RegressionScore()
    other.update(3.0, 0.0)
    score.merge(other)
    assert score.n == 4
    assert score.mae() == pytest.approx(5.5 / 4)
    assert score.rmse() == pytest.approx(math.sqrt(13.25 / 4))
    restored = RegressionScore.from_dict(json.loads(json.dumps(score.to_dict())))
    assert restored.to_dict() == score.to_dict()
    assert RegressionScore().mae() is None and RegressionScore().rmse() is None
    with pytest.raises(ValueError):
        score.update([1.0], [float("nan")])
