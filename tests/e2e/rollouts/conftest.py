"""Models and a controller process for the rollout tests.

The models are real scikit-learn estimators converted by ``convert_sklearn`` (with the true
labels, so each manifest carries its accuracy on them):

* ``good`` / ``good2``: logistic regression pipelines on iris (two different artifacts);
* ``shuffled``: the same pipeline trained on shuffled labels: it loads, passes its smoke test
  (which checks the artifact against its own predictions) and serves, but is wrong most of the
  time: the simulator's labels show it;
* ``big``: a 40-tree random forest, about 33 KB, too large for a device with
  ``max_model_bytes`` of a few KB (a real agent check).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator.broker import BrokerProcess
from tests.harness.controller_env import ControllerEnv

SMALL_DEVICE_BYTES = 4096


@dataclass(frozen=True)
class Models:
    good: Any
    good2: Any
    shuffled: Any
    big: Any


@pytest.fixture(scope="session")
def models() -> Models:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn
    from simulator.workload import load_dataset

    data = load_dataset("iris")
    x, y = data.features, data.target

    def convert(estimator: Any, labels: np.ndarray) -> Any:
        return convert_sklearn(estimator.fit(x, labels), x, name="iris", labels=y,
                               feature_names=data.feature_names)

    shuffled = y.copy()
    np.random.default_rng(0).shuffle(shuffled)
    built = Models(
        good=convert(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), y),
        good2=convert(make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500)),
                      y),
        shuffled=convert(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
                         shuffled),
        big=convert(RandomForestClassifier(n_estimators=40, random_state=0), y))
    assert built.big.manifest.artifact.size > SMALL_DEVICE_BYTES > built.good.manifest.artifact.size
    assert built.shuffled.manifest.parity["artifact_accuracy"] < 0.5
    assert built.good.manifest.parity["artifact_accuracy"] > 0.9
    return built


@pytest.fixture
def env(fresh_broker: BrokerProcess, tmp_path: Path) -> Iterator[ControllerEnv]:
    """A controller process on a broker of this test's own (no retained state of other tests)."""
    controller = ControllerEnv(fresh_broker, tmp_path)
    controller.start()
    yield controller
    controller.stop()
