"""A simulated fleet in a process of its own, so that a test can SIGKILL it and start it again
on the same data directories (the agents resume from their outboxes and active models).

    python -m simulator.fleet_process --devices 2 --prefix nl --broker 127.0.0.1:1883 \\
        --data-dir /tmp/fleet --rate 20 --metrics-window 1

``--shift "0,1:petal length (cm):2"`` shifts a feature of devices 0 and 1 by two standard
deviations (covariate shift / sensor offset); ``--concept 2,3`` makes the labels fed back to
devices 2 and 3 disagree with the model (concept change). It prints ``ready <device ids>`` once
every agent is connected. SIGTERM (or SIGINT) stops it
cleanly: the workload stops, the agents close their monitoring windows into the outbox and wait
up to ``--drain-timeout`` seconds for the controller to acknowledge everything. SIGKILL stops it
as a power cut would: whatever was only in memory (at most one flush interval of records and the
open monitoring window) is gone; what was committed to the outbox is sent after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import click

from edgewise_mqtt.link import BrokerAddress
from simulator.fleet import SimulatedFleet
from simulator.keys import KeysError, load_trusted_keys
from simulator.workload import DATASETS, Workload, load_dataset


async def run_fleet(*, devices: int, prefix: str, broker: BrokerAddress, data_dir: Path,
                    dataset: str, rate: float, feedback_delay: float, metrics_window: float,
                    ack_timeout: float, outbox_max: int, drain_timeout: float,
                    seed: int, shifts: tuple[str, ...] = (), concept: str | None = None,
                    trusted_keys: tuple[str, ...] = ()) -> int:
    parsed = [parse_shift(spec) for spec in shifts]
    concept_devices = _indexes(concept) if concept else []
    for i in [i for indexes, _, _ in parsed for i in indexes] + concept_devices:
        if not 0 <= i < devices:
            raise click.BadParameter(f"device index {i} is not within 0..{devices - 1}")
    fleet = SimulatedFleet(broker, devices, data_dir, prefix=prefix,
                           metrics_window_s=metrics_window, ack_timeout_s=ack_timeout,
                           outbox_max_records=outbox_max, trusted_keys=trusted_keys)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await fleet.start()
    print("ready " + " ".join(a.device_id for a in fleet.agents), flush=True)
    workload = Workload(fleet, load_dataset(dataset), rate_per_device=rate,
                        feedback_delay_s=feedback_delay, seed=seed)
    try:
        for indexes, feature, sd in parsed:
            workload.shift_features([fleet.agents[i].device_id for i in indexes], [feature],
                                    sd=sd)
        if concept_devices:
            workload.change_concept([fleet.agents[i].device_id for i in concept_devices])
    except ValueError as exc:  # an unknown feature name, say
        await fleet.stop()
        raise click.BadParameter(str(exc)) from None
    workload.start()
    await stop.wait()
    await workload.stop()
    await fleet.stop(drain_timeout=drain_timeout)
    pending = sum((a.status()["outbox_pending"] or 0) for a in fleet.agents
                  if a.outbox is not None)
    print(f"stopped: {workload.stats['predictions']} predictions, "
          f"{workload.stats['feedback']} labels, {pending} records still pending", flush=True)
    return 0


def _indexes(text: str) -> list[int]:
    try:
        return [int(i) for i in text.split(",") if i.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected device indexes like 0,1,2") from None


def parse_shift(spec: str) -> tuple[list[int], int | str, float]:
    """``"0,1:petal length (cm):2.0"`` -> ([0, 1], "petal length (cm)", 2.0); a feature may be
    given by index too (``"0:2:1.5"``)."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise click.BadParameter(f"--shift {spec!r}: expected DEVICES:FEATURE:SD, "
                                 "e.g. 0,1:petal length (cm):2")
    try:
        sd = float(parts[2])
    except ValueError:
        raise click.BadParameter(f"--shift {spec!r}: SD must be a number") from None
    feature: int | str = int(parts[1]) if parts[1].isdigit() else parts[1]
    return _indexes(parts[0]), feature, sd


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--devices", type=click.IntRange(1, 5000), default=2, show_default=True)
@click.option("--prefix", default="proc", show_default=True, help="Device ids: PREFIX-0000, ...")
@click.option("--broker", default="127.0.0.1:1883", show_default=True, help="MQTT HOST:PORT.")
@click.option("--data-dir", type=click.Path(path_type=Path), required=True,
              help="One sub-directory per device; reuse it to resume after a kill.")
@click.option("--dataset", type=click.Choice(DATASETS), default="iris", show_default=True)
@click.option("--rate", type=float, default=5.0, show_default=True,
              help="Predictions per second per device (once a model is active).")
@click.option("--feedback-delay", type=float, default=0.3, show_default=True)
@click.option("--metrics-window", type=float, default=60.0, show_default=True,
              help="Seconds per monitoring window.")
@click.option("--ack-timeout", type=float, default=10.0, show_default=True,
              help="Seconds before unacknowledged telemetry is sent again.")
@click.option("--outbox-max", type=click.IntRange(1), default=200_000, show_default=True)
@click.option("--drain-timeout", type=float, default=30.0, show_default=True,
              help="On SIGTERM, how long to wait for every record to be acknowledged.")
@click.option("--seed", type=int, default=0)
@click.option("--shift", "shifts", multiple=True, metavar="DEVICES:FEATURE:SD",
              help="Shift a feature on some devices, e.g. '0,1:petal length (cm):2' (repeatable).")
@click.option("--concept", metavar="DEVICES",
              help="Devices (indexes, e.g. 2,3) whose fed-back labels disagree with the model.")
@click.option("--trust-keys-from", "trust_keys_from", type=click.Path(path_type=Path, exists=True),
              help="Trust the manifest-signing keys of this controller data directory (or PEM "
                   "file): the agents then run only signed models.")
def main(devices: int, prefix: str, broker: str, data_dir: Path, dataset: str, rate: float,
         feedback_delay: float, metrics_window: float, ack_timeout: float, outbox_max: int,
         drain_timeout: float, seed: int, shifts: tuple[str, ...], concept: str | None,
         trust_keys_from: Path | None) -> None:
    """Run a simulated fleet until SIGTERM; safe to SIGKILL and start again on the same dir.

    Example: python -m simulator.fleet_process --devices 3 --data-dir /tmp/f --rate 20
    """
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        address = BrokerAddress.parse(broker)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--broker") from None
    try:
        trusted = load_trusted_keys(trust_keys_from) if trust_keys_from else ()
    except KeysError as exc:
        raise click.BadParameter(str(exc), param_hint="--trust-keys-from") from None
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(run_fleet(
            devices=devices, prefix=prefix, broker=address, data_dir=data_dir, dataset=dataset,
            rate=rate, feedback_delay=feedback_delay, metrics_window=metrics_window,
            ack_timeout=ack_timeout, outbox_max=outbox_max, drain_timeout=drain_timeout,
            seed=seed, shifts=shifts, concept=concept, trusted_keys=trusted)))


if __name__ == "__main__":
    main()
