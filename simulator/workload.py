"""Feeds rows of a bundled scikit-learn dataset to simulated devices and returns true labels
a little later, as a person or a downstream system would.

Faults for monitoring tests, per device and switchable while the workload runs:

* **Covariate shift / sensor offset** (:meth:`Workload.shift_features`): chosen features of the
  rows sent to chosen devices are moved by a number of the feature's standard deviations and/or
  an absolute offset. The model's inputs drift; its labels (the dataset's) do not.
* **Concept change** (:meth:`Workload.change_concept`): the labels fed back for chosen devices
  disagree with the model's prediction (a share ``rate`` of them), as when the world changed
  and the model's answer no longer holds, while the inputs look exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Iterable, Sequence
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


@dataclass(frozen=True)
class FeatureShift:
    """Added to the chosen columns of every row a device is asked to predict."""

    columns: tuple[int, ...]
    delta: np.ndarray  # one value per column of the dataset (zeros elsewhere)


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
        self._shifts: dict[str, FeatureShift] = {}
        self._disagree: dict[str, float] = {}
        self._classes = sorted({v.item() for v in np.unique(dataset.target)})
        self._std = dataset.features.astype(np.float64).std(axis=0)

    # -- faults ---------------------------------------------------------------------------------

    def shift_features(self, device_ids: Iterable[str], features: Sequence[int | str], *,
                       sd: float = 0.0, offset: float = 0.0) -> None:
        """From now on, add ``sd`` standard deviations plus ``offset`` to ``features`` (indices
        or names) of the rows sent to ``device_ids``; ``sd=offset=0`` removes the shift."""
        columns = tuple(self._column(f) for f in features)
        delta = np.zeros(self.dataset.features.shape[1], dtype=np.float64)
        for c in columns:
            delta[c] = sd * self._std[c] + offset
        for device_id in self._known(device_ids):
            if not delta.any():
                self._shifts.pop(device_id, None)
            else:
                self._shifts[device_id] = FeatureShift(columns, delta)

    def change_concept(self, device_ids: Iterable[str], rate: float = 1.0) -> None:
        """From now on, a share ``rate`` of the labels fed back to ``device_ids`` name another
        class than the one the model predicted (``rate=0`` restores true labels)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], not {rate}")
        if len(self._classes) < 2:
            raise ValueError("a concept change needs a dataset with at least two classes")
        for device_id in self._known(device_ids):
            if rate == 0.0:
                self._disagree.pop(device_id, None)
            else:
                self._disagree[device_id] = rate

    def _column(self, feature: int | str) -> int:
        if isinstance(feature, int):
            if not 0 <= feature < self.dataset.features.shape[1]:
                raise ValueError(f"feature index {feature} is out of range")
            return feature
        try:
            return self.dataset.feature_names.index(feature)
        except ValueError:
            raise ValueError(f"unknown feature {feature!r}; the dataset has "
                             f"{self.dataset.feature_names}") from None

    def _known(self, device_ids: Iterable[str]) -> list[str]:
        ids = list(device_ids)
        known = {a.device_id for a in self.fleet.agents}
        unknown = sorted(set(ids) - known)
        if unknown:
            raise ValueError(f"devices {unknown} are not in this fleet")
        return ids

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
        features = self.dataset.features[row]
        shift = self._shifts.get(agent.device_id)
        if shift is not None:
            features = (features.astype(np.float64) + shift.delta).astype(np.float32)
            self.stats["shifted_rows"] += 1
        try:
            prediction = agent.predict(features)[0]
        except NoActiveModel:
            self.stats["refused_no_model"] += 1
            return
        self.stats["predictions"] += 1
        if self.rng.random() < self.feedback_coverage:
            truth = self.dataset.target[row].item()
            rate = self._disagree.get(agent.device_id)
            if rate is not None and self.rng.random() < rate:
                truth = self._other_class(prediction.label)
                self.stats["disagreeing_labels"] += 1
            loop.call_later(self.feedback_delay_s, self._feedback, agent, prediction.prediction_id,
                            truth)

    def _other_class(self, predicted: object) -> object:
        """The next class after the predicted one (in sorted order, wrapping around)."""
        try:
            i = self._classes.index(predicted)
        except ValueError:
            return self._classes[0]
        return self._classes[(i + 1) % len(self._classes)]

    def _feedback(self, agent: EdgeAgent, prediction_id: str, truth: object) -> None:
        if agent.outbox is None:
            return
        agent.feedback(prediction_id, truth)
        self.stats["feedback"] += 1
