"""A large artifact uploaded to a real controller process is streamed to disk: the process's
resident memory grows far less than the upload (it once held the whole artifact: 513 MiB took
the controller to 700 MB), and the stored file's sha256 is the artifact's.

The client streams a 300 MiB file from disk (httpx reads file objects in pieces); the peak
resident size (VmHWM in /proc) of the controller process is compared with its resident size
before the upload.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import httpx
import pytest

from controller.models.artifact_store import ArtifactDigest
from simulator.broker import BrokerProcess
from simulator.demo import start_controller, stop_process
from tests.harness.iris_models import IrisModels

pytestmark = [pytest.mark.broker]

TOKEN = "upload-admin-token"
SIZE = 300 * 1024 * 1024
MiB = 1024 * 1024


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _write_artifact(path: Path, chunk_size: int) -> tuple[str, object]:
    """SIZE bytes that do not compress to nothing (a counter hashed block by block)."""
    digest = ArtifactDigest(chunk_size)
    with path.open("wb") as f:
        block = hashlib.sha256(b"seed").digest() * (MiB // 32)
        for i in range(SIZE // MiB):
            piece = bytes([i % 251]) + block[1:]
            f.write(piece)
            digest.update(piece)
    ref = digest.ref()
    return ref.sha256, ref


def test_a_300_mib_upload_is_streamed_to_disk(broker: BrokerProcess, tmp_path: Path,
                                              iris_models: IrisModels) -> None:
    workdir = tmp_path / "controller"
    proc, url = start_controller(workdir, broker, extra_args=["--api-token", TOKEN])
    try:
        artifact = tmp_path / "big.onnx"
        chunk_size = iris_models.a.manifest.artifact.chunk_size
        sha, ref = _write_artifact(artifact, chunk_size)
        manifest = dataclasses.replace(iris_models.a.manifest, model="big", artifact=ref)
        with httpx.Client(base_url=url, timeout=600,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            before = _status_kib(proc.pid, "VmRSS")
            with artifact.open("rb") as f:
                response = http.post("/api/v1/models/big/versions",
                                     data={"manifest": json.dumps(manifest.to_dict())},
                                     files={"artifact": ("big.onnx", f,
                                                         "application/octet-stream")})
            peak = _status_kib(proc.pid, "VmHWM")
        assert response.status_code == 201, response.text[:300]
        assert response.json()["sha256"] == sha and response.json()["size"] == SIZE
        growth_mib = (peak - before) / 1024
        assert growth_mib < 100, f"resident memory grew {growth_mib:.0f} MiB for a 300 MiB upload"
        stored = workdir / "artifacts" / sha[:2] / sha
        h = hashlib.sha256()
        with stored.open("rb") as f:
            while block := f.read(MiB):
                h.update(block)
        assert h.hexdigest() == sha
        assert not list((workdir / "artifacts" / ".staging").iterdir())  # nothing left behind
    finally:
        stop_process(proc)
