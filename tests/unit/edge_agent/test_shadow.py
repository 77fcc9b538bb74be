"""Shadow mode and A/B accounting on the device, with fake runtimes and no broker: the served
answer is the control's byte for byte, a failing or stuck candidate never touches it, the window
record holds what the docs say, and a candidate that does not fit is refused with the reason."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig
from edge_agent.runtime import Features, RuntimeOutput, monitor_rows
from edge_agent.shadow import Experiment, ShadowRefused, admit, refusal_record
from edge_agent.slots import Slot
from edgewise_wire import ArtifactRef, Manifest, ModelRef, SmokeTest, TensorSpec, decode, encode
from edgewise_wire.errors import SchemaError
from edgewise_wire.experiments import ExperimentOrder, request_arm, validate_window


def manifest(version: int) -> Manifest:
    return Manifest(
        model="iris", version=version, format="onnx", task="classification",
        inputs=(TensorSpec("input", "float32", (None, 4)),),
        outputs=(TensorSpec("label", "int64", (None,)),
                 TensorSpec("probabilities", "float32", (None, 3))),
        label_output="label", score_output="probabilities", class_labels=(0, 1, 2),
        feature_names=("a", "b", "c", "d"),
        artifact=ArtifactRef.describe(bytes([version]) * 1000),
        smoke_tests=(SmokeTest([[1.0, 2.0, 3.0, 4.0]], [1], [[0.1, 0.8, 0.1]]),),
        smoke_tolerance=1e-4)


class Threshold:
    """A deterministic classifier: class by the first feature's thresholds."""

    def __init__(self, version: int, cut: float, *, fail: bool = False,
                 gate: threading.Event | None = None) -> None:
        self.manifest = manifest(version)
        self.cut = cut
        self.fail = fail
        self.gate = gate
        self.calls = 0

    def run(self, features: Features) -> RuntimeOutput:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail:
            raise RuntimeError("candidate crashed")
        x = monitor_rows(features)[:, 0]
        labels = np.where(x < self.cut, 0, np.where(x < 2 * self.cut, 1, 2)).astype(np.int64)
        scores = np.eye(3, dtype=np.float32)[labels]
        return RuntimeOutput(labels, scores)


def agent(tmp_path: Path, name: str, control: Threshold) -> EdgeAgent:
    built = EdgeAgent(AgentConfig(device_id=name, data_dir=tmp_path / name, health_sample_s=0))
    built.serve(Slot(control.manifest, "control.onnx"), control)
    return built


def shadow(candidate: Threshold, **kwargs: Any) -> Experiment:
    """A shadow whose queue holds every call of a test (none skipped however slow the machine);
    the stuck-candidate test sets a small one."""
    return Experiment("exp-1", "shadow", candidate, started_ts=0.0,
                      **{"queue_size": 10_000, **kwargs})


def rows(seed: int, n: int = 300) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 3, size=(n, 4)).astype(np.float32)


def served(predictions: list[Any]) -> bytes:
    """Everything the caller gets back but the prediction ids, as bytes."""
    return json.dumps([(p.label, p.scores, p.model, p.version) for p in predictions]).encode()


@pytest.mark.parametrize("candidate_kind", ["different", "crashing"])
def test_shadow_never_changes_a_served_answer(tmp_path: Path, candidate_kind: str) -> None:
    plain = agent(tmp_path, "plain", Threshold(1, 1.0))
    shadowed = agent(tmp_path, "shadowed", Threshold(1, 1.0))
    candidate = Threshold(2, 0.9, fail=candidate_kind == "crashing")
    shadowed.experiment = shadow(candidate)
    data = rows(1)
    for i in range(len(data)):  # row by row, and a batch
        assert served(shadowed.predict(data[i].tolist())) == served(plain.predict(data[i].tolist()))
    assert served(shadowed.predict(data)) == served(plain.predict(data))
    assert shadowed.experiment.drain()
    window = validate_window(shadowed.experiment.roll(10.0))
    if candidate_kind == "crashing":
        assert window["shadow"]["failed"] == 2 * len(data)
        assert window["shadow"]["compared"] == 0
    else:
        assert window["shadow"]["compared"] == 2 * len(data)
        agreed = window["shadow"]["agreed"]
        assert 0 < agreed < 2 * len(data)
        assert sum(c for _, _, c in window["shadow"]["confusion"]) == 2 * len(data)
        assert sum(c for a, b, c in window["shadow"]["confusion"] if a == b) == agreed
    assert window["arms"]["control"]["rows"] == 2 * len(data)
    shadowed.experiment.close()


def test_a_stuck_candidate_never_holds_a_served_call(tmp_path: Path) -> None:
    gate = threading.Event()
    served_agent = agent(tmp_path, "stuck", Threshold(1, 1.0))
    experiment = shadow(Threshold(2, 1.0, gate=gate), queue_size=4)
    served_agent.experiment = experiment
    data = rows(2, 50)
    # the candidate blocks on its first call: every served call still returns at once, the
    # queue fills, and the rest are skipped (counted), none waited for
    answers = [served_agent.predict(data[i].tolist()) for i in range(len(data))]
    assert len(answers) == len(data)
    gate.set()
    assert experiment.drain()
    window = experiment.roll(1.0)
    assert window["shadow"]["skipped"] >= len(data) - 5 - 1
    assert window["shadow"]["compared"] + window["shadow"]["skipped"] == len(data)
    experiment.close()


def test_delayed_labels_score_both_versions_on_the_same_rows(tmp_path: Path) -> None:
    device = agent(tmp_path, "labels", Threshold(1, 1.0))
    experiment = shadow(Threshold(2, 1.5))
    device.experiment = experiment
    data = rows(3, 200)
    predictions = device.predict(data)
    assert experiment.drain()
    truth = Threshold(9, 1.5).run(data).labels.tolist()  # the candidate is always right
    for p, label in zip(predictions, truth, strict=True):
        assert device.feedback(p.prediction_id, label)
    window = experiment.roll(5.0)
    arms, paired = window["arms"], window["shadow"]["paired"]
    assert arms["candidate"]["labelled"] == arms["candidate"]["correct"] == 200
    assert arms["control"]["labelled"] == 200
    assert arms["control"]["correct"] == sum(p.label == t for p, t in zip(predictions, truth,
                                                                          strict=True))
    assert paired["n"] == 200 and paired["d_sum"] == 200 - arms["control"]["correct"]
    experiment.close()


def test_sampling_sends_only_a_share_to_the_shadow(tmp_path: Path) -> None:
    device = agent(tmp_path, "sampled", Threshold(1, 1.0))
    draws = iter([0.1, 0.9] * 100)
    experiment = shadow(Threshold(2, 1.0), sample=0.2, draw=lambda: next(draws))
    device.experiment = experiment
    data = rows(4, 100)
    for i in range(100):
        device.predict(data[i].tolist())
    assert experiment.drain()
    assert experiment.roll(1.0)["shadow"]["compared"] == 50
    experiment.close()


def test_ab_serves_a_keyed_request_from_its_arm_and_falls_back_when_the_candidate_fails(
        tmp_path: Path) -> None:
    device = agent(tmp_path, "ab", Threshold(1, 1.0))
    candidate = Threshold(2, 1.0)
    device.experiment = Experiment("exp-ab", "ab", candidate, share=0.5, started_ts=0.0)
    keys = [f"user-{i}" for i in range(200)]
    versions = {k: device.predict([1.0, 1.0, 1.0, 1.0], request_key=k)[0].version for k in keys}
    for k in keys:  # sticky: the same key, the same arm
        assert device.predict([1.0, 1.0, 1.0, 1.0], request_key=k)[0].version == versions[k]
        assert versions[k] == (2 if request_arm("exp-ab", k, 0.5) == "candidate" else 1)
    assert 60 < sum(v == 2 for v in versions.values()) < 140
    assert device.predict([1.0, 1.0, 1.0, 1.0])[0].version == 1  # no key: the served model
    candidate.fail = True
    key = next(k for k in keys if versions[k] == 2)
    assert device.predict([1.0, 1.0, 1.0, 1.0], request_key=key)[0].version == 1
    window = validate_window(device.experiment.roll(1.0))
    assert window["arms"]["candidate"]["errors"] == 1
    assert window["arms"]["candidate"]["rows"] == 2 * sum(v == 2 for v in versions.values())


def test_request_arm_is_stable_and_splits_by_share() -> None:
    keys = [str(i) for i in range(4000)]
    share = sum(request_arm("e", k, 0.1) == "candidate" for k in keys) / len(keys)
    assert 0.08 < share < 0.12
    assert all(request_arm("e", k, 0.0) == "control" for k in keys[:100])
    assert all(request_arm("e", k, 1.0) == "candidate" for k in keys[:100])
    assert [request_arm("e", k, 0.3) for k in keys[:50]] == \
        [request_arm("e", k, 0.3) for k in keys[:50]]


def test_a_candidate_that_does_not_fit_is_refused_with_the_reason() -> None:
    with pytest.raises(ShadowRefused, match="max_model_bytes 100"):
        admit(1000, control_session_bytes=None, max_model_bytes=100, model_memory_bytes=None)
    with pytest.raises(ShadowRefused, match="cannot hold two sessions"):
        admit(1000, control_session_bytes=5000, max_model_bytes=None, model_memory_bytes=5500)
    with pytest.raises(ShadowRefused, match="measured 3000"):
        admit(100, control_session_bytes=5000, candidate_session_bytes=3000,
              max_model_bytes=None, model_memory_bytes=7000)
    admit(100, control_session_bytes=5000, candidate_session_bytes=1000, max_model_bytes=None,
          model_memory_bytes=7000)
    record = validate_window(refusal_record("exp-1", "shadow", "cannot hold two sessions", 3.0))
    assert record["refused"] == "cannot hold two sessions"


def test_the_order_round_trips_and_bad_ones_are_refused() -> None:
    candidate = manifest(2)
    control = ModelRef("iris", 1, "b" * 64)
    order = ExperimentOrder("exp-1", "shadow", control, candidate, None, 0.2, 0.0, ts=5.0)
    assert decode(encode(order), ExperimentOrder) == order
    stop = ExperimentOrder("exp-1", "stop", ts=6.0)
    assert decode(encode(stop), ExperimentOrder) == stop
    for bad in ({**order.body(), "sample": 1.5}, {**order.body(), "mode": "split"},
                {**order.body(), "candidate": None}, {**order.body(), "experiment_id": "A B"}):
        payload = json.dumps({"schema": 1, "type": "experiment", **bad}).encode()
        with pytest.raises(SchemaError):
            decode(payload, ExperimentOrder)


def test_window_validation_names_the_bad_field() -> None:
    experiment = Experiment("exp-1", "ab", Threshold(2, 1.0), started_ts=0.0)
    good = experiment.roll(1.0)
    validate_window(good)
    bad = json.loads(json.dumps(good))
    bad["arms"]["control"]["rows"] = -1
    with pytest.raises(SchemaError, match="rows"):
        validate_window(bad)

