"""One artifact to N simulated devices: from an S3-compatible object store against MQTT chunks.

Usage: python bench/bench_objstore.py [--quick] [--devices 10,100,1000] [--size-mb 10]

Both paths run in the same run, on this machine, with the project's own transfer code on both
ends, and every device verifies every chunk against the signed chunk hashes and writes it at its
offset into its own partial file (deleted when the device is done), as the agent
does (``edge_agent.download.ArtifactDownload``). What differs is where the bytes come from:

* **store** (the new path): the controller's ``ObjectArtifactStore`` uploads the artifact to the
  object store and presigns its URL; each device is a thread running the agent's
  ``edge_agent.http_fetch.fetch_over_http`` (range requests, standard library ``http.client``).
  The store is moto's standalone S3 server (``moto_server``, a separate process): MinIO's server
  is not installable here (neither PyPI, Debian nor npm ship it). moto is a Python mock, single
  process, so its throughput is a floor, far below MinIO's or S3's;
* **mqtt** (the baseline, the default path): a Mosquitto, and the controller's real
  ``ChunkServer`` on an ``MqttLink`` reading the same artifact from an ``ArtifactStore``; the
  devices are ``MqttLink`` clients on one event loop (as the simulator runs them) subscribed to
  the artifact's chunk topic; each device's request for all chunks is handed to the chunk server
  (the requests coalesce into one broadcast, which Mosquitto fans out).

Measured per path and N: wall time from the first request to the last device holding the whole,
verified artifact; CPU seconds of the server process (moto or Mosquitto) and of this process
(the devices, plus the chunk server for MQTT); bytes the controller itself sent. Levels stop
escalating when one takes longer than ``--level-budget-s``; larger N are then extrapolated
linearly from the two largest measured levels, and marked as such. The activation on a device
(load, smoke test, switch) is the same whichever source the bytes came from and is not part of
this benchmark (bench_update.py measures it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

from bench.common import fmt, machine, machine_line, measurement, publish, table  # noqa: E402
from controller.models.artifact_store import ArtifactStore  # noqa: E402
from controller.models.object_store import ObjectArtifactStore, StoreLocation  # noqa: E402
from edge_agent.download import ArtifactDownload  # noqa: E402
from edge_agent.http_fetch import HttpOutcome, HttpStats, fetch_over_http  # noqa: E402
from edgewise_mqtt.link import MqttLink  # noqa: E402
from edgewise_wire.manifest import DEFAULT_CHUNK_SIZE, ArtifactRef  # noqa: E402
from edgewise_wire.request_messages import ArtifactRequest  # noqa: E402
from edgewise_wire.topics import chunk_wildcard, parse_topic  # noqa: E402
from simulator.broker import free_port, mosquitto_broker, wait_for_port  # noqa: E402
from simulator.fleet import sample_process  # noqa: E402

MIB = 1024 * 1024
BUCKET = "bench-artifacts"
KEY_ID, SECRET = "bench", "bench-secret"


@dataclass
class Level:
    path: str
    devices: int
    wall_s: float
    server_cpu_s: float
    bench_cpu_s: float
    controller_bytes: int
    device_bytes: int
    failures: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- the object store -------------------------------------------------------------------------


@contextmanager
def moto_process(workdir: Path) -> Iterator[tuple[int, int]]:
    """``moto_server`` on a free port: (port, pid)."""
    port = free_port()
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    log = (workdir / "moto.log").open("ab")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_for_port("127.0.0.1", port, 30):
            raise RuntimeError(f"moto_server did not open port {port}; see {workdir}/moto.log")
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def s3_client(port: int) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def store_level(n: int, url: str, ref: ArtifactRef, server_pid: int, parts: Path) -> Level:
    outcomes: list[HttpOutcome] = []
    stats = [HttpStats() for _ in range(n)]
    lock = threading.Lock()
    start = threading.Event()

    def device(i: int) -> None:
        download = ArtifactDownload(ref, parts / f"s{n}-{i}.part")
        start.wait()
        outcome = fetch_over_http(download, url, cancel=threading.Event(), stats=stats[i])
        if not download.complete:
            outcome = HttpOutcome.UNREACHABLE
        download.discard()  # the whole-file check after it is the same for both paths
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=device, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    s0, b0 = sample_process(server_pid), sample_process()
    t0 = time.monotonic()
    start.set()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    s1, b1 = sample_process(server_pid), sample_process()
    return Level("store", n, wall, s1.cpu_s - s0.cpu_s, b1.cpu_s - b0.cpu_s, 0,
                 sum(s.bytes_received for s in stats),
                 sum(o is not HttpOutcome.COMPLETE for o in outcomes))


# -- MQTT chunks --------------------------------------------------------------------------------


async def mqtt_level(n: int, ref: ArtifactRef, cache: ArtifactStore, broker: Any,
                     broker_pid: int, parts: Path) -> Level:
    from controller.fleet.chunk_server import ChunkServer

    controller = MqttLink(f"bench-ctl-{os.getpid()}-{n}", broker, on_message=lambda t, p: None,
                          max_inflight=1000)
    await controller.start()
    server = ChunkServer(controller, cache.open_range, lambda sha: ref)
    server.offer(ref)
    done = asyncio.Event()
    remaining = [n]
    received = [0]
    downloads: list[ArtifactDownload] = []
    links: list[MqttLink] = []

    def handler(download: ArtifactDownload) -> Any:
        def on_message(topic: str, payload: bytes) -> None:
            parsed = parse_topic(topic)
            index = getattr(parsed, "index", None)
            if index is None or download.complete:
                return
            received[0] += len(payload)
            if download.accept(index, payload) and download.complete:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()
        return on_message

    for i in range(n):
        download = ArtifactDownload(ref, parts / f"m{n}-{i}.part")
        link = MqttLink(f"bench-dev-{os.getpid()}-{n}-{i}", broker, on_message=handler(download),
                        max_inflight=100)
        downloads.append(download)
        links.append(link)
    await asyncio.gather(*(link.start() for link in links))
    await asyncio.gather(*(link.subscribe_and_wait(chunk_wildcard(ref.sha256)) for link in links))
    s0, b0 = sample_process(broker_pid), sample_process()
    t0 = time.monotonic()
    for i in range(n):  # each device asks for every chunk, as the agent does at the start
        server.handle_request(f"dev-{i}", ArtifactRequest(ref.sha256, ((0, ref.chunk_count),)))
    failures = 0
    try:
        await asyncio.wait_for(done.wait(), timeout=600)
    except TimeoutError:
        failures = remaining[0]
    wall = time.monotonic() - t0
    s1, b1 = sample_process(broker_pid), sample_process()
    sent = server.stats["bytes_sent"]
    await server.stop()
    await asyncio.gather(*(link.stop() for link in links), controller.stop())
    for download in downloads:
        download.discard()
    return Level("mqtt", n, wall, s1.cpu_s - s0.cpu_s, b1.cpu_s - b0.cpu_s, sent, received[0],
                 failures)


# -- the run --------------------------------------------------------------------------------------


def run(levels: list[int], size: int, budget_s: float, workdir: Path) -> dict[str, Any]:
    data = os.urandom(size)
    ref = ArtifactRef.describe(data, DEFAULT_CHUNK_SIZE)
    # on disk, not tmpfs: a thousand partial files of the artifact in flight would pin gigabytes;
    # each is deleted when its device is done, before most of it is written back
    parts = Path(tempfile.mkdtemp(prefix="ew-bench-objstore-parts-"))
    results: list[Level] = []
    try:
        with moto_process(workdir) as (port, moto_pid):
            client = s3_client(port)
            client.create_bucket(Bucket=BUCKET)
            store = ObjectArtifactStore(StoreLocation.parse(f"s3://{BUCKET}/bench"), client,
                                        ArtifactStore(workdir / "cache"), presign_s=3600)
            store.put(data)
            url = store.url_for(ref.sha256)
            assert url is not None
            broker = mosquitto_broker(workdir / "broker")
            broker.start()
            assert broker.proc is not None
            try:
                over = {"store": False, "mqtt": False}
                for n in levels:
                    for path in ("mqtt", "store"):
                        if over[path]:
                            continue
                        if path == "store":
                            level = store_level(n, url, ref, moto_pid, parts)
                        else:
                            level = asyncio.run(mqtt_level(n, ref, store.cache, broker.address,
                                                           broker.proc.pid, parts))
                        results.append(level)
                        print(f"{path:5} N={n:5}: {level.wall_s:7.2f} s wall, server CPU "
                              f"{level.server_cpu_s:6.2f} s, devices CPU {level.bench_cpu_s:6.2f}"
                              f" s, failures {level.failures}", flush=True)
                        if level.wall_s > budget_s:
                            over[path] = True
            finally:
                broker.stop()
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return summarise(results, levels, size)


def extrapolate(points: list[Level], n: int) -> float | None:
    """Wall time at ``n`` devices, linear through the two largest measured levels."""
    if len(points) < 2:
        return None
    a, b = sorted(points, key=lambda p: p.devices)[-2:]
    slope = (b.wall_s - a.wall_s) / (b.devices - a.devices)
    return b.wall_s + slope * (n - b.devices)


def summarise(results: list[Level], levels: list[int], size: int) -> dict[str, Any]:
    rows = []
    for n in levels:
        entry: dict[str, Any] = {"devices": n}
        for path in ("store", "mqtt"):
            measured = [r for r in results if r.path == path and r.devices == n]
            if measured:
                entry[path] = {**measured[0].as_dict(), "extrapolated": False}
            else:
                points = [r for r in results if r.path == path]
                wall = extrapolate(points, n)
                entry[path] = {"wall_s": wall, "extrapolated": True} if wall is not None else None
        store, mqtt = entry.get("store"), entry.get("mqtt")
        if store and mqtt and store.get("wall_s") and mqtt.get("wall_s"):
            entry["store_vs_mqtt_wall"] = store["wall_s"] / mqtt["wall_s"]
        rows.append(entry)
    return measurement(machine(), artifact_bytes=size, levels=rows)


def _markdown(data: dict[str, Any]) -> str:
    mib = data["artifact_bytes"] / MIB

    def cell(x: dict[str, Any] | None, key: str, digits: int = 2) -> str:
        if not x or x.get(key) is None:
            return "-"
        text = fmt(x[key], digits)
        return f"~{text} (extrapolated)" if x.get("extrapolated") else text

    rows = []
    for level in data["levels"]:
        s, m = level.get("store"), level.get("mqtt")
        rows.append([level["devices"], cell(s, "wall_s"), cell(m, "wall_s"),
                     fmt(level.get("store_vs_mqtt_wall"), 2),
                     cell(s, "server_cpu_s"), cell(m, "server_cpu_s"),
                     cell(s, "bench_cpu_s"), cell(m, "bench_cpu_s"),
                     f"{(m or {}).get('controller_bytes', 0) / MIB:.0f}" if m and
                     not m.get("extrapolated") else "-"])
    return f"""## Artifacts from the object store against MQTT chunks (`bench/bench_objstore.py`)

{machine_line(data["machine"])}; measured {data["measured_at"]}, load average after
{data["load_average_after"]}.

A {mib:.0f} MiB artifact (64 KiB chunks) to N simulated devices, both paths in the same run:
**store**: the controller's `ObjectArtifactStore` uploads it to an S3 API (moto's server in its
own process: MinIO's server binary is on neither PyPI, Debian nor npm, so it cannot be installed
here) and presigns its URL; each device is a thread running the agent's own
`fetch_over_http` (range requests). **mqtt** (baseline): the controller's `ChunkServer` over a
Mosquitto, devices are `MqttLink` clients on one loop subscribed to the chunk topic. Every
device verifies each chunk against its hash and writes it to its own partial file (on disk,
deleted when the device is done).
Server CPU: moto, or Mosquitto; devices CPU: this process (for mqtt it includes the chunk
server). "controller MiB": what the controller itself sent (0 for the store: devices fetch
from the store). Levels whose path took over the budget were not run past it; their figures
are extrapolated linearly from the two largest measured levels and marked so.

{table(["devices", "store wall s", "mqtt wall s", "store/mqtt", "store server CPU s",
        "mqtt broker CPU s", "store devices CPU s", "mqtt devices CPU s", "controller MiB (mqtt)"],
       rows)}

{_reading(data)}
"""


def _reading(data: dict[str, Any]) -> str:
    measured = [lv for lv in data["levels"]
                if all(lv.get(p) and not lv[p].get("extrapolated") for p in ("store", "mqtt"))]
    ratios = ", ".join(f"{fmt(lv.get('store_vs_mqtt_wall'), 2)} at {lv['devices']}"
                       for lv in measured)
    return f"""Reading it: the store path took {ratios} times the MQTT path's wall time (a ratio
below 1: the store was faster). Over MQTT the controller sends the artifact once and Mosquitto
fans it out, so the controller's egress does not grow with N (the last column); from the store
every device pulls its own copy, so the store's egress is N copies and the store's throughput
sets the pace. At 1000 devices the store path's devices CPU includes a thousand concurrent
threads (a real fleet has one process per device). moto is a single-process Python mock,
a floor for a store's throughput; a real S3 or MinIO scales out. What the store path buys
beyond speed is that no controller replica and no broker carries the bytes, and replicas need
no shared file system. The machine is shared (see the load average above): the absolute
figures are noisy, the same-run ratio less so."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="10,100,1000",
                        help="comma-separated device counts, smallest first")
    parser.add_argument("--size-mb", type=float, default=10.0)
    parser.add_argument("--level-budget-s", type=float, default=120.0,
                        help="stop escalating a path after a level took longer than this")
    parser.add_argument("--quick", action="store_true", help="10 and 50 devices, 10 MiB")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    levels = [10, 50] if args.quick else [int(x) for x in args.devices.split(",")]
    if 1000 not in levels and not args.quick:
        levels.append(1000)  # the target: extrapolated if not measured
    with tempfile.TemporaryDirectory(prefix="ew-bench-objstore-") as tmp:
        data = run(levels, int(args.size_mb * MIB), args.level_budget_s, Path(tmp))
    publish("objstore", data, _markdown, doc=not args.no_doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
