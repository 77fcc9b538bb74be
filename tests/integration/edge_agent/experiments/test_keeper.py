"""The agent's experiment keeper with real onnxruntime sessions (no broker: the candidate's file
is already in its slot, as after a restart): a candidate that fails its smoke test, or does not
fit the memory budget, never runs and the refusal is reported; a good one is attached; a stop
order drops it and its slot."""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edge_agent.desired_gate import DesiredGate
from edge_agent.experiment_keeper import ExperimentKeeper
from edge_agent.runtime import InferenceRuntime, load_runtime
from edge_agent.shadow import Experiment
from edge_agent.slots import artifact_name
from edgewise_wire import Manifest, ModelRef
from edgewise_wire.experiments import ExperimentOrder
from tests.harness.iris_models import IrisModels, iris_models

__all__ = ["iris_models"]


class Host:
    def __init__(self, active: ModelRef, runtime: InferenceRuntime) -> None:
        self.active: ModelRef | None = active
        self.runtime: InferenceRuntime | None = runtime
        self.experiment: Experiment | None = None
        self.records: list[dict[str, Any]] = []
        self.attached = False

    def report(self) -> None:
        pass

    def queue_record(self, record: dict[str, Any]) -> None:
        self.records.append(record)


class NoLink:
    connected = False


def run_order(tmp_path: Path, models: IrisModels, candidate: Manifest, data: bytes, *,
              budget: int | None = None, then_stop: bool = False) -> Host:
    control = models.a
    tmp_path.mkdir(parents=True, exist_ok=True)
    control_path = tmp_path / "control.onnx"
    control_path.write_bytes(control.data)
    m = control.manifest
    control_ref = ModelRef(m.model, m.version, m.artifact.sha256)
    host = Host(control_ref, load_runtime(control_path, m))
    slot = tmp_path / "data" / "experiment"
    slot.mkdir(parents=True)
    (slot / artifact_name(candidate)).write_bytes(data)

    async def go() -> None:
        with ThreadPoolExecutor(1) as pool:
            keeper = ExperimentKeeper(
                host, NoLink(), DesiredGate({}, device_id="pi-1", device_class="generic",  # type: ignore[arg-type]
                                            max_model_bytes=None),
                data_dir=tmp_path / "data", device_id="pi-1", small_io=pool,
                clock=lambda: 1000.0, repair_interval_s=1.0, model_memory_bytes=budget,
                feedback_memory=100)
            keeper.on_order(ExperimentOrder("exp-1", "shadow", control_ref, candidate, None,
                                            1.0, 0.0, ts=1000.0))
            assert keeper._task is not None
            await keeper._task
            host.attached = host.experiment is not None
            if then_stop:
                keeper.on_order(ExperimentOrder("exp-1", "stop", ts=1001.0))
                await keeper._task
            keeper.close()

    asyncio.run(go())
    return host


def test_a_good_candidate_is_attached_and_a_stop_drops_it(tmp_path: Path,
                                                          iris_models: IrisModels) -> None:
    b = iris_models.b
    host = run_order(tmp_path, iris_models, b.manifest, b.data)
    assert host.attached and host.records == []
    stopped = run_order(tmp_path / "again", iris_models, b.manifest, b.data, then_stop=True)
    assert stopped.attached and stopped.experiment is None
    assert not list((tmp_path / "again" / "data" / "experiment").iterdir())


def test_a_candidate_that_fails_its_smoke_test_never_runs(tmp_path: Path,
                                                          iris_models: IrisModels) -> None:
    b = iris_models.b
    case = b.manifest.smoke_tests[0]
    wrong = [(label + 1) % 3 for label in case.expected_labels]
    broken = dataclasses.replace(b.manifest, smoke_tests=(
        dataclasses.replace(case, expected_labels=wrong),))
    host = run_order(tmp_path, iris_models, broken, b.data)
    assert not host.attached
    [record] = host.records
    assert record["refused"].startswith("smoke test 0:")


def test_a_candidate_over_the_memory_budget_is_refused_with_the_reason(
        tmp_path: Path, iris_models: IrisModels) -> None:
    b = iris_models.b
    # below the candidate's own artifact size: refused whatever the served session measured (a
    # session loaded into memory the process had freed before measures nothing, and counts 0)
    host = run_order(tmp_path, iris_models, b.manifest, b.data,
                     budget=b.manifest.artifact.size - 1)
    assert not host.attached
    [record] = host.records
    assert "cannot hold two sessions" in record["refused"]
