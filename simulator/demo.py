"""`edgewise demo`: the whole system on one machine, in one command.

A broker, a controller process, a simulated fleet; a model trained, converted to ONNX with a
parity check, pushed, rolled out and monitored; the fleet table; a clean shutdown.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from controller.cli.client import ControllerClient, ControllerClientError
from controller.fleet.render import format_fleet_table
from edgewise_mqtt.link import BrokerAddress
from simulator.broker import BrokerError, BrokerProcess, free_port, start_broker
from simulator.fleet import SimulatedFleet
from simulator.keys import controller_trusted_keys
from simulator.workload import Workload, load_dataset

Say = Callable[..., None]


def _step(say: Say, text: str) -> None:
    say(click.style("==> ", fg="cyan", bold=True) + text)


def start_controller(workdir: Path, broker: BrokerProcess | BrokerAddress,
                     port: int | None = None,
                     extra_args: list[str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start `edgewise controller serve` as its own process; return it and its URL."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "controller.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.app.cli", "controller", "serve", "--data-dir", str(workdir),
         "--broker", f"{broker.host}:{broker.port}", "--port", str(port), *(extra_args or [])],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    client = ControllerClient(url, timeout=2.0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the controller exited ({proc.returncode}); see {workdir}/controller.log")
        try:
            if client.health()["mqtt_connected"]:
                return proc, url
        except ControllerClientError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the controller did not come up in 30 s; see {workdir}/controller.log")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _train_and_convert(name: str):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn

    data = load_dataset("iris")
    x_train, x_test, y_train, y_test = train_test_split(
        data.features, data.target, test_size=0.3, random_state=0, stratify=data.target)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x_train, y_train)
    return convert_sklearn(model, x_test, name=name, labels=y_test,
                           feature_names=data.feature_names)


async def _demo(devices: int, workdir: Path, broker: BrokerProcess, url: str,
                serve_seconds: float, trusted_keys: tuple[str, ...] = (),
                say: Say = click.echo) -> dict[str, Any]:
    """The tour; returns what it showed (the summary of ``edgewise demo --json``)."""
    client = ControllerClient(url)
    fleet = SimulatedFleet(broker.address, devices, workdir / "devices", prefix="demo",
                           trusted_keys=trusted_keys)
    _step(say, f"starting {devices} simulated devices (real agents, one event loop)")
    if trusted_keys:
        say(f"    they trust the controller's {len(trusted_keys)} manifest-signing "
                   "key(s): only signed models run")
    await fleet.start()
    try:
        _step(say, "training a scikit-learn pipeline on iris and converting it to ONNX")
        result = await asyncio.to_thread(_train_and_convert, "iris")
        parity = result.manifest.parity
        say(f"    parity on {parity['n']} rows: max |diff| {parity['max_abs_diff']:.1e}, "
                   f"labels agree {parity['label_agreement']:.0%}, {result.manifest.artifact.size} bytes")
        stored = await asyncio.to_thread(client.push_version, result.manifest, result.artifact)
        say(f"    registered iris:{stored['version']}")

        for _ in range(100):  # every device has said hello to the controller
            known = await asyncio.to_thread(client.list_devices)
            if len(known) >= devices:
                break
            await asyncio.sleep(0.1)
        _step(say, f"rolling iris:{stored['version']} out to the fleet")
        await asyncio.to_thread(client.deploy, "iris", stored["version"])

        def progress(done: int, total: int) -> None:
            say(f"\r    {done}/{total} devices active", nl=False)

        ok = await fleet.wait_for_version("iris", stored["version"], 120, progress)
        say()
        if not ok:
            say("    not every device activated the model; see the table below")

        _step(say, f"serving predictions for {serve_seconds:.0f} s, with true labels fed back")
        workload = Workload(fleet, load_dataset("iris"), rate_per_device=5.0,
                            feedback_delay_s=0.3)
        workload.start()
        await asyncio.sleep(serve_seconds)
        await workload.stop()
        await fleet.wait_drained(30)
        say(f"    {workload.stats['predictions']} predictions, "
                   f"{workload.stats['feedback']} labels fed back")

        _step(say, "fleet as the controller sees it (edgewise fleet)")
        rows = await asyncio.to_thread(client.list_devices)
        say(format_fleet_table(rows))
        good = [r for r in rows if r["online"] and r["active_model"] == "iris"
                and r["active_version"] == stored["version"]]
        return {"ok": ok and len(good) == devices, "devices": devices,
                "devices_on_model": len(good), "model": "iris", "version": stored["version"],
                "predictions": workload.stats["predictions"],
                "labels_fed_back": workload.stats["feedback"]}
    finally:
        await fleet.stop(drain_timeout=5)


def run_demo(devices: int, workdir: Path, broker_kind: str, serve_seconds: float,
             as_json: bool = False) -> int:
    """The tour narrated on stdout; with ``as_json`` the narration goes to stderr and stdout
    gets one JSON summary."""

    def say(text: str = "", **kwargs: Any) -> None:
        click.echo(text, err=as_json, **kwargs)

    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    prefer = "amqtt" if broker_kind == "amqtt" else "mosquitto"
    if broker_kind == "mosquitto" and shutil.which("mosquitto") is None and \
            not Path("/usr/sbin/mosquitto").exists():
        click.echo("error: mosquitto is not installed (apt-get install mosquitto)", err=True)
        return 1
    _step(say, "starting an MQTT broker")
    try:
        broker = start_broker(workdir / "broker", prefer=prefer)
    except BrokerError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    say(f"    {broker.kind} on {broker.host}:{broker.port}")
    controller = None
    try:
        _step(say, "starting the controller (registry, MQTT bridge, REST API)")
        controller, url = start_controller(workdir / "controller", broker)
        say(f"    {url}  (SQLite database and artifacts in {workdir / 'controller'})")
        # the controller created its signing key at start; the devices trust it
        trusted = controller_trusted_keys(workdir / "controller")
        summary = asyncio.run(_demo(devices, workdir, broker, url, serve_seconds, trusted, say))
    finally:
        _step(say, "shutting down")
        if controller is not None:
            stop_process(controller)
        broker.stop()
    say(f"""
Where the pieces are:
  broker       {broker.kind}, log {broker.log_path}
  controller   {workdir / 'controller'}  (controller.sqlite, artifacts/, signing-keys/, controller.log)
  devices      {workdir / 'devices'}/<device>/  (models/, outbox.sqlite, active.json)
Next: run `edgewise controller serve` and `edgewise simulate` yourself; see README.md.""")
    if as_json:
        click.echo(json.dumps({**summary, "workdir": str(workdir), "controller_url": url,
                               "broker": f"{broker.host}:{broker.port}"}, indent=2))
    if summary["ok"]:
        say(click.style(f"demo finished: all {devices} devices ran the model", fg="green"))
        return 0
    say(click.style("demo finished with devices not on the model: see above", fg="red"))
    return 1
