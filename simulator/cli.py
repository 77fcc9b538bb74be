"""`edgewise simulate`: a fleet of real agents against a broker, until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click

from edge_agent.mqtt_link import BrokerAddress
from simulator.fleet import SimulatedFleet
from simulator.workload import Workload, load_dataset


async def _simulate(devices: int, broker: BrokerAddress, data_dir: Path, dataset: str,
                    rate: float, duration: float) -> None:
    fleet = SimulatedFleet(broker, devices, data_dir)
    click.echo(f"connecting {devices} devices to {broker} ...")
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
                   duration: float) -> int:
    try:
        address = BrokerAddress.parse(broker)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    asyncio.run(_simulate(devices, address, data_dir, dataset, rate, duration))
    return 0
