"""Bad prediction input is refused with an error that says what was expected and what came;
no model means NoActiveModel, never a guess. Bad agent configuration is refused up front."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.agent import NoActiveModel
from edge_agent.config import AgentConfig, ConfigError, config_from_dict
from edge_agent.runtime import (
    InferenceRuntime,
    InvalidInput,
    load_runtime,
    prepare_features,
    smoke_test,
)
from edgewise_wire import TopicError
from simulator.broker import BrokerProcess
from tests.harness.fake_controller import activate, agent_and_controller, assert_agent_healthy
from tests.harness.iris_models import IrisModels

ROW = [5.1, 3.5, 1.4, 0.2]

# (input, words the InvalidInput message must contain)
BAD_INPUTS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "too-few-features": (ROW[:3], ("expects 4 features", "got 3")),
    "too-many-features": (ROW + [1.0], ("expects 4 features", "got 5")),
    "batch-of-wrong-width": ([ROW + [0.0]] * 3, ("expects 4 features", "got 5")),
    "three-dimensional": (np.zeros((2, 3, 4)), ("2-D batch", "got 3 dimensions")),
    "scalar": (1.0, ("2-D batch", "got 0 dimensions")),
    "none": (None, ("2-D batch", "got 0 dimensions")),
    "nan": ([5.1, float("nan"), 1.4, 0.2], ("NaN",)),
    "infinity": ([[5.1, 3.5, 1.4, 0.2], [float("inf"), 3.5, 1.4, 0.2]], ("infinity",)),
    "strings": (["a", "b", "c", "d"], ("must be numbers",)),
    "mixed-strings": ([5.1, "wide", 1.4, 0.2], ("must be numbers",)),
    # a record of named fields, given to a model that takes a matrix
    "dict": ({"sepal": 5.1}, ("takes rows of 4 numbers", "not records of named fields")),
    "ragged-batch": ([ROW, ROW[:2]], ("must be numbers",)),
    "empty-list": ([], ("expects 4 features", "got 0")),
    "empty-row": ([[]], ("expects 4 features", "got 0")),
    "zero-rows": (np.empty((0, 4), dtype=np.float32), ("no rows",)),
}


@pytest.fixture(scope="module")
def runtime(iris_models: IrisModels, tmp_path_factory: pytest.TempPathFactory) -> InferenceRuntime:
    path = tmp_path_factory.mktemp("runtime") / "a.onnx"
    path.write_bytes(iris_models.a.data)
    loaded = load_runtime(path, iris_models.a.manifest)
    smoke_test(loaded)
    return loaded


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_features_raise_invalid_input_naming_expected_and_got(
        case: str, runtime: InferenceRuntime) -> None:
    features, words = BAD_INPUTS[case]
    with pytest.raises(InvalidInput) as raised:
        prepare_features(features, runtime.manifest)
    message = str(raised.value)
    for word in words:
        assert word in message, f"{message!r} does not say {word!r}"


def test_the_runtime_still_predicts_after_bad_input(runtime: InferenceRuntime,
                                                    iris_models: IrisModels) -> None:
    for features, _ in BAD_INPUTS.values():
        with pytest.raises(InvalidInput):
            prepare_features(features, runtime.manifest)
    out = runtime.run(prepare_features(iris_models.rows[:10], runtime.manifest))
    assert out.labels.tolist() == iris_models.labels_a[:10]
    one = runtime.run(prepare_features(list(map(float, iris_models.rows[0])), runtime.manifest))
    assert one.labels.tolist() == iris_models.labels_a[:1]


@pytest.mark.broker
def test_agent_refuses_predictions_without_a_model_and_bad_input_with_one(
        broker: BrokerProcess, tmp_path: Path, iris_models: IrisModels) -> None:
    async def scenario() -> None:
        async with agent_and_controller(broker, tmp_path / "agent") as (agent, ctl):
            with pytest.raises(NoActiveModel, match=agent.device_id):
                agent.predict(ROW)
            assert agent.predictions_served == 0

            await activate(agent, ctl, iris_models.a)
            errors_before = sum(1 for r in agent._pending_records
                                if isinstance(r, dict) and r["kind"] == "error")
            for name, (features, words) in BAD_INPUTS.items():
                with pytest.raises(InvalidInput) as raised:
                    agent.predict(features)
                assert all(w in str(raised.value) for w in words), (name, str(raised.value))
            assert agent.predictions_served == 0
            # each refusal is reported as an error record, not as a prediction
            errors = [r for r in agent._pending_records
                      if isinstance(r, dict) and r["kind"] == "error"]
            assert len(errors) - errors_before == len(BAD_INPUTS)
            assert {r["reason"] for r in errors} == {"invalid_input"}

            predictions = agent.predict(iris_models.rows[:5])
            assert [p.label for p in predictions] == iris_models.labels_a[:5]
            assert agent.predictions_served == 5
            assert agent.state == "active"
            assert_agent_healthy(agent)

    asyncio.run(scenario())


@pytest.mark.parametrize("device_id", [
    "", "-lead", "has space", "a/b", "plus+", "hash#", "d" * 65, "g\u00e9r\u00e4t",
    "pi-01\n",  # a trailing newline: '$' in the id pattern matches before it
])
def test_agent_config_refuses_device_ids_unfit_for_topics_and_file_names(
        device_id: str, tmp_path: Path) -> None:
    with pytest.raises(TopicError, match="invalid device id"):
        AgentConfig(device_id=device_id, data_dir=tmp_path)


@pytest.mark.parametrize(("raw", "words"), [
    ({"data_dir": "d"}, "needs 'device_id'"),
    ({"device_id": "pi-01"}, "needs 'data_dir'"),
    ({"device_id": "pi-01", "data_dir": "d", "colour": "red"}, "unknown config keys"),
    ({"device_id": "pi-01", "data_dir": "d", "broker": {"hostname": "x"}}, "unknown [broker] keys"),
    ({"device_id": "pi-01", "data_dir": "d", "outbox_overflow": "explode"}, "outbox_overflow"),
    ({"device_id": "pi-01", "data_dir": "d", "telemetry_batch_size": 0}, "telemetry_batch_size"),
    ({"device_id": "-bad", "data_dir": "d"}, "invalid device id"),
])
def test_agent_config_errors_name_the_key(raw: dict[str, Any], words: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        config_from_dict(raw, base_dir=tmp_path)
    assert words in str(raised.value)
