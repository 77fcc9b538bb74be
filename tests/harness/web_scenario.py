"""A controller process with a simulated fleet that has something to show: two versions of an
iris model, the first deployed everywhere and serving with labels fed back, feature drift on
some devices from the start and, halfway through, one feature shifting on every device (so the
fleet's per-feature drift rises at a known time and drift alerts fire), and a staged rollout of
the second version. Used by the browser test (and, run as a script, to look at the dashboard by
hand: ``python -m tests.harness.web_scenario``)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from controller.cli.client import ControllerClient
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from simulator.fleet import SimulatedFleet
from simulator.workload import Workload, load_dataset

PREFIX = "web"
DRIFTING = ("web-0001", "web-0004")  # devices whose inputs drift from the start
FLEET_SHIFTED = "petal width (cm)"  # shifts on every device halfway through serving
STEADY = "sepal width (cm)"  # never shifts anywhere
# Alerts judged every second and fired after two bad windows, so that the fleet-wide shift
# fires drift alerts (markers on the drift charts) while the browser test watches.
CONTROLLER_TOML = "alert_interval_s = 1.0\nalert_fire_after = 2\n"
# 3 s windows of ~36 rows at 12 rows/s: enough for a verdict on the 3-class prediction
# histogram (10 rows per class), which the drift alerts need.
METRICS_WINDOW_S = 3.0


def train_versions() -> list[Any]:
    """Two converted versions of an iris classifier (different regularisation)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn

    data = load_dataset("iris")
    x_train, x_test, y_train, y_test = train_test_split(
        data.features, data.target, test_size=0.4, random_state=0, stratify=data.target)
    out = []
    for c in (1.0, 0.3):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500))
        model.fit(x_train, y_train)
        out.append(convert_sklearn(model, x_test, name="iris", labels=y_test,
                                   feature_names=data.feature_names))
    return out


async def _until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(check)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Scenario:
    url: str
    controller: subprocess.Popen[bytes]
    fleet: SimulatedFleet
    workload: Workload
    rollout: dict[str, Any] = field(default_factory=dict)
    shifted_at: float = 0.0  # when FLEET_SHIFTED started shifting everywhere

    async def stop(self) -> None:
        await self.workload.stop()
        await self.fleet.stop(drain_timeout=2)
        stop_process(self.controller)


async def start_scenario(broker: BrokerProcess, workdir: Path, devices: int = 8,
                         serve_seconds: float = 12.0, rate: float = 10.0) -> Scenario:
    config = workdir / "controller.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CONTROLLER_TOML)
    controller, url = start_controller(workdir / "controller", broker,
                                       extra_args=["--config", str(config)])
    fleet = SimulatedFleet(broker.address, devices, workdir / "devices", prefix=PREFIX,
                           metrics_window_s=METRICS_WINDOW_S)
    workload: Workload | None = None
    try:
        await fleet.start()
        client = ControllerClient(url)
        versions = await asyncio.to_thread(train_versions)
        for result in versions:
            await asyncio.to_thread(client.push_version, result.manifest, result.artifact)
        await _until(lambda: len(client.list_devices()) >= devices, 30, "devices to register")
        await asyncio.to_thread(client.deploy, "iris", 1)
        if not await fleet.wait_for_version("iris", 1, 60):
            raise TimeoutError("the fleet did not activate iris:1")
        workload = Workload(fleet, load_dataset("iris"), rate_per_device=rate,
                            feedback_delay_s=0.2)
        workload.shift_features(DRIFTING, [0, 2], sd=1.0)
        workload.start()
        await asyncio.sleep(serve_seconds / 2)
        everyone = [a.device_id for a in fleet.agents]
        shifted_at = time.time()
        workload.shift_features([d for d in everyone if d not in DRIFTING], [FLEET_SHIFTED],
                                sd=1.0)
        workload.shift_features(DRIFTING, [0, 2, FLEET_SHIFTED], sd=1.0)  # replaces theirs
        await asyncio.sleep(serve_seconds / 2)
        spec = {"name": "iris-v2-berlin", "model": "iris", "version": 2,
                "selector": "site=berlin", "waves": "1,100%", "soak_seconds": 3600}
        response = await asyncio.to_thread(
            httpx.post, f"{url}/api/v1/rollouts", json=spec, timeout=30)
        response.raise_for_status()
        rollout = response.json()
        rollout_id = rollout["id"]
        await _until(lambda: httpx.get(f"{url}/api/v1/rollouts/{rollout_id}",
                                       timeout=10).json()["active"] >= 1, 60,
                     "the rollout's first wave to activate")
        return Scenario(url, controller, fleet, workload, rollout, shifted_at)
    except BaseException:
        if workload is not None:
            await workload.stop()
        await fleet.stop(drain_timeout=1)
        stop_process(controller)
        raise


async def _main(minutes: float) -> None:  # pragma: no cover - by hand only
    import tempfile

    from simulator.broker import mosquitto_broker

    workdir = Path(tempfile.mkdtemp(prefix="ew-dash-"))
    broker = mosquitto_broker(workdir / "mosquitto")
    broker.start()
    scenario = await start_scenario(broker, workdir, devices=18, serve_seconds=5, rate=5)
    print(f"dashboard: {scenario.url}/dashboard/  (for {minutes:g} min)", flush=True)
    try:
        await asyncio.sleep(minutes * 60)
    finally:
        await scenario.stop()
        broker.stop()


if __name__ == "__main__":  # pragma: no cover
    import sys

    asyncio.run(_main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0))
