"""Parity figures on hand-made arrays, including the exact-tie rule."""

from __future__ import annotations

import numpy as np
import pytest

from converters import ParityError
from converters.parity import classifier_parity, quality_figures, regressor_parity


def test_tied_probabilities_excuse_a_label_flip() -> None:
    source_proba = np.array([[0.5, 0.5], [0.9, 0.1]])
    artifact_proba = source_proba + 1e-7
    figures = classifier_parity(np.array([0, 0]), np.array([1, 0]), source_proba, artifact_proba,
                                tolerance=1e-4)
    assert figures.label_agreement == 1.0 and figures.ties == 1


def test_a_clear_label_flip_fails_with_figures() -> None:
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(ParityError) as info:
        classifier_parity(np.array([0, 1]), np.array([1, 1]), proba, proba, tolerance=1e-4)
    assert info.value.label_agreement == 0.5 and info.value.n == 2
    assert info.value.figures()["max_abs_diff"] == 0.0


def test_probability_difference_over_tolerance_fails() -> None:
    proba = np.array([[0.9, 0.1]])
    with pytest.raises(ParityError, match="max_abs_diff=0.01"):
        classifier_parity(np.array([0]), np.array([0]), proba, proba + 0.01, tolerance=1e-3)


def test_regressor_parity_and_quality() -> None:
    figures = regressor_parity(np.array([1.0, 2.0]), np.array([1.0, 2.00001]), tolerance=1e-4)
    assert figures.as_dict() == {"n": 2, "max_abs_diff": pytest.approx(1e-5),
                                 "label_agreement": 1.0, "tolerance": 1e-4}
    q = quality_figures("regression", np.array([1.0, 3.0]), np.array([1.0, 2.0]),
                        np.array([2.0, 2.0]))
    assert q == {"source_mae": 0.5, "artifact_mae": 1.0}
