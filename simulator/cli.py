"""`edgewise simulate`: a fleet of real agents against a broker, until interrupted, or a scenario
file. Progress goes to stderr while it runs (``--quiet`` silences it); the totals or the
scenario's report go to stdout (JSON with ``--json``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import click

from controller.cli.common import Progress, emit, one_line
from controller.cli.exit_codes import ExitCode
from edgewise_mqtt.link import BrokerAddress
from edgewise_wire.topics import ROOT, validate_topic_root
from simulator.fleet import FleetError, SimulatedFleet
from simulator.workload import Workload, load_dataset

PROGRESS_EVERY_S = 5.0  # a progress line this often while the fleet serves


async def _simulate(devices: int, broker: BrokerAddress, data_dir: Path, dataset: str,
                    rate: float, duration: float, trusted_keys: tuple[str, ...],
                    progress: Progress, every_s: float = PROGRESS_EVERY_S,
                    connect_timeout: float = 60.0, topic_root: str = ROOT) -> dict[str, Any]:
    fleet = SimulatedFleet(broker, devices, data_dir, trusted_keys=trusted_keys,
                           topic_root=topic_root)
    progress(f"connecting {devices} devices to {broker} "
             + (f"(trusting {len(trusted_keys)} signing key(s): signed models only)"
                if trusted_keys else "(no trusted keys: development mode, unsigned models "
                "accepted)"))
    await fleet.start(connect_timeout=connect_timeout)
    progress("connected; devices serve predictions once the controller rolls a model out "
             + ("(Ctrl-C to stop)" if not duration else f"(for {duration:g} s, Ctrl-C to stop)"))
    workload = Workload(fleet, load_dataset(dataset), rate_per_device=rate)
    workload.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def serving() -> int:
        return sum(1 for a in fleet.agents if a.active is not None)

    async def report_progress() -> None:
        while True:
            await asyncio.sleep(every_s)
            progress(f"{workload.stats['predictions']:,} predictions, "
                     f"{workload.stats['refused_no_model']:,} refused (no model yet), "
                     f"{serving()}/{devices} devices with a model")

    reporter = asyncio.create_task(report_progress())
    try:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), duration or None)
    finally:
        reporter.cancel()
    await workload.stop()
    await fleet.stop(drain_timeout=10)
    return {"devices": devices, "predictions": workload.stats["predictions"],
            "refused_no_model": workload.stats["refused_no_model"],
            "devices_with_model": serving()}


def run_simulation(devices: int, broker: str, data_dir: Path, dataset: str, rate: float,
                   duration: float, trust_keys_from: Path | None = None, *,
                   as_json: bool = False, quiet: bool = False,
                   connect_timeout: float = 60.0, topic_root: str = ROOT) -> int:
    """``trust_keys_from``: a controller data directory or a PEM file whose manifest-signing
    keys the agents trust (None: development mode). Progress on stderr every few seconds
    (none with ``quiet``), the totals on stdout at the end (JSON with ``as_json``)."""
    from simulator.keys import KeysError, load_trusted_keys

    try:
        address = BrokerAddress.parse(broker)
        trusted = load_trusted_keys(trust_keys_from) if trust_keys_from else ()
        validate_topic_root(topic_root)
    except (ValueError, KeysError) as exc:
        click.echo(f"error: {one_line(exc)}", err=True)
        return ExitCode.USAGE
    try:
        totals = asyncio.run(_simulate(devices, address, data_dir, dataset, rate, duration,
                                       trusted, Progress(quiet),
                                       connect_timeout=connect_timeout,
                                       topic_root=topic_root))
    except FleetError as exc:
        click.echo(f"error: {one_line(exc)}; set --broker", err=True)
        return ExitCode.ERROR
    emit(totals, as_json, f"stopped: {totals['predictions']} predictions, "
                          f"{totals['refused_no_model']} refused (no model yet), "
                          f"{totals['devices_with_model']}/{devices} devices had a model")
    return ExitCode.OK


# -- scenarios: `edgewise simulate --scenario FILE` ----------------------------------------

def run_scenario_command(path: Path, data_dir: Path, *, broker: str | None = None,
                         controller_url: str | None = None, report_json: Path | None = None,
                         keep: bool = False, as_json: bool = False, quiet: bool = False) -> int:
    """Run a scenario file and print its report (JSON with ``as_json``; progress on stderr
    unless ``quiet``). Exit code 0 when every check passed, 8 when one failed, 2 when the file
    is wrong, 1 when the scenario cannot run. Without ``broker``/``controller_url`` it starts a
    Mosquitto and a controller of its own under ``data_dir`` (removed afterwards unless
    ``keep``)."""
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
        click.echo(f"error: {one_line(exc)}", err=True)
        return ExitCode.USAGE
    if (address is None) != (controller_url is None):
        click.echo("error: give both an external broker and controller, or neither (the "
                   "scenario then starts its own)", err=True)
        return ExitCode.USAGE
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
    progress = Progress(quiet)
    progress(f"scenario {scenario.name!r}: {scenario.device_count} devices, "
             f"{len(scenario.events)} events over {scenario.duration_s:g} s "
             f"(agent log: {workdir / 'agents.log'})")
    try:
        report = run_scenario_sync(scenario, RunOptions(
            workdir=workdir, broker=address, controller_url=controller_url,
            progress=progress))
    except ScenarioError as exc:
        click.echo(f"error: {one_line(exc)}", err=True)
        return ExitCode.ERROR
    finally:
        edgewise_log.removeHandler(handler)
        edgewise_log.propagate = True
        handler.close()
    emit(report.to_dict(), as_json, lambda _: "\n" + render(report))
    if report_json is not None:
        report_json.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        progress(f"report: {report_json}")
    if not keep:
        shutil.rmtree(workdir / "devices", ignore_errors=True)
    return ExitCode.OK if report.passed else ExitCode.CHECKS_FAILED
