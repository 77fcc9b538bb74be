"""Real Prometheus tools for the integration tests: an Alertmanager process on a free port with
its own config and storage, and promtool. Debian packages them (``prometheus-alertmanager``,
``prometheus``); scripts/test installs them. Without them the tests skip saying so, except under
``CI``, where a missing tool is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator.broker import free_port
from tests.harness.waiting import wait_for

ALERTMANAGER_CONFIG = """\
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {package}); scripts/test installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class Alertmanager:
    """One Alertmanager, clustering off, listening on 127.0.0.1:``port``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.binary = require_tool("prometheus-alertmanager", "prometheus-alertmanager")
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "alertmanager.yml"
        config.write_text(ALERTMANAGER_CONFIG)
        log = (self.workdir / "alertmanager.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             "--log.level=warn"], stdout=log, stderr=log)
        wait_for(self._ready, 30.0, lambda: f"Alertmanager ready on {self.url}: "
                 + (self.workdir / "alertmanager.log").read_text()[-500:])

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError("Alertmanager exited: "
                                 + (self.workdir / "alertmanager.log").read_text()[-500:])
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def alerts(self, **params: Any) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v2/alerts", params=params, timeout=5.0)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
