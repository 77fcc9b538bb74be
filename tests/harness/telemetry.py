"""Helpers for the monitoring tests: a converted iris model, a model installed in an agent's data
directory, a TCP proxy that cuts a device's network, reading what an outbox holds and the
predictions its records stand for."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from converters.result import ConversionResult
from edge_agent.outbox import TelemetryOutbox


@functools.cache
def iris_conversion() -> ConversionResult:
    """A scikit-learn pipeline on iris, converted with parity check (accuracy in the manifest)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from converters import convert_sklearn
    from simulator.workload import load_dataset

    data = load_dataset("iris")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(data.features, data.target)
    return convert_sklearn(model, data.features, name="iris", labels=data.target,
                           feature_names=data.feature_names)


def install_model(data_dir: Path, result: ConversionResult, version: int = 1) -> None:
    """Put a verified model in place as an agent that activated it would have."""
    manifest = dataclasses.replace(result.manifest, version=version)
    models = data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    name = f"{manifest.artifact.sha256}.onnx"
    (models / name).write_bytes(result.artifact)
    (data_dir / "active.json").write_text(json.dumps(
        {"manifest": manifest.to_dict(), "file": name, "deployment_id": "dep-test"}))


def outbox_records(path: Path) -> list[dict[str, Any]]:
    """Every record still in an outbox file (not yet acknowledged), oldest first."""
    with TelemetryOutbox(path) as box:
        out: list[dict[str, Any]] = []
        while True:
            batch = box.next_batch(1000, after_seq=out[-1]["seq"] if out else 0)
            if not batch:
                return out
            out.extend(batch)


def prediction_ids(records: list[dict[str, Any]]) -> list[str]:
    """The ids of the predictions telemetry records stand for, in both forms: a ``prediction``
    record names one, a columnar ``predictions`` record ``n`` (``<boot>-<pid>`` each)."""
    ids: list[str] = []
    for r in records:
        if r.get("kind") == "prediction":
            ids.append(r["prediction_id"])
        elif r.get("kind") == "predictions":
            assert len(r["pid"]) == r["n"], "a columnar record's n must count its pids"
            ids.extend(f"{r['boot']}-{p}" for p in r["pid"])
    return ids




class TcpProxy:
    """A device's network link: forwards a local port to the broker until :meth:`cut`, which
    resets every connection and refuses new ones until :meth:`restore`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port or 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()  # the same port again

    async def stop(self) -> None:
        await self.cut()
        for task in list(self._tasks):
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.transport.abort()
            self._writers.discard(dst)
