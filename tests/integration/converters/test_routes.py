"""Routes tried in order, the first with parity winning, every attempt on record."""

from __future__ import annotations

from typing import Any

import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from converters import ConversionError, ParityError, UnsupportedModelError, convert_one
from converters.artifact import Candidate
from converters.envs import find_python
from converters.result import ConversionResult
from converters.routes import Route, first_with_parity
from edgewise_wire.manifest import ArtifactRef, Manifest, SmokeTest, TensorSpec


def _result(parity: float) -> ConversionResult:
    manifest = Manifest(model="m", version=0, format="onnx", task="regression",
                        inputs=(TensorSpec("input", "float32", (None, 1)),),
                        outputs=(TensorSpec("variable", "float32", (None, 1)),),
                        label_output="variable", score_output=None, class_labels=None,
                        feature_names=("f0",), artifact=ArtifactRef.describe(b"x"),
                        smoke_tests=(SmokeTest([[0.0]], [0.0]),), smoke_tolerance=1e-3,
                        parity={"n": 3, "max_abs_diff": parity, "label_agreement": 1.0})
    return ConversionResult(b"x", manifest, {})


def _candidate(name: str) -> Candidate:
    return Candidate("onnx", "float32", name.encode(), {"converter": name})


def test_the_first_route_with_parity_wins_and_every_attempt_is_kept() -> None:
    def broken() -> Candidate:
        raise UnsupportedModelError("M", "no converter for it")

    def check(candidate: Candidate) -> ConversionResult:
        if candidate.data == b"loose":
            raise ParityError(0.5, 0.9, 1e-4, 3)
        return _result(1e-6)

    said: list[str] = []
    result = first_with_parity([Route("a", broken), Route("b", lambda: _candidate("loose")),
                                Route("", lambda: _candidate("good")),
                                Route("never", lambda: pytest.fail("tried after a winner"))],
                               check, said.append, "onnx float32")
    attempts = result.manifest.source["attempts"]
    assert [(a["route"], a["ok"]) for a in attempts] == [("a", False), ("b", False),
                                                          ("good", True)]
    assert attempts[0]["error"] == "no converter for it"
    assert "max_abs_diff=0.5" in attempts[1]["error"]
    assert attempts[2]["parity"]["max_abs_diff"] == 1e-6
    assert result.manifest.source["route"] == "good" and result.report["route"] == "good"
    assert said[-1] == "onnx float32: route good verified after 2 failed"


def test_when_every_route_fails_the_error_names_each_one() -> None:
    def unsupported() -> Candidate:
        raise UnsupportedModelError("M", "no converter")

    def crashes() -> Candidate:
        raise ConversionError("tool exited 2")

    with pytest.raises(UnsupportedModelError) as caught:
        first_with_parity([Route("a", unsupported), Route("b", crashes)], lambda c: _result(0),
                          lambda m: None, "x")
    assert "no route converts it (a: no converter; b: tool exited 2)" in str(caught.value)
    assert [a["route"] for a in caught.value.attempts] == ["a", "b"]  # type: ignore[attr-defined]

    def check(candidate: Candidate) -> ConversionResult:
        raise ParityError(0.25, 1.0, 1e-4, 3)

    with pytest.raises(ParityError, match=r"max_abs_diff=0.25.*Routes tried: a: no converter"):
        first_with_parity([Route("a", unsupported), Route("b", lambda: _candidate("b"))], check,
                          lambda m: None, "x")
    single = ParityError(0.25, 1.0, 1e-4, 3)
    with pytest.raises(ParityError) as one:
        first_with_parity([Route("b", lambda: _candidate("b"))],
                          lambda c: (_ for _ in ()).throw(single), lambda m: None, "x")
    assert one.value is single  # one route: its own error, unchanged


def _fallback_envs() -> list[str]:
    return [name for name in ("skl2onnx", "hummingbird") if find_python(name) is not None]


@pytest.mark.parametrize("cls", [HistGradientBoostingClassifier, HistGradientBoostingRegressor])
def test_hist_gradient_boosting_converts_through_a_fallback_route(cls: Any, iris: Any,
                                                                  diabetes: Any) -> None:
    """skl2onnx 1.20 cannot write these trees under protobuf 7: the first route fails; a
    side environment's route converts it, and the manifest says why it won."""
    X, y = iris if cls is HistGradientBoostingClassifier else diabetes
    model = cls(max_iter=20, random_state=0).fit(X, y)
    if not _fallback_envs():
        with pytest.raises(UnsupportedModelError, match="converters.envs setup"):
            convert_one(model, X, name="hgb")
        pytest.skip("no side environment (python -m converters.envs setup skl2onnx) to fall "
                    "back to; checked that the error says how to get one")
    result = convert_one(model, X, name="hgb")
    attempts = result.manifest.source["attempts"]
    first = attempts[0]
    if first["ok"]:  # a skl2onnx/protobuf pair that writes these trees: nothing to fall back from
        pytest.skip(f"skl2onnx converted {cls.__name__} itself: {first}")
    assert first["route"] == "skl2onnx" and "protobuf" in first["error"]
    assert attempts[-1]["ok"] and result.manifest.source["route"] == attempts[-1]["route"]
    assert result.manifest.source["route"] in ("skl2onnx (side environment)", "hummingbird-ml")
    parity = result.manifest.parity
    assert parity["max_abs_diff"] <= parity["tolerance"] and parity["label_agreement"] == 1.0


def test_labels_written_as_one_row_are_reshaped_to_one_per_row(iris: Any) -> None:
    """skl2onnx writes QuadraticDiscriminantAnalysis labels as [1, N]; the artifact gets a
    Reshape so the device reads one label per row (and parity compares them)."""
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

    X, y = iris
    result = convert_one(QuadraticDiscriminantAnalysis().fit(X, y), X, name="qda")
    label = next(o for o in result.manifest.outputs if o.name == "label")
    assert label.shape == (None,)
    assert result.manifest.parity["label_agreement"] == 1.0
