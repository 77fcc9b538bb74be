"""Update time for one device against a raw MQTT transfer of the same bytes.

Usage: python bench/bench_update.py [--quick] [--sizes 1,10,50] [--repeats N]

The real path, on this machine: a Mosquitto and an `edgewise controller serve` process (SQLite)
started here, one `edgewise-agent` daemon process (development mode: no trusted keys) on a data
directory on disk. For each artifact size (valid ONNX MLPs of about 1, 10 and 50 MiB, converted
by the project's ONNX converter: real smoke tests and chunk hashes, see bench/onnx_mlp.py) the
model is pushed to the registry, then deployed to the device by ``POST /deployments``. A plain
MQTT observer subscribed to the device's ``desired`` and ``reported`` topics timestamps:

* ``desired``: the desired state for this deployment arriving (the clock starts);
* each update state the agent reports (downloading, verifying, staged, activating, ...);
* ``active``: the agent reporting the new version active (the clock stops).

Every measured update replaces a running model (a warm-up update runs first), and every artifact
is new to the device (one seed per repeat), so nothing is served from the agent's slots.

Baseline, same run, same broker: the same artifact bytes from a plain paho publisher process to
one plain paho subscriber, in messages of the manifest's chunk size at QoS 1, until the last byte
arrived; both pipelined (as many in flight as paho allows) and one PUBACK at a time (how the
controller's chunk server paces itself). Results: bench/results/update.json and a section of
docs/benchmarks.md.

One file on purpose, past 400 lines: a benchmark's workload, its same-run baseline and its report
stay together so the script reads and runs alone (shared plumbing is in ``bench/common.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.common import (  # noqa: E402
    CACHE_DIR,
    MIB,
    REPO_ROOT,
    SizedModel,
    _mlp_layers,  # noqa: E402
    fmt,
    machine,
    machine_line,
    measurement,
    publish,
    stack,
    table,
)
from bench.onnx_mlp import N_CLASSES, N_FEATURES, onnx_mlp_model  # noqa: E402
from bench.raw_mqtt import raw_fanout  # noqa: E402
from controller.cli.client import ControllerClient  # noqa: E402
from edgewise_wire.topics import DeviceChannel, device_topic  # noqa: E402
from simulator.broker import BrokerProcess  # noqa: E402
from simulator.demo import start_controller, stop_process  # noqa: E402
from simulator.fleet import sample_process  # noqa: E402

DEVICE = "bench-update-01"
MODEL = "bench-update"
WARMUP_SEED = 1000
MODELS_DESCRIPTION = ("float32 ONNX MLPs, 64 inputs, two ReLU hidden layers sized to the "
                      "artifact, 10 logits, random He weights, built with onnx.helper and "
                      "converted by `converters.convert_one(kind='onnx')` (parity, smoke tests, "
                      "chunk hashes in the manifest)")
# the states an update passes through, in order (old and new agents report a subset of these)
PHASES = ("downloading", "verifying", "staged", "activating", "probation", "active")

# (perf_counter, wall clock, "desired" | "reported", message) as the observer received it
Event = tuple[float, float, str, dict[str, Any]]


class UpdateFailed(RuntimeError):
    """The agent reported the update failed, or did not finish in time."""


class StateObserver:
    """A plain paho client (its own network thread) that timestamps every desired state and
    reported state of one device as it arrives from the broker."""

    def __init__(self, host: str, port: int, device_id: str) -> None:
        self._topics = {device_topic(device_id, DeviceChannel.DESIRED): "desired",
                        device_topic(device_id, DeviceChannel.REPORTED): "reported"}
        self._events: list[Event] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                        client_id=f"bench-observer-{device_id}", protocol=mqtt.MQTTv311)
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe([(t, 1) for t in self._topics])
        c.on_subscribe = lambda cl, ud, mid, rc, pr: self._subscribed.set()
        c.on_message = self._message
        c.connect(host, port, keepalive=60)
        c.loop_start()
        self._client = c
        if not self._subscribed.wait(10):
            self.close()
            raise RuntimeError("the observer could not subscribe to the device's topics")

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        at, wall = time.perf_counter(), time.time()
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return  # an empty retained message clears a topic; nothing to time
        with self._cond:
            self._events.append((at, wall, self._topics[msg.topic], body))
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self._events)

    def events(self, since: int = 0) -> list[Event]:
        with self._cond:
            return list(self._events[since:])

    def wait(self, found: Callable[[str, dict[str, Any]], bool], *, since: int, timeout: float,
             failed: Callable[[str, dict[str, Any]], bool] | None = None) -> Event:
        """The first event from index ``since`` on that ``found`` accepts; UpdateFailed on an
        event ``failed`` accepts first, or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        index = since
        with self._cond:
            while True:
                while index < len(self._events):
                    event = self._events[index]
                    index += 1
                    if found(event[2], event[3]):
                        return event
                    if failed is not None and failed(event[2], event[3]):
                        raise UpdateFailed(f"the agent reported: {event[3]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise UpdateFailed(f"no matching message in {timeout:g} s; last: "
                                       f"{self._events[-1][3] if self._events else None}")
                self._cond.wait(left)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _version_of(ref: Any) -> int | None:
    return ref.get("version") if isinstance(ref, dict) else None


def _update_of(version: int) -> Callable[[str, dict[str, Any]], bool]:
    """Reported states that belong to the update to ``version``."""
    return lambda channel, m: channel == "reported" and version in (
        _version_of(m.get("target")), _version_of(m.get("active")), _version_of(m.get("staged")))


@dataclass
class Agent:
    """An `edgewise-agent` daemon process and its files."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_agent(workdir: Path, host: str, port: int) -> Agent:
    config = workdir / "agent.toml"
    data_dir = workdir / "agent"
    config.write_text(f"""device_id = "{DEVICE}"
data_dir = "{data_dir}"
[broker]
host = "{host}"
port = {port}
""")
    log_path = workdir / "agent.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edge_agent.daemon", "--config",
                                 str(config)], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                stderr=log)
    return Agent(proc, data_dir, log_path)


@dataclass
class UpdateTiming:
    size_mib: float  # the size asked for
    bytes: int
    chunks: int
    version: int
    api_to_desired_s: float  # POST /deployments until the desired state arrived (observer)
    total_s: float  # desired state arrived until "active" with the new version arrived (observer)
    # the agent's own timestamp (``ts``) of its first report of each state, in seconds after the
    # desired state arrived at the observer: when the agent entered the state. The observer's
    # arrival times lag them by a few ms to tens of ms (the agent's loop, the broker), so the
    # split uses these; "first_chunk" is the first progress report with a chunk received.
    states_s: dict[str, float] = field(default_factory=dict)
    agent_cpu_s: float = 0.0

    def phase(self, start: str, *ends: str) -> float | None:
        """Seconds from the first report of ``start`` to the first report of the earliest of
        ``ends`` that was reported (None when either was not reported)."""
        t0 = self.states_s.get(start)
        t1 = min((self.states_s[e] for e in ends if e in self.states_s), default=None)
        return None if t0 is None or t1 is None else t1 - t0

    def split(self) -> dict[str, float | None]:
        return {
            # desired state checked and journalled: from the observer's clock to the agent's
            "accept_s": self.states_s.get("downloading"),
            "first_chunk_s": self.phase("downloading", "first_chunk"),
            "transfer_s": self.phase("downloading", "verifying", "staged", "activating"),
            "verify_s": self.phase("verifying", "staged", "activating"),
            "load_smoke_s": self.phase("activating", "probation", "active"),
            "verify_load_smoke_s": self.phase("verifying", "probation", "active"),
        }


def measure_update(client: ControllerClient, observer: StateObserver, model: SizedModel,
                   size_mib: float, agent_pid: int, timeout: float) -> UpdateTiming:
    stored = client.push_version(model.manifest, model.artifact)
    version = int(stored["version"])
    since = observer.mark()
    cpu_before = sample_process(agent_pid).cpu_s
    t_api = time.perf_counter()
    deployment = client.deploy(MODEL, version, devices=[DEVICE])["deployment_id"]
    t_desired, wall_desired, _, _ = observer.wait(
        lambda ch, m: ch == "desired" and m.get("deployment_id") == deployment,
        since=since, timeout=30)
    t_active, _, _, _ = observer.wait(
        lambda ch, m: (ch == "reported" and m.get("state") == "active"
                       and _version_of(m.get("active")) == version),
        failed=lambda ch, m: (ch == "reported" and m.get("state") in ("failed", "rolled_back")
                              and _version_of(m.get("target")) == version),
        since=since, timeout=timeout)
    cpu = sample_process(agent_pid).cpu_s - cpu_before
    states: dict[str, float] = {}
    belongs = _update_of(version)
    for at, _, channel, message in observer.events(since):
        if not (t_desired <= at <= t_active and belongs(channel, message)):
            continue
        ts = float(message.get("ts", 0.0)) - wall_desired
        state = str(message.get("state"))
        states.setdefault(state, ts)
        progress = message.get("progress")
        if state == "downloading" and progress and progress[0] >= 1:
            states.setdefault("first_chunk", ts)
    return UpdateTiming(size_mib, model.size, model.manifest.artifact.chunk_count,
                        version, t_desired - t_api, t_active - t_desired, states, cpu)


def raw_baselines(host: str, port: int, models: dict[float, SizedModel], repeats: int,
                  workdir: Path) -> dict[float, dict[str, list[float]]]:
    """Raw transfer seconds of each size, pipelined and one PUBACK at a time."""
    out: dict[float, dict[str, list[float]]] = {}
    for size, model in models.items():
        path = workdir / f"raw-{size:g}.bin"
        path.write_bytes(model.artifact)
        out[size] = {"pipelined": [], "one_at_a_time": []}
        for _ in range(repeats):
            for key, sequential in (("pipelined", False), ("one_at_a_time", True)):
                result = asyncio.run(raw_fanout(
                    host, port, 1, model.size, model.manifest.artifact.chunk_size,
                    sequential=sequential, payload_file=path, timeout=120))
                out[size][key].append(result.seconds)
        path.unlink()
    return out


@contextlib.contextmanager
def _broker_and_controller(workdir: Path, broker: BrokerProcess | None
                           ) -> Iterator[tuple[BrokerProcess, str]]:
    """A controller process on ``broker``, or on a Mosquitto of its own when None."""
    if broker is None:
        with stack(workdir / "stack") as st:
            yield st.broker, st.url
        return
    proc, url = start_controller(workdir / "controller", broker)
    try:
        yield broker, url
    finally:
        stop_process(proc)


def run(sizes: list[float], repeats: int, workdir: Path, *, timeout: float = 180.0,
        say: Callable[[str], None] = print, broker: BrokerProcess | None = None,
        cache_dir: Path = CACHE_DIR) -> dict[str, Any]:
    """Every measurement of the benchmark, in ``workdir`` (a fresh directory). The controller
    and the agent use ``broker`` when given (the tests' Mosquitto), else a Mosquitto of their
    own; models are cached in ``cache_dir``."""
    say(f"building models (cached in {cache_dir})")
    warmup = onnx_mlp_model(1.0, WARMUP_SEED, name=MODEL, cache_dir=cache_dir)
    models = {(size, r): onnx_mlp_model(size, r, name=MODEL, cache_dir=cache_dir)
              for r in range(repeats) for size in sizes}
    timings: list[UpdateTiming] = []
    with _broker_and_controller(workdir, broker) as (mqtt_broker, url):
        host, port = mqtt_broker.host, mqtt_broker.port
        agent = start_agent(workdir, host, port)
        client = ControllerClient(url)
        observer = StateObserver(host, port, DEVICE)
        try:
            observer.wait(lambda ch, m: ch == "reported", since=0, timeout=30)
            deadline = time.monotonic() + 30
            while not any(d.get("device_id") == DEVICE for d in client.list_devices()):
                if time.monotonic() > deadline or agent.proc.poll() is not None:
                    raise RuntimeError(f"the agent did not register; see {agent.log_path}")
                time.sleep(0.1)
            say("warm-up update (not measured)")
            measure_update(client, observer, warmup, 1.0, agent.proc.pid, timeout)
            for r in range(repeats):
                for size in sizes:
                    # the agent reports download progress at most once a second: a pause
                    # lets the first chunk of each update be reported
                    time.sleep(1.1)
                    timing = measure_update(client, observer, models[(size, r)], size,
                                            agent.proc.pid, timeout)
                    timings.append(timing)
                    split = timing.split()
                    say(f"update {size:g} MiB (repeat {r + 1}/{repeats}): "
                        f"{timing.total_s:.2f} s total, transfer {fmt(split['transfer_s'])} s, "
                        f"verify+load+smoke {fmt(split['verify_load_smoke_s'])} s; states "
                        + ", ".join(f"{k} {v:.2f}" for k, v in timing.states_s.items()))
            say("raw MQTT baselines on the same broker")
            raw = raw_baselines(host, port, {s: models[(s, 0)] for s in sizes}, repeats, workdir)
        finally:
            observer.close()
            agent.stop()
            client.close()
    return _summarise(sizes, timings, raw, models, repeats)


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _summarise(sizes: list[float], timings: list[UpdateTiming],
               raw: dict[float, dict[str, list[float]]],
               models: dict[tuple[float, int], SizedModel], repeats: int) -> dict[str, Any]:
    rows = []
    for size in sizes:
        runs = [t for t in timings if t.size_mib == size]
        best = min(runs, key=lambda t: t.total_s)
        split = best.split()  # the phases of the best run, so that they add up to its total
        known = [split[k] for k in ("first_chunk_s", "transfer_s", "verify_s", "load_smoke_s")]
        stream = (split["transfer_s"] - split["first_chunk_s"]
                  if split["transfer_s"] is not None and split["first_chunk_s"] is not None
                  else None)
        other = (best.total_s - sum(v for v in known[1:] if v is not None)
                 if None not in known[1:] else None)
        raw_pipe, raw_seq = min(raw[size]["pipelined"]), min(raw[size]["one_at_a_time"])
        rows.append({
            "size_mib": size, "bytes": best.bytes, "chunks": best.chunks,
            "hidden_layers": "x".join(map(str, _mlp_layers(int(size * MIB), N_FEATURES,
                                                           N_CLASSES))),
            "chunk_bytes": models[(size, 0)].manifest.artifact.chunk_size,
            "update_total_s_best": round(best.total_s, 3),
            "update_total_s_median": round(statistics.median(t.total_s for t in runs), 3),
            "first_chunk_s": _r(split["first_chunk_s"]),
            "chunk_stream_s": _r(stream),
            "transfer_s": _r(split["transfer_s"]),
            "verify_s": _r(split["verify_s"]),
            "load_smoke_s": _r(split["load_smoke_s"]),
            "verify_load_smoke_s": _r(split["verify_load_smoke_s"]),
            "other_s": _r(other),
            "api_to_desired_s": round(best.api_to_desired_s, 4),
            "agent_cpu_s": round(best.agent_cpu_s, 2),
            "raw_pipelined_s": round(raw_pipe, 3),
            "raw_one_at_a_time_s": round(raw_seq, 3),
            "ratio_update_vs_raw": round(best.total_s / raw_pipe, 2),
            "ratio_stream_vs_raw_one_at_a_time": (
                round(stream / raw_seq, 2) if stream is not None else None),
            "runs": [{"version": t.version, "total_s": round(t.total_s, 3),
                      "api_to_desired_s": round(t.api_to_desired_s, 4),
                      "agent_cpu_s": round(t.agent_cpu_s, 2),
                      "states_s": {k: round(v, 4) for k, v in t.states_s.items()},
                      **{k: _r(v) for k, v in t.split().items()}} for t in runs],
            "raw_runs": {k: [round(v, 4) for v in vs] for k, vs in raw[size].items()},
        })
    return {"model_description": MODELS_DESCRIPTION, "repeats": repeats, "sizes": rows}


def _markdown(data: dict[str, Any]) -> str:
    res = data["result"]
    rows = []
    for r in res["sizes"]:
        rows.append([
            f"{r['bytes'] / MIB:.1f} MiB ({r['chunks']} chunks)", fmt(r["raw_pipelined_s"], 3),
            fmt(r["raw_one_at_a_time_s"], 3),
            f"**{fmt(r['update_total_s_best'])}** ({fmt(r['update_total_s_median'])})",
            fmt(r["first_chunk_s"], 3), fmt(r["chunk_stream_s"], 3), fmt(r["verify_s"], 3),
            fmt(r["load_smoke_s"], 3), fmt(r["other_s"], 3), f"**{r['ratio_update_vs_raw']}x**",
            f"{r['ratio_stream_vs_raw_one_at_a_time']}x", fmt(r["agent_cpu_s"])])
    api = [r["api_to_desired_s"] for r in res["sizes"]]
    return f"""## Model update, one device (`bench/bench_update.py`)

Measured {data['measured_at']} on {machine_line(data['machine'])}; load average
{data['machine']['load_average_1m_at_start']} before, {data['load_average_after']} after.
Models: {res['model_description']}; hidden layers {', '.join(
    f"{r['hidden_layers']} at {r['size_mib']:g} MiB" for r in res['sizes'])}. Every update
replaces a running model with an artifact new to the device. One Mosquitto, one `edgewise controller serve` (SQLite), one `edgewise-agent`
daemon (development mode: no trusted keys; data directory on ext4, real fsyncs), all on the same
two cores. Clock: from the desired state of the deployment arriving at a plain MQTT observer
until the agent's report of the new version `active` arriving there (`POST /deployments` to the
desired state took a further {min(api) * 1000:.0f}-{max(api) * 1000:.0f} ms). Phases from the
agent's own timestamps on its reported states (when it entered each). Raw: the same artifact
bytes, same chunk size ({res['sizes'][0]['chunk_bytes'] // 1024} KiB), QoS 1, a plain paho publisher process to one plain paho
subscriber on the same broker, until the last byte arrived; pipelined, and one PUBACK at a time
(the controller's chunk server's pacing). Best of {res['repeats']} (median of the update in
brackets); the phases are those of the best run.

{table(["artifact", "raw MQTT pipelined (s)", "raw, one PUBACK at a time (s)",
        "update desired -> active (s)", "first chunk after (s)", "chunk stream (s)",
        "verify (s)", "load + smoke test + switch (s)", "other (s)", "update / raw",
        "chunk stream / raw one at a time", "agent CPU (s)"], rows)}

Phases: *first chunk after*: from `downloading` until the first chunk was written: the agent
subscribes to the chunk topic and asks for its ranges, the controller waits its 0.2 s coalescing
window (a fleet's requests then make one broadcast) and publishes the first chunk. *Chunk
stream*: the rest of the chunks until `verifying`; the controller publishes each chunk and waits
for its PUBACK before the next, the agent checks each chunk's sha256 and writes it at its
offset. *Verify*: whole-file sha256, fsync and rename into the models directory (until
`staged`). *Load + smoke test + switch*: onnxruntime session, the manifest's smoke tests, the
fsync'd pointer switch (`activating` until `probation`). *Other*: the rest of the total: the
desired state's checks, the step journal's fsync before each of the six states, the commit
after a 0 s probation, and the reports' way to the observer.

{_remarks(res["sizes"])}
"""


# 2026-11-27 04:46 UTC, before TCP_NODELAY on the MQTT sockets and `set_tcp_nodelay true` on the
# broker: size (MiB) -> (chunk stream s, update best s, raw pipelined s)
BEFORE_NODELAY = {1.0: (0.052, 0.31, 0.006), 10.0: (0.071, 0.36, 0.051),
                  50.0: (0.364, 0.82, 0.238)}


def _remarks(sizes: list[dict[str, Any]]) -> str:
    small, large = sizes[0], sizes[-1]
    text = (
        f"What dominates: at {small['size_mib']:g} MiB the wait for the first chunk "
        f"({fmt(small['first_chunk_s'])} s of {fmt(small['update_total_s_best'])} s, "
        f"{100 * (small['first_chunk_s'] or 0) / small['update_total_s_best']:.0f} %): the "
        f"controller's 0.2 s coalescing window, pure latency for one device (in a "
        f"fleet it lets a thousand requests share one broadcast), against a raw transfer of "
        f"{fmt(small['raw_pipelined_s'], 3)} s, hence the large ratio. ")
    if large is not small:
        text += (
            f"At {large['size_mib']:g} MiB the size-bound parts take over: the chunk stream "
            f"({fmt(large['chunk_stream_s'])} s against {fmt(large['raw_one_at_a_time_s'])} s "
            f"raw at the same pacing), the whole-file check ({fmt(large['verify_s'])} s) and "
            f"onnxruntime building a session for the graph plus the smoke test "
            f"({fmt(large['load_smoke_s'])} s). ")
    text += (
        "The chunk stream's remaining gap to raw one PUBACK at a time is the agent's work per "
        "chunk (its sha256, the write at its offset, progress reports). The issue sets no "
        "target for this one.")
    before = [(r, BEFORE_NODELAY[r["size_mib"]]) for r in sizes if r["size_mib"] in BEFORE_NODELAY]
    if before:
        def seq(values: list[str]) -> str:
            return " / ".join(values)

        mib = seq([f"{r['size_mib']:g}" for r, _ in before])
        stream_then = seq([f"{old[0] * 1000:.0f}" for _, old in before])
        stream_now = seq([f"{(r['chunk_stream_s'] or 0) * 1000:.0f}" for r, _ in before])
        total_then = seq([f"{old[1]:.2f}" for _, old in before])
        total_now = seq([fmt(r["update_total_s_best"]) for r, _ in before])
        raw_then = seq([f"{old[2]:.3f}" for _, old in before])
        raw_now = seq([fmt(r["raw_pipelined_s"], 3) for r, _ in before])
        text += (
            "\n\nTCP_NODELAY: the agent and the controller set it on their MQTT sockets "
            "(edgewise_mqtt/link.py; paho leaves Nagle's algorithm on) and the project's "
            "broker configurations set `set_tcp_nodelay true` (the generated one, "
            "deploy/mosquitto/edgewise.conf.example, and simulator/broker.py, used here), so a "
            "small packet (a PUBACK, a report) no longer waits behind a partly sent chunk for "
            "the peer's delayed ACK (about 40 ms on Linux, seen before as 40-45 ms gaps in the "
            f"chunk stream). At {mib} MiB the chunk stream took {stream_then} ms on "
            f"2026-11-27 04:46 UTC, before, and {stream_now} ms now; the whole update "
            f"{total_then} s then, {total_now} s now. The update / raw ratios fell less, or "
            f"rose, because the raw transfers go through the same broker and got faster too: "
            f"pipelined {raw_then} s then, {raw_now} s now. The "
            f"figures vary between runs on this shared machine (best of the repeats above; the "
            f"median in brackets).")
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Example: python bench/bench_update.py --quick")
    ap.add_argument("--sizes", default="1,10,50", help="artifact sizes in MiB (comma-separated)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2 repeats")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats = 2
    sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    logging.basicConfig(level=logging.WARNING)
    info = machine()
    with tempfile.TemporaryDirectory(prefix="ew-bench-update-") as tmp:
        result = run(sizes, args.repeats, Path(tmp), say=lambda m: print(m, flush=True))
    for r in result["sizes"]:
        print(f"{r['size_mib']:g} MiB: update {r['update_total_s_best']} s (first chunk after "
              f"{r['first_chunk_s']} s, chunk stream {r['chunk_stream_s']} s, verify "
              f"{r['verify_s']} s, load+smoke+switch {r['load_smoke_s']} s, other "
              f"{r['other_s']} s); raw pipelined {r['raw_pipelined_s']} s, one PUBACK at a "
              f"time {r['raw_one_at_a_time_s']} s -> update / raw {r['ratio_update_vs_raw']}x, "
              f"chunk stream / raw one at a time {r['ratio_stream_vs_raw_one_at_a_time']}x",
              flush=True)
    publish("update", measurement(info, result=result), _markdown, doc=not args.no_doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
