"""Streams with known change points, through real agents, a real broker and a real controller:
every change is alerted, by the kind of alert that watches it, and nothing is alerted before it.

Eight synthetic features, a logistic model (and a linear regressor), 500-row monitoring windows,
labels arriving 500 rows late. Each device gets one stream: a 1 sd covariate shift, a 0.25 sd
shift, a sensor offset, a slow gradual drift, a class-prior shift, a concept flip, a regression
target shift, and a control with no change at all. The controller runs its default detectors.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from controller.cli.client import ControllerClient
from edge_agent.agent import EdgeAgent
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from simulator.fleet import SimulatedFleet

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(240)]

FEATURES = 8
CHANGE_AT = 3000  # rows of the unchanged stream before the change
ROWS_PER_SECOND = 1000
BATCH = 50
WINDOW_S = BATCH * 10 / ROWS_PER_SECOND  # 500 rows a window
LABEL_DELAY = 500  # rows
MAX_ROWS = CHANGE_AT + 14_000


def rule(x: np.ndarray) -> np.ndarray:
    return (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)


@dataclass
class Stream:
    """One device's rows and true labels; the change starts at row ``CHANGE_AT``."""

    kind: str
    seed: int
    produced: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def next(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        start, self.produced = self.produced, self.produced + n
        x = self.rng.normal(size=(n, FEATURES))
        if self.kind == "prior" and start >= CHANGE_AT:
            # positives four times as likely as before: keep negatives with probability 1/4
            keep = []
            while sum(len(k) for k in keep) < n:
                cand = self.rng.normal(size=(4 * n, FEATURES))
                y_cand = rule(cand)
                keep.append(cand[(y_cand == 1) | (self.rng.random(4 * n) < 0.25)])
            x = np.concatenate(keep)[:n]
        truth = x.copy()  # what the labels follow; the sensor offset changes only what is read
        noise = self.rng.random(n) < 0.03
        index = np.arange(start, start + n)
        after = index >= CHANGE_AT
        if self.kind == "covariate":
            x[after, 2] += 1.0
        elif self.kind == "small":
            x[after, 3] += 0.25
        elif self.kind == "offset":
            x[after, 0] += 0.5
        elif self.kind == "gradual":
            x[:, 4] += np.clip((index - CHANGE_AT) / 5000.0, 0.0, 1.0)
        if self.kind == "regression":
            y_reg = truth[:, 0] + 0.5 * truth[:, 1] + self.rng.normal(scale=0.3, size=n)
            y_reg[after] += 1.0
            return x.astype(np.float32), y_reg
        y = np.where(noise, 1 - rule(truth), rule(truth))
        if self.kind == "concept":
            y[after] = 1 - y[after]
        return x.astype(np.float32), y


CLASSIFIER_STREAMS = {"covariate": "drift", "small": "drift", "offset": "drift",
                      "gradual": "drift", "prior": "drift", "concept": "accuracy",
                      "control": None}


def _conversions() -> tuple[object, object]:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from converters import convert_sklearn

    rng = np.random.default_rng(0)
    train = rng.normal(size=(5000, FEATURES))
    y = rule(train)
    held = rng.normal(size=(5000, FEATURES))  # the reference: never seen in training
    y_held = np.where(rng.random(5000) < 0.03, 1 - rule(held), rule(held))
    names = [f"x{i}" for i in range(FEATURES)]
    clf = LogisticRegression(max_iter=500).fit(train, np.where(rng.random(5000) < 0.03, 1 - y, y))
    reg_y = train[:, 0] + 0.5 * train[:, 1] + rng.normal(scale=0.3, size=5000)
    reg = LinearRegression().fit(train, reg_y)
    held_reg = held[:, 0] + 0.5 * held[:, 1] + rng.normal(scale=0.3, size=5000)
    return (convert_sklearn(clf, held.astype(np.float32), name="synth", labels=y_held,
                            feature_names=names),
            convert_sklearn(reg, held.astype(np.float32), name="synthreg", labels=held_reg,
                            feature_names=names))


@dataclass
class Device:
    agent: EdgeAgent
    stream: Stream
    pending: deque[tuple[int, str, object]] = field(default_factory=deque)
    change_started: float | None = None


def _step(device: Device) -> None:
    x, y = device.stream.next(BATCH)
    if device.change_started is None and device.stream.produced > CHANGE_AT:
        device.change_started = time.time()
    predictions = device.agent.predict(x)
    produced = device.stream.produced
    for p, truth in zip(predictions, y, strict=True):
        device.pending.append((produced, p.prediction_id, truth.item()))
    while device.pending and device.pending[0][0] <= produced - LABEL_DELAY:
        _, pid, truth = device.pending.popleft()
        device.agent.feedback(pid, truth)


@pytest.fixture
def controller(broker: BrokerProcess, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "controller.toml"
    config.write_text("alert_interval_s = 0.5\nalert_silent_after_s = 3600\n"
                      'alert_segment_label = ""\n')
    proc, url = start_controller(tmp_path / "controller", broker,
                                 extra_args=["--config", str(config)])
    yield proc, url
    stop_process(proc)


def test_every_known_change_is_alerted_by_its_kind_and_nothing_before_it(
        broker: BrokerProcess, controller: tuple[subprocess.Popen[bytes], str],
        tmp_path: Path) -> None:
    _, url = controller
    client = ControllerClient(url)
    clf, reg = _conversions()
    assert client.push_version(clf.manifest, clf.artifact)["version"] == 1  # type: ignore[attr-defined]
    assert client.push_version(reg.manifest, reg.artifact)["version"] == 1  # type: ignore[attr-defined]
    prefix = f"chg{uuid.uuid4().hex[:6]}"
    kinds = [*CLASSIFIER_STREAMS, "regression"]

    def events_of(device_id: str) -> list[dict]:
        return [e for e in client.alert_history(device_id=device_id, limit=1000)
                if e["event"] == "fired"]

    async def scenario() -> dict[str, Device]:
        fleet = SimulatedFleet(broker.address, len(kinds), tmp_path / "devices", prefix=prefix,
                               metrics_window_s=WINDOW_S, telemetry_flush_interval_s=0.2,
                               prediction_sample_rate=0.02)
        await fleet.start()
        devices = {kind: Device(agent, Stream(kind, seed=i + 1))
                   for i, (kind, agent) in enumerate(zip(kinds, fleet.agents, strict=True))}
        try:
            ids = {a.device_id for a in fleet.agents}
            deadline = time.monotonic() + 30
            while not ids <= {d["device_id"] for d in await asyncio.to_thread(client.devices)}:
                assert time.monotonic() < deadline, "devices did not register"
                await asyncio.sleep(0.2)
            classifiers = [d.agent.device_id for k, d in devices.items() if k != "regression"]
            await asyncio.to_thread(client.deploy, "synth", 1, classifiers)
            await asyncio.to_thread(client.deploy, "synthreg", 1,
                                    [devices["regression"].agent.device_id])
            deadline = time.monotonic() + 60
            while not all(d.agent.active is not None for d in devices.values()):
                assert time.monotonic() < deadline, "models were not activated"
                await asyncio.sleep(0.2)
            expected = {k: v for k, v in CLASSIFIER_STREAMS.items() if v} | {"regression": "bias"}
            done: set[str] = set()
            last_poll = 0.0
            while True:
                for device in devices.values():
                    if device.stream.produced < MAX_ROWS:
                        _step(device)
                await asyncio.sleep(BATCH / ROWS_PER_SECOND)
                if time.monotonic() - last_poll > 1.0:
                    last_poll = time.monotonic()
                    for kind in set(expected) - done:
                        fired = await asyncio.to_thread(events_of, devices[kind].agent.device_id)
                        if any(e["kind"] in _accepted(expected[kind]) for e in fired):
                            done.add(kind)
                if done == set(expected) or all(d.stream.produced >= MAX_ROWS
                                                for d in devices.values()):
                    break
            await asyncio.sleep(3 * WINDOW_S + 1.0)  # the last windows reach the controller
        finally:
            await fleet.stop(drain_timeout=5)
        return devices

    devices = asyncio.run(scenario())
    missed, early, control = [], [], []
    for kind, device in devices.items():
        fired = events_of(device.agent.device_id)
        assert device.change_started is not None
        early += [(kind, e["kind"], e["ts"] - device.change_started) for e in fired
                  if e["ts"] < device.change_started]
        if kind == "control":
            control = [(e["kind"], e["detail"]) for e in fired]
            continue
        want = "bias" if kind == "regression" else CLASSIFIER_STREAMS[kind]
        assert want is not None
        if not any(e["kind"] in _accepted(want) for e in fired):
            missed.append((kind, want, [e["kind"] for e in fired]))
    assert early == [], f"alerts before the change: {early}"
    assert control == [], f"alerts on the unchanged stream: {control}"
    assert missed == [], f"changes not alerted by their kind: {missed}"


def _accepted(kind: str) -> set[str]:
    """The alert kinds that report a change of this kind: a concept flip may be proven first by
    the device's own per-label test (concept) or by the window test (accuracy); a regression
    target shift by the bias or the MAE (accuracy) test."""
    if kind == "accuracy":
        return {"accuracy", "concept"}
    if kind == "bias":
        return {"bias", "accuracy"}
    return {kind}
