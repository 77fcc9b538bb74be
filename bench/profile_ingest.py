"""Where the controller's CPU per telemetry message goes: the real controller in this process.

Usage: python bench/profile_ingest.py [--devices 500] [--messages 6000] [--predictions 1]
                                      [--rate 0] [--profile DIR]

One Mosquitto on a free port, one :class:`controller.app.service.Controller` (SQLite file,
every background loop as served, no REST) in this process, and a generator in a child process
(so its CPU is not counted): ``--devices`` virtual devices (:mod:`simulator.telemetry_load`'s
prediction records and wire format, an epoch and gap-free seqs each). The generator first sends
one message per device and waits for the acks (first contact: device rows, sampling orders),
then ``--messages`` more, spread over the devices, as fast as it can (``--rate 0``) or at
``--rate`` messages/s, and waits until every one is acknowledged.

Measured over that second part: the controller process's CPU (all threads, ``/proc``) per
message (also above the idle CPU measured just before, with nothing sent), the messages per
group commit, and the rows stored (each exactly once). With
``--profile DIR``, cProfile runs on the event loop's thread and on the storage worker; the
top functions go to ``DIR/loop.txt`` and ``DIR/worker.txt`` (profiling inflates the CPU
figures: measure without it).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

from bench.common import load_average  # noqa: E402
from edgewise_mqtt.link import BrokerAddress, MqttLink  # noqa: E402
from edgewise_wire import Ack, TelemetryBatch, decode, encode  # noqa: E402
from edgewise_wire.topics import (  # noqa: E402
    DeviceChannel,
    DeviceTopic,
    device_topic,
    device_wildcard,
    parse_topic,
)
from simulator.fleet import sample_process  # noqa: E402
from simulator.telemetry_load import LoadSpec, VirtualDevice, prediction_records  # noqa: E402

CONNECTIONS = 4


# -- the generator (child process) -----------------------------------------------------------

def _payloads(devices: int, messages: int, predictions: int,
              seed: int) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(topic, payload) of the first contact (one per device), then of the measured part."""
    rng = random.Random(seed)
    spec = LoadSpec(devices=devices)
    fleet = [VirtualDevice(f"prof-{seed}-{i:05d}", rng.randrange(1, 2**31), f"b{seed}{i}", 0.0)
             for i in range(devices)]

    def one(d: VirtualDevice) -> tuple[str, bytes]:
        records = prediction_records(d, predictions, time.time(), spec, rng)
        for k, r in enumerate(records):
            r["seq"] = d.next_seq + k
        first, d.next_seq = d.next_seq, d.next_seq + len(records)
        batch = TelemetryBatch(first, d.next_seq - 1, records, epoch=d.epoch)
        return device_topic(d.device_id, DeviceChannel.TELEMETRY), encode(batch)

    return [one(d) for d in fleet], [one(fleet[i % devices]) for i in range(messages)]


async def _generate(args: argparse.Namespace) -> None:
    contact, measured = _payloads(args.devices, args.messages, args.predictions, args.seed)
    acked: set[tuple[str, int]] = set()
    duplicate_acks = 0
    done = asyncio.Event()
    expected = 0

    def on_ack(topic: str, payload: bytes) -> None:
        nonlocal duplicate_acks
        parsed = parse_topic(topic)
        if not isinstance(parsed, DeviceTopic):
            return
        key = (parsed.device_id, decode(payload, Ack).first_seq)
        if key in acked:
            duplicate_acks += 1
        acked.add(key)
        if len(acked) >= expected:
            done.set()

    broker = BrokerAddress("127.0.0.1", args.port)
    links = [MqttLink(f"ew-prof-gen-{k}-{args.seed}", broker, on_message=on_ack, max_inflight=0)
             for k in range(CONNECTIONS)]
    for link in links:
        await link.start()
    await links[0].subscribe_and_wait(device_wildcard(DeviceChannel.ACK))

    async def send(items: list[tuple[str, bytes]], rate: float) -> float:
        nonlocal expected
        done.clear()
        expected += len(items)
        t0 = time.monotonic()
        for i, (topic, payload) in enumerate(items):
            links[i % CONNECTIONS].publish(topic, payload, qos=1)
            if rate:
                delay = t0 + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 200 == 199:
                await asyncio.sleep(0)  # let the links write
        await asyncio.wait_for(done.wait(), 600)
        return time.monotonic() - t0

    await send(contact, 0.0)
    print("contact-done", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    print("measure-start", flush=True)
    wall = await send(measured, args.rate)
    print(json.dumps({"wall_s": wall, "acks": len(acked), "duplicate_acks": duplicate_acks}),
          flush=True)
    for link in links:
        await link.stop()


# -- the controller (this process) -----------------------------------------------------------

def _top(profile: cProfile.Profile, path: Path, lines: int = 45) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)
    path.write_text(out.getvalue())


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    from controller.app.service import Controller
    from controller.config import ControllerConfig
    from simulator.broker import mosquitto_broker

    with tempfile.TemporaryDirectory(prefix="ew-prof-ingest-") as tmp:
        broker = mosquitto_broker(Path(tmp) / "broker")
        broker.start()
        controller = Controller(ControllerConfig(data_dir=Path(tmp) / "ctl",
                                                 broker=broker.address))
        await controller.start()
        loop_prof = worker_prof = None
        if args.profile:
            # CPU time of the profiled thread, not wall time: waits (the GIL, I/O) are not costs
            worker_prof = cProfile.Profile(time.thread_time)
            loop_prof = cProfile.Profile(time.thread_time)
        store = controller.bridge._store
        worker_cpu = [0.0]  # CPU of the storage worker's calls (the rest is the event loop's)

        def timed_store(items: Any) -> Any:
            t = time.thread_time()
            try:
                if worker_prof is not None:
                    return worker_prof.runcall(store, items)
                return store(items)
            finally:
                worker_cpu[0] += time.thread_time() - t

        controller.bridge._store = timed_store  # type: ignore[method-assign]
        gen = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--generate", "--port", str(broker.port),
            "--devices", str(args.devices), "--messages", str(args.messages),
            "--predictions", str(args.predictions), "--rate", str(args.rate),
            "--seed", str(args.seed),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert gen.stdout is not None and gen.stdin is not None
        try:
            assert (await gen.stdout.readline()).strip() == b"contact-done"
            await asyncio.sleep(2.0)  # the sampling orders of the new devices go out
            idle0, idle_t0 = sample_process().cpu_s, time.monotonic()
            await asyncio.sleep(args.idle_seconds)  # the controller's background loops alone
            idle_cores = (sample_process().cpu_s - idle0) / (time.monotonic() - idle_t0)
            stats0 = dict(controller.bridge.stats)
            gen.stdin.write(b"go\n")
            await gen.stdin.drain()
            assert (await gen.stdout.readline()).strip() == b"measure-start"
            cpu0, t0, w0 = sample_process().cpu_s, time.monotonic(), worker_cpu[0]
            if loop_prof is not None:
                loop_prof.enable()
            line = await gen.stdout.readline()
            if loop_prof is not None:
                loop_prof.disable()
            cpu1, t1, w1 = sample_process().cpu_s, time.monotonic(), worker_cpu[0]
            generated = json.loads(line)
            await gen.wait()
        finally:
            if gen.returncode is None:
                gen.kill()
                await gen.wait()
        stats = {k: v - stats0.get(k, 0) for k, v in controller.bridge.stats.items()}
        stored = controller.telemetry.count()
        await controller.stop()
        broker.stop()
        if args.profile:
            out = Path(args.profile)
            out.mkdir(parents=True, exist_ok=True)
            assert loop_prof is not None and worker_prof is not None
            _top(loop_prof, out / "loop.txt")
            _top(worker_prof, out / "worker.txt")
    messages = args.messages
    cpu = cpu1 - cpu0
    return {
        "devices": args.devices, "messages": messages, "predictions": args.predictions,
        "rate": args.rate or "burst", "wall_s": round(t1 - t0, 2),
        "messages_per_s": round(messages / (t1 - t0), 1),
        "controller_cpu_s": round(cpu, 2), "cores": round(cpu / (t1 - t0), 3),
        "idle_cores": round(idle_cores, 4),
        "ms_cpu_per_message": round(1000 * cpu / messages, 3),
        "ms_cpu_per_message_above_idle": round(
            1000 * (cpu - idle_cores * (t1 - t0)) / messages, 3),
        "ms_storage_worker_per_message": round(1000 * (w1 - w0) / messages, 3),
        "messages_per_group": round(stats.get("batches", 0) / max(stats.get("groups", 1), 1), 1),
        "records_stored_total": stored, "acks": generated["acks"],
        "duplicate_acks": generated["duplicate_acks"], "bridge_stats": stats,
        "profiled": bool(args.profile), "load_average": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--predictions", type=int, default=1, help="per message")
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s (0: a burst)")
    parser.add_argument("--profile", help="directory for the cProfile summaries")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=random.randrange(1, 10**6))
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        asyncio.run(_generate(args))
        return
    print(json.dumps(asyncio.run(_measure(args)), indent=1))


if __name__ == "__main__":
    main()
