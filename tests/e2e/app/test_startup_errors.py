"""Failures to reach a broker, a database, a port or a controller, from the real commands: each is
one line on stderr naming the cause and the setting to change, exit code 1, no traceback; and the
controller never announces an API it could not start (docs/cli.md)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli.exit_codes import ExitCode
from simulator.broker import free_port

pytestmark = [pytest.mark.slow]

SECRET = "s3cret-pw"


def edgewise(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEWISE_")}
    return subprocess.run([sys.executable, "-m", "controller.app.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# the controller's progress log on stderr ("signing desired states with key ..."): a daemon's
# INFO lines are not part of the error; a WARNING, an ERROR or a traceback would be
INFO_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO edgewise[.\w]*: ")


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line on stderr besides INFO log lines, after checking the exit code."""
    assert result.returncode == ExitCode.ERROR, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if not INFO_LOG.match(line)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert "controller API on" not in result.stderr
    return lines[0]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A controller data directory whose signing key exists (its creation is announced once)."""
    created = edgewise("keys", "create", "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    return tmp_path / "data"


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


def test_a_broker_that_cannot_be_reached(data_dir: Path) -> None:
    port = free_port()  # nothing listens there
    line = one_error_line(edgewise("controller", "serve", "--data-dir", str(data_dir),
                                   "--broker", f"127.0.0.1:{port}", "--port", "0",
                                   cwd=data_dir.parent))
    assert f"cannot reach the MQTT broker at 127.0.0.1:{port}" in line
    assert "connection refused" in line and "--broker" in line


def test_a_port_already_taken_is_refused_before_anything_is_announced(
        data_dir: Path, taken_port: int) -> None:
    line = one_error_line(edgewise("controller", "serve", "--data-dir", str(data_dir),
                                   "--broker", f"127.0.0.1:{free_port()}",
                                   "--port", str(taken_port), cwd=data_dir.parent))
    assert f"cannot listen on 127.0.0.1:{taken_port}: the port is already in use" in line
    assert "--port" in line


def test_an_unknown_host_to_listen_on(data_dir: Path) -> None:
    line = one_error_line(edgewise("controller", "serve", "--data-dir", str(data_dir),
                                   "--host", "no-such-host.invalid", "--port", "0",
                                   cwd=data_dir.parent))
    assert "'no-such-host.invalid' is not a known name or address" in line
    assert "--host" in line


@pytest.mark.parametrize("url, reason", [
    # nothing listens on this port: the driver's refusal
    (f"postgresql+psycopg://edgewise:{SECRET}@127.0.0.1:{free_port()}/edgewise",
     "Connection refused"),
    # a scheme SQLAlchemy has no dialect for
    (f"nosuchdb://edgewise:{SECRET}@db.example.net/edgewise", "Can't load plugin"),
], ids=["nothing-listens", "no-dialect"])  # ids without the free port: every xdist worker
#                                            must collect the same test names
def test_a_database_that_cannot_be_opened(tmp_path: Path, url: str, reason: str) -> None:
    line = one_error_line(edgewise("controller", "serve", "--data-dir", str(tmp_path / "data"),
                                   "--db-url", url, "--port", "0", cwd=tmp_path))
    assert "cannot open the database" in line and reason in line
    assert "edgewise:***@" in line and SECRET not in line
    assert "--db-url" in line and "EDGEWISE_DB_URL" in line


@pytest.mark.parametrize("url, says", [
    ("http://127.0.0.1:8700/api/v1", "has a path; give the controller's base URL "
                                     "(http://127.0.0.1:8700)"),
    ("http://127.0.0.1:8700/dashboard/", "has a path"),
    ("localhost:8700", "is not an http(s) URL with a host"),
    ("http//127.0.0.1:8700", "is not an http(s) URL with a host"),
    ("http://[::1", "is not a URL"),
])
def test_a_controller_url_that_cannot_be_a_controller(tmp_path: Path, url: str,
                                                      says: str) -> None:
    line = one_error_line(edgewise("--controller", url, "fleet", cwd=tmp_path))
    assert f"controller URL {url!r} {says}" in line
    assert "--controller or EDGEWISE_URL" in line


def test_a_controller_that_is_not_running(tmp_path: Path) -> None:
    port = free_port()
    line = one_error_line(edgewise("--controller", f"http://127.0.0.1:{port}", "fleet",
                                   cwd=tmp_path))
    assert f"cannot reach the controller at http://127.0.0.1:{port}" in line
    assert "--controller or EDGEWISE_URL" in line


def test_an_agent_whose_local_api_port_is_taken(tmp_path: Path, taken_port: int) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'device_id = "pi-01"\ndata_dir = "{tmp_path / "agent"}"\n'
                      f'http_port = {taken_port}\n[broker]\nhost = "127.0.0.1"\n'
                      f"port = {free_port()}\n")
    result = subprocess.run([sys.executable, "-m", "edge_agent.daemon", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    # besides its log (the development-mode warning of an agent without trusted keys)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert lines == [f"edgewise-agent: error: cannot serve the local API on 127.0.0.1:"
                     f"{taken_port}: the port is already in use; set http_port (or http_host) "
                     "in the agent's config"], result.stderr


def test_a_bad_argument_checked_by_the_command_is_a_usage_error(tmp_path: Path) -> None:
    # refused before any request: exit 2, like click's own usage errors
    result = edgewise("--controller", f"http://127.0.0.1:{free_port()}", "rollout", "start",
                      "iris:x", cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == "error: version in 'iris:x' must be a number, e.g. iris:2\n"
