"""Feeds rows of a bundled scikit-learn dataset to simulated devices and returns true labels
a little later, as a person or a downstream system would."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass

import numpy as np

from edge_agent.agent import EdgeAgent, NoActiveModel
from simulator.fleet import SimulatedFleet

DATASETS = ("iris", "wine", "breast_cancer", "digits")


@dataclass(frozen=True)
class Dataset:
    name: str
    features: np.ndarray  # float32, rows x features
    target: np.ndarray
    feature_names: list[str]


def load_dataset(name: str = "iris") -> Dataset:
    """A dataset that ships inside scikit-learn (nothing is downloaded)."""
    from sklearn import datasets

    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    bunch = getattr(datasets, f"load_{name}")()
    names = [str(n) for n in getattr(bunch, "feature_names", [])] or \
        [f"f{i}" for i in range(bunch.data.shape[1])]
    return Dataset(name, bunch.data.astype(np.float32), bunch.target, names)


class Workload:
    def __init__(self, fleet: SimulatedFleet, dataset: Dataset, *, rate_per_device: float = 2.0,
                 feedback_delay_s: float = 0.5, feedback_coverage: float = 1.0,
                 seed: int = 0) -> None:
        self.fleet = fleet
        self.dataset = dataset
        self.rate = rate_per_device
        self.feedback_delay_s = feedback_delay_s
        self.feedback_coverage = feedback_coverage
        self.rng = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._credit = [0.0] * len(fleet.agents)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # let feedback already scheduled land before agents are stopped
        await asyncio.sleep(self.feedback_delay_s + 0.1)

    async def _run(self, tick: float = 0.1) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for i, agent in enumerate(self.fleet.agents):
                self._credit[i] += self.rate * tick
                while self._credit[i] >= 1.0:
                    self._credit[i] -= 1.0
                    self._predict_one(agent, loop)
            await asyncio.sleep(tick)

    def _predict_one(self, agent: EdgeAgent, loop: asyncio.AbstractEventLoop) -> None:
        if agent.outbox is None:
            return  # stopped or killed
        row = self.rng.randrange(len(self.dataset.target))
        try:
            prediction = agent.predict(self.dataset.features[row])[0]
        except NoActiveModel:
            self.stats["refused_no_model"] += 1
            return
        self.stats["predictions"] += 1
        if self.rng.random() < self.feedback_coverage:
            truth = self.dataset.target[row].item()
            loop.call_later(self.feedback_delay_s, self._feedback, agent, prediction.prediction_id,
                            truth)

    def _feedback(self, agent: EdgeAgent, prediction_id: str, truth: object) -> None:
        if agent.outbox is None:
            return
        agent.feedback(prediction_id, truth)
        self.stats["feedback"] += 1
