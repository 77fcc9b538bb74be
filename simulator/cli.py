"""`edgewise simulate`: a fleet of real agents against a broker, until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click

from edgewise_mqtt.link import BrokerAddress
from simulator.fleet import SimulatedFleet
from simulator.workload import Workload, load_dataset


async def _simulate(devices: int, broker: BrokerAddress, data_dir: Path, dataset: str,
                    rate: float, duration: float, trusted_keys: tuple[str, ...] = ()) -> None:
    fleet = SimulatedFleet(broker, devices, data_dir, trusted_keys=trusted_keys)
    click.echo(f"connecting {devices} devices to {broker} "
               + (f"(trusting {len(trusted_keys)} signing key(s): signed models only) ..."
                  if trusted_keys else "(no trusted keys: development mode, unsigned models "
                  "accepted) ..."))
    await fleet.start()
    click.echo("connected; devices serve predictions once the controller rolls a model out "
               "(Ctrl-C to stop)")
    workload = Workload(fleet, load_dataset(dataset), rate_per_device=rate)
    workload.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), duration or None)
    await workload.stop()
    await fleet.stop(drain_timeout=10)
    active = sum(1 for a in fleet.agents if a.active is not None)
    click.echo(f"stopped: {workload.stats['predictions']} predictions, "
               f"{workload.stats['refused_no_model']} refused (no model yet), "
               f"{active}/{devices} devices had a model")


def run_simulation(devices: int, broker: str, data_dir: Path, dataset: str, rate: float,
                   duration: float, trust_keys_from: Path | None = None) -> int:
    """``trust_keys_from``: a controller data directory or a PEM file whose manifest-signing
    keys the agents trust (None: development mode)."""
    from simulator.keys import KeysError, load_trusted_keys

    try:
        address = BrokerAddress.parse(broker)
        trusted = load_trusted_keys(trust_keys_from) if trust_keys_from else ()
    except (ValueError, KeysError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    asyncio.run(_simulate(devices, address, data_dir, dataset, rate, duration, trusted))
    return 0


# -- scenarios: `edgewise simulate --scenario FILE` ----------------------------------------

def run_scenario_command(path: Path, data_dir: Path, *, broker: str | None = None,
                         controller_url: str | None = None, report_json: Path | None = None,
                         keep: bool = False) -> int:
    """Run a scenario file and print its report; exit code 0 when every check passed, 1 when one
    failed, 2 when the scenario cannot run. Without ``broker``/``controller_url`` it starts a
    Mosquitto and a controller of its own under ``data_dir`` (removed afterwards unless ``keep``)."""
    import json
    import logging
    import shutil

    from simulator.scenario import ScenarioError, load_scenario
    from simulator.scenario_report import render
    from simulator.scenario_run import RunOptions, run_scenario_sync

    try:
        scenario = load_scenario(path)
        address = BrokerAddress.parse(broker) if broker else None
    except (ScenarioError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    if (address is None) != (controller_url is None):
        click.echo("error: give both an external broker and controller, or neither (the "
                   "scenario then starts its own)", err=True)
        return 2
    workdir = data_dir / scenario.name
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    # the agents' warnings go to a file; the report counts them
    handler = logging.FileHandler(workdir / "agents.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    edgewise_log = logging.getLogger("edgewise")
    edgewise_log.addHandler(handler)
    edgewise_log.propagate = False
    click.echo(f"scenario {scenario.name!r}: {scenario.device_count} devices, "
               f"{len(scenario.events)} events over {scenario.duration_s:g} s "
               f"(agent log: {workdir / 'agents.log'})")
    try:
        report = run_scenario_sync(scenario, RunOptions(
            workdir=workdir, broker=address, controller_url=controller_url,
            progress=lambda text: click.echo(f"  {text}")))
    except ScenarioError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    finally:
        edgewise_log.removeHandler(handler)
        edgewise_log.propagate = True
        handler.close()
    click.echo("")
    click.echo(render(report))
    if report_json is not None:
        report_json.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        click.echo(f"report: {report_json}")
    if not keep:
        shutil.rmtree(workdir / "devices", ignore_errors=True)
    return 0 if report.passed else 1
