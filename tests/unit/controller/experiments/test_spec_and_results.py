"""The experiment's checks before anything is sent, and the windows added up and judged."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from controller.experiments.results import summarise
from controller.experiments.spec import (
    ExperimentError,
    check,
    parse_share,
    spec_from_dict,
    split_devices,
)
from edgewise_monitoring.experiment_test import Design
from edgewise_wire import ArtifactRef, Manifest, SmokeTest, TensorSpec


def manifest(version: int, features: int = 4, dtype: str = "float32") -> Manifest:
    return Manifest(
        model="iris", version=version, format="onnx", task="classification",
        inputs=(TensorSpec("input", dtype, (None, features)),),
        outputs=(TensorSpec("label", "int64", (None,)),),
        label_output="label", score_output=None, class_labels=(0, 1, 2),
        feature_names=tuple("abcdefgh"[:features]),
        artifact=ArtifactRef.describe(bytes([version]) * 100),
        smoke_tests=(SmokeTest([[1.0] * features], [1], None),), smoke_tolerance=1e-4)


BODY: dict[str, Any] = {"mode": "ab", "candidate": "iris:2", "control": "iris:1",
                        "share": "10%", "selector": "site=berlin"}
DEVICES = [f"pi-{i}" for i in range(10)]
SERVING = dict.fromkeys(DEVICES, ("iris", 1))


def run_check(body: dict[str, Any], candidate: Manifest | None = None,
              in_rollouts: dict[str, str] | None = None,
              serving: dict[str, Any] | None = None, targets: list[str] | None = None) -> None:
    spec = spec_from_dict(body)
    check(spec, candidate or manifest(spec.candidate.version), manifest(spec.control.version),
          targets=DEVICES if targets is None else targets,
          serving=SERVING if serving is None else serving, in_rollouts=in_rollouts or {})


def test_a_good_spec_passes() -> None:
    run_check(BODY)
    spec = spec_from_dict(BODY)
    assert spec.share == pytest.approx(0.1) and spec.split == "device"


@pytest.mark.parametrize(("change", "message"), [
    ({"candidate": "iris:1"}, "the two arms are the same version iris:1"),
    ({"share": "150%"}, "outside 0-100%"),
    ({"share": "-5%"}, "outside 0-100%"),
    ({"share": "ten"}, "not a number or a percentage"),
    ({"sample": "250"}, "outside 0-100%"),
    ({"mode": "canary"}, "mode 'canary' is not one of"),
    ({"candidate": "iris"}, "is not MODEL:VERSION"),
    ({"selector": "site=="}, "selector"),
    ({"design": {"mde": 0}}, "minimum detectable effect"),
    ({"share": "0%"}, "needs a share above 0%"),
    ({"colour": "red"}, "unknown key 'colour'"),
], ids=["same-version", "share-above", "share-below", "share-text", "sample-above", "mode",
        "ref", "selector", "mde", "share-zero", "unknown-key"])
def test_bad_requests_are_refused_in_one_line(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ExperimentError, match=message) as refused:
        run_check({**BODY, **change})
    assert "\n" not in str(refused.value)


def test_a_candidate_for_other_inputs_is_refused() -> None:
    with pytest.raises(ExperimentError, match="takes other inputs than iris:1: float32.*5 named"):
        run_check(BODY, candidate=manifest(2, features=5))
    with pytest.raises(ExperimentError, match="other inputs"):
        run_check(BODY, candidate=manifest(2, dtype="float64"))
    other_model = dataclasses.replace(manifest(2), model="wine")
    with pytest.raises(ExperimentError, match="different models"):
        run_check(BODY, candidate=other_model)


def test_devices_in_a_live_rollout_or_not_serving_the_control_are_refused() -> None:
    with pytest.raises(ExperimentError, match=r"2 device\(s\) are in a live rollout \('iris:3 "
                                              r"\(#4\)'\): pi-1, pi-2"):
        run_check(BODY, in_rollouts={"pi-1": "iris:3 (#4)", "pi-2": "iris:3 (#4)"})
    with pytest.raises(ExperimentError, match="do not serve the control iris:1: pi-3"):
        run_check(BODY, serving={**SERVING, "pi-3": ("iris", 3)})
    with pytest.raises(ExperimentError, match="no device matches selector"):
        run_check(BODY, targets=[])


def test_parse_share_reads_fractions_and_percentages() -> None:
    assert parse_share("10%") == pytest.approx(0.1)
    assert parse_share(0.2) == pytest.approx(0.2)
    assert parse_share("20") == pytest.approx(0.2)
    assert parse_share("100%") == 1.0


def test_split_by_device_is_stable_and_keeps_both_arms() -> None:
    chosen = split_devices("exp-1", DEVICES, 0.1)
    assert len(chosen) == 1 and chosen == split_devices("exp-1", list(reversed(DEVICES)), 0.1)
    assert len(split_devices("exp-1", DEVICES, 0.5)) == 5
    assert len(split_devices("exp-1", DEVICES, 0.99)) == 9  # the control keeps a device
    assert split_devices("exp-1", DEVICES, 0.0) == []


def _arm(rows: int, labelled: int, correct: int, latency: float) -> dict[str, Any]:
    return {"rows": rows, "labelled": labelled, "correct": correct, "errors": 0,
            "latency_sum": latency * rows, "latency_sumsq": latency * latency * rows,
            "memory_bytes": 1000}


def test_ab_windows_are_added_up_and_judged() -> None:
    rng = np.random.default_rng(0)
    windows = []
    for minute in range(60):
        for device, p in (("pi-1", 0.8), ("pi-2", 0.9)):
            correct = int(rng.binomial(100, p))
            arm_c = _arm(100, 100, correct, 2.0)
            empty = _arm(0, 0, 0, 0.0)
            arms = {"control": arm_c, "candidate": empty} if device == "pi-1" else \
                {"control": empty, "candidate": arm_c}
            windows.append((device, {"kind": "experiment", "ts": 60.0 * minute + 59,
                                     "start_ts": 60.0 * minute, "experiment_id": "exp-1",
                                     "mode": "ab", "arms": arms}))
    windows.append(("pi-3", {"kind": "experiment", "ts": 5.0, "start_ts": 5.0,
                             "experiment_id": "exp-1", "mode": "ab",
                             "refused": "cannot hold two sessions"}))
    out = summarise("ab", Design(), windows)
    assert out["arms"]["control"]["labelled"] == out["arms"]["candidate"]["labelled"] == 6000
    assert out["arms"]["control"]["devices"] == 1
    assert out["comparison"]["verdict"] == "candidate_better"
    assert out["comparison"]["low"] > 0
    assert out["refused"] == {"pi-3": "cannot hold two sessions"}
    assert len(out["series"]) == 60
    assert out["series"][0]["verdict"] == "running"
    assert out["shadow"] is None


def test_shadow_windows_give_agreement_and_the_paired_test() -> None:
    record = {"kind": "experiment", "ts": 60.0, "start_ts": 0.0, "experiment_id": "exp-2",
              "mode": "shadow",
              "arms": {"control": _arm(1000, 200, 150, 2.0), "candidate": _arm(1000, 200, 190, 2.5)},
              "shadow": {"compared": 1000, "agreed": 900, "skipped": 0, "failed": 0, "slow": 0,
                         "paired": {"n": 200, "d_sum": 40, "d_abs": 44},
                         "confusion": [["0", "0", 500], ["1", "1", 400], ["1", "2", 100]]}}
    out = summarise("shadow", Design(), [("pi-1", record)])
    assert out["shadow"]["agreement"] == pytest.approx(0.9)
    assert out["shadow"]["disagreements"] == [["1", "2", 100]]
    assert out["comparison"]["paired"] is True
    assert out["comparison"]["effect"] == pytest.approx(0.2)
    assert out["comparison"]["verdict"] == "candidate_better"
