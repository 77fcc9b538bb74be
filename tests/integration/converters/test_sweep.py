"""The sweep over scikit-learn's estimator registry: its table in docs/converters.md is current,
and the sweep marks estimators as it says."""

from __future__ import annotations

from pathlib import Path

from converters import sweep

DOC = Path(__file__).resolve().parents[3] / "docs" / "converters.md"


def test_the_table_lists_exactly_the_installed_scikit_learn_estimators() -> None:
    assert sweep.check(DOC.read_text()) == []


def test_a_stale_table_is_reported() -> None:
    header = "<!-- sweep:start -->\nGenerated with scikit-learn 0.1.0, skl2onnx 1\n\n"
    stale = header + "| LogisticRegression | classifier | converted | x |\n<!-- sweep:end -->"
    problems = sweep.check(stale)
    assert "another scikit-learn" in problems[0] and "missing" in problems[1]
    assert sweep.main(["--check", str(DOC)]) == 0


def test_the_sweep_marks_converted_and_refused_estimators() -> None:
    registry = {name: (kind, cls) for name, kind, cls in sweep.registry()}
    converted = sweep.sweep_one("LogisticRegression", *registry["LogisticRegression"])
    assert converted.status == "converted" and converted.detail.startswith("skl2onnx, max diff")
    refused = sweep.sweep_one("MultiOutputRegressor", *registry["MultiOutputRegressor"])
    assert refused.status == "refused" and "not fittable" in refused.detail
    row = sweep.table([converted, refused]).splitlines()
    assert "| LogisticRegression | classifier | converted | skl2onnx, max diff" in row[5]
