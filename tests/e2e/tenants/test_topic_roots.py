"""Several controllers on one broker: a fleet per topic root, and no second controller on a
root another one runs (docs/deploy.md, "Several controllers on one broker").

Real processes (`edgewise controller serve --topic-root ...`), real agents (SimulatedFleet, the
agent's own code), one real Mosquitto.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from controller.app.presence import read_presence
from controller.cli.client import ControllerClient
from edgewise_wire import ControllerPresence
from simulator.broker import BrokerProcess, free_port
from simulator.demo import start_controller, stop_process
from simulator.fleet import SimulatedFleet
from tests.harness.paths import REPO_ROOT
from tests.harness.waiting import wait_for_async

pytestmark = [pytest.mark.broker]

ACME, GLOBEX = "acme/ew/v1", "globex/ew/v1"


def _serve_args(root: str, *extra: str) -> list[str]:
    return ["--topic-root", root, *extra]


def _serve_refused(workdir: Path, broker: BrokerProcess, root: str,
                   *extra: str) -> subprocess.CompletedProcess[str]:
    """`edgewise controller serve` expected to exit by itself (refused)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "controller.app.cli", "controller", "serve", "--data-dir",
         str(workdir), "--broker", f"{broker.host}:{broker.port}", "--port", str(free_port()),
         *_serve_args(root, *extra)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


async def _presence_until(broker: BrokerProcess, root: str, what: str, timeout: float,
                          check: Any) -> ControllerPresence | None:
    """The retained controller presence under ``root``, once ``check`` accepts it."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = await read_presence(broker.address, root, wait_s=1.0)
        if check(seen):
            return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {what} under {root} within {timeout:g} s; last: {seen}")


def _instance_in(db_url: str) -> str:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text(
                "SELECT holder FROM leases WHERE name = 'instance'")).scalar_one())
    finally:
        engine.dispose()


def test_two_controllers_on_two_roots_each_run_their_own_fleet(
        broker: BrokerProcess, tmp_path: Path, tenant_models: dict[str, Any]) -> None:
    acme, acme_url = start_controller(tmp_path / "acme", broker, extra_args=_serve_args(ACME))
    globex, globex_url = start_controller(tmp_path / "globex", broker,
                                          extra_args=_serve_args(GLOBEX))
    clients = {ACME: ControllerClient(acme_url), GLOBEX: ControllerClient(globex_url)}
    fleets = {ACME: SimulatedFleet(broker.address, 2, tmp_path / "dev-acme", prefix="acme",
                                   topic_root=ACME),
              GLOBEX: SimulatedFleet(broker.address, 2, tmp_path / "dev-globex",
                                     prefix="globex", topic_root=GLOBEX)}
    names = {ACME: "iris-acme", GLOBEX: "iris-globex"}

    async def scenario() -> None:
        for fleet in fleets.values():
            await fleet.start()
        try:
            for root, client in clients.items():
                own = {a.device_id for a in fleets[root].agents}
                await wait_for_async(
                    lambda c=client, o=own: {d["device_id"] for d in c.devices()} == o, 30,
                    f"the controller of {root} to know exactly its own devices",
                    interval=0.2, in_thread=True)
            for root, client in clients.items():
                model = tenant_models[names[root]]
                version = client.push_version(model.manifest, model.artifact)["version"]
                client.deploy(names[root], version)
            for root, fleet in fleets.items():
                assert await fleet.wait_for_version(names[root], 1, timeout=60), \
                    f"the fleet of {root} did not get its model"
            for root, fleet in fleets.items():
                # each device runs its own controller's model: the other's desired state
                # never reached it, and neither controller knows the other's devices
                assert {(a.active.model if a.active else None) for a in fleet.agents} == \
                    {names[root]}
                assert {d["device_id"] for d in clients[root].devices()} == \
                    {a.device_id for a in fleet.agents}
                assert all(a.dropped_messages.total() == 0 for a in fleet.agents)
            # each root names its own controller
            seen = {root: await read_presence(broker.address, root, wait_s=1.0)
                    for root in clients}
            assert all(p is not None and p.online for p in seen.values())
            assert seen[ACME].instance != seen[GLOBEX].instance  # type: ignore[union-attr]
        finally:
            for fleet in fleets.values():
                await fleet.stop()

    try:
        asyncio.run(scenario())
    finally:
        stop_process(acme)
        stop_process(globex)
    # a clean stop marks the controller offline at once
    after = asyncio.run(read_presence(broker.address, ACME, wait_s=1.0))
    assert after is not None and not after.online


def test_a_second_controller_on_a_root_is_refused_until_the_first_is_killed(
        broker: BrokerProcess, tmp_path: Path) -> None:
    root = "refuse-kill/ew/v1"
    first, _ = start_controller(tmp_path / "first", broker, extra_args=_serve_args(root))
    second: subprocess.Popen[bytes] | None = None
    try:
        running = asyncio.run(read_presence(broker.address, root, wait_s=1.0))
        assert running is not None and running.online
        refused = _serve_refused(tmp_path / "second", broker, root)
        assert refused.returncode == 1, refused.stderr[-2000:]
        reason = refused.stderr.strip().splitlines()[-1]
        assert reason.startswith("error: another controller (instance "
                                 f"{running.instance}, replica {running.replica}")
        assert f"under topic root {root!r}" in reason
        assert "--topic-root" in reason and "stop the other controller" in reason
        # refused before it touched the fleet: the presence is still the first one's
        still = asyncio.run(read_presence(broker.address, root, wait_s=1.0))
        assert still is not None and (still.instance, still.replica, still.online) == \
            (running.instance, running.replica, True)

        os.kill(first.pid, signal.SIGKILL)  # no shutdown code: the broker's last will
        first.wait(10)
        gone = asyncio.run(_presence_until(
            broker, root, "offline presence", 30,
            lambda p: p is not None and not p.online))
        assert gone is not None and gone.instance == running.instance
        second, _ = start_controller(tmp_path / "second", broker, extra_args=_serve_args(root))
        now = asyncio.run(read_presence(broker.address, root, wait_s=1.0))
        assert now is not None and now.online and now.instance != running.instance
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)


def test_replicas_of_one_database_share_a_root_and_keep_it_while_one_lives(
        broker: BrokerProcess, tmp_path: Path, pg_url: str) -> None:
    root = "replicas/ew/v1"
    args = _serve_args(root, "--db-url", pg_url, "--share-group", "tenants",
                       "--artifact-dir", str(tmp_path / "artifacts"))
    first, _ = start_controller(tmp_path / "first", broker, extra_args=args)
    replica: subprocess.Popen[bytes] | None = None
    other: subprocess.Popen[bytes] | None = None
    try:
        instance = _instance_in(pg_url)
        # the second replica (same database, same instance) starts beside the first
        replica, _ = start_controller(tmp_path / "replica", broker, extra_args=args)
        seen = asyncio.run(read_presence(broker.address, root, wait_s=1.0))
        assert seen is not None and seen.online and seen.instance == instance

        # the first replica dies; its will marks the instance offline, and the live replica
        # marks it online again
        first_replica = seen.replica
        killed_at = time.time()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        restored = asyncio.run(_presence_until(
            broker, root, "the live replica's presence", 30,
            lambda p: p is not None and p.online and p.ts > killed_at))
        assert restored is not None and restored.instance == instance
        refused = _serve_refused(tmp_path / "other", broker, root)
        assert refused.returncode == 1, refused.stderr[-2000:]
        assert f"another controller (instance {instance}" in refused.stderr
        assert first_replica  # the presence names the process that wrote it

        # the last replica stops cleanly: offline at once, and another controller may start
        stop_process(replica)
        asyncio.run(_presence_until(broker, root, "offline presence", 30,
                                    lambda p: p is not None and not p.online))
        other, _ = start_controller(tmp_path / "other", broker, extra_args=_serve_args(root))
        now = asyncio.run(read_presence(broker.address, root, wait_s=1.0))
        assert now is not None and now.online and now.instance != instance
    finally:
        for proc in (first, replica, other):
            if proc is not None:
                stop_process(proc)
