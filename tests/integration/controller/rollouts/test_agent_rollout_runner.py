"""Agent rollouts in the rollout runner on a real database (SQLite and PostgreSQL), without a
broker: the runner's publishers are recorders and devices are driven by writing what they
would report (their ``agent_version`` and ``agent_update``)."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from controller.agent_bundles.registry import AgentBundles
from controller.errors import NotFoundError
from controller.fleet.seal_counters import SealCounters
from controller.fleet.store import FleetStore
from controller.models.artifact_store import ArtifactStore
from controller.models.registry import ModelRegistry
from controller.rollouts import Status
from controller.rollouts.conflicts import ConflictError
from controller.rollouts.runner import RolloutRunner
from controller.security.desired_signer import DesiredSigner
from controller.security.signing import generate_keypair
from controller.storage.db import Database
from edgewise_wire import Desired, DesiredAgent, Reported
from edgewise_wire.envelope import trusted_keys_from, verify_agent_envelope
from edgewise_wire.seal import verify_seal
from tests.integration.controller.rollouts.test_runner_and_stores import db as db  # noqa: F401

OLD, NEW = "1.0.0", "2.0.0"
DEVICES = ["pi-a", "pi-b", "pi-c"]


def archive(version: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        data = f"#!/bin/sh\necho {version}\n".encode() * 8
        info = tarfile.TarInfo("bin/edgewise-agent")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Fleet:
    def __init__(self, db: Database, tmp_path: Path) -> None:
        store = ArtifactStore(tmp_path / "artifacts")
        self.fleet = FleetStore(db)
        bundles = AgentBundles(db, store)
        for version in (OLD, NEW):
            bundles.register(version, archive(version))
        private, public, _ = generate_keypair()
        self.trusted = trusted_keys_from([public])
        self.models: list[tuple[str, Desired]] = []
        self.agents: list[tuple[str, DesiredAgent, str]] = []
        self.runner = RolloutRunner(
            db, ModelRegistry(db, store), self.fleet, lambda d, m: self.models.append((d, m)),
            lambda: 1, signer=DesiredSigner(lambda: private, ttl_s=600.0,
                                            counters=SealCounters(db).next),
            agent_bundles=bundles, publish_agent=self._publish_agent)
        for device in DEVICES:
            self.report(device, OLD)

    def _publish_agent(self, device: str, message: DesiredAgent) -> None:
        # saved before it is published: the stored status is the decision's
        statuses = ",".join(r.status.value for r in self.runner.store.query())
        self.agents.append((device, message, statuses))

    def report(self, device: str, running: str, target: str | None = None,
               where: str | None = None) -> None:
        update = None if target is None else {"running": running, "target": target,
                                              "state": where, "error": None}
        self.fleet.set_reported(device, Reported(state="idle", active=None, agent_version=running,
                                                 agent_update=update, ts=time.time()))

    def sent(self) -> list[tuple[str, str]]:
        """(device, agent version) of every desired_agent published, verified as a device
        would verify it: the envelope, and a seal for that device and envelope whose counter is
        above the one of the device's previous order."""
        out = []
        last: dict[str, int] = {}
        for device, message, _ in self.agents:
            manifest = verify_agent_envelope(message.signed, self.trusted, now=time.time(),
                                             device_class=None)
            seal = verify_seal(message.seal, self.trusted, device_id=device,
                               envelope=message.signed, order=None)
            assert seal.counter > last.get(device, 0)
            last[device] = seal.counter
            out.append((device, str(manifest["version"])))
        return out

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            asyncio.run(self.runner.tick())

    def create(self, **extra: Any) -> dict[str, Any]:
        spec = {"kind": "agent", "agent_version": NEW, "waves": "1,100%", "soak_seconds": 0,
                "on_gate_failure": "abort", **extra}
        return dict(asyncio.run(self.runner.create(spec, "test")))

    def view(self, ref: int) -> dict[str, Any]:
        return dict(asyncio.run(self.runner.view(str(ref))))


def test_an_agent_rollout_sends_its_waves_in_turn_and_completes(db: Database,
                                                                tmp_path: Path) -> None:
    f = Fleet(db, tmp_path)
    view = f.create()
    assert view["kind"] == "agent" and [w["devices"] for w in view["waves"]] == [1, 2]
    f.tick()
    ((canary, version),) = f.sent()
    assert version == NEW and f.agents[0][2] == "running"
    assert f.models == []  # no model order
    # on probation: the wave waits; committed: the next wave goes out
    f.report(canary, NEW, NEW, "probation")
    f.tick(3)
    assert len(f.sent()) == 1
    f.report(canary, NEW, NEW, "current")
    f.tick(3)
    rest = sorted(set(DEVICES) - {canary})
    assert sorted(f.sent()[1:]) == [(d, NEW) for d in rest]
    for device in rest:
        f.report(device, NEW, NEW, "current")
    f.tick(3)
    done = f.view(view["id"])
    assert done["status"] == Status.COMPLETED.value and done["active"] == 3
    # a reconnection sends nothing again: every device runs the version
    assert asyncio.run(f.runner.republish()) == 0


def test_a_failed_update_on_the_canary_aborts_and_an_operator_abort_sends_devices_back(
        db: Database, tmp_path: Path) -> None:
    f = Fleet(db, tmp_path)
    view = f.create()
    f.tick()
    ((canary, _),) = f.sent()
    # its launcher restored the old agent, which reports the version failed
    f.report(canary, OLD, NEW, "failed")
    f.tick()
    aborted = f.view(view["id"])
    assert aborted["status"] in ("aborting", "aborted")
    assert aborted["reverted"] == {canary: f"agent {OLD}"}
    # sent back to the old version (already there: it confirms at once), nobody else sent
    assert f.sent()[1:] == [(canary, OLD)]
    f.tick()
    assert f.view(view["id"])["status"] == "aborted"

    # a second rollout that moved its canary, aborted by an operator
    f.report(canary, OLD, OLD, "current")
    second = f.create(agent_version=NEW, name="again", waves="2,100%")
    f.tick()
    moved = [d for d, _ in f.sent()[2:]]
    assert len(moved) == 2
    for device in moved:
        f.report(device, NEW, NEW, "probation")
    asyncio.run(f.runner.abort(str(second["id"]), "operator", "stop"))
    assert sorted(f.sent()[4:]) == [(d, OLD) for d in sorted(moved)]
    assert f.view(second["id"])["status"] == "aborting"
    # a reconnection while aborting sends the reverts not confirmed yet again
    assert asyncio.run(f.runner.republish()) == 2
    for device in moved:
        f.report(device, OLD, OLD, "current")
    f.tick()
    assert f.view(second["id"])["status"] == "aborted"


def test_an_agent_rollout_needs_a_registered_version_and_overlaps_are_refused(
        db: Database, tmp_path: Path) -> None:
    f = Fleet(db, tmp_path)
    with pytest.raises(NotFoundError):
        f.create(agent_version="9.9.9")
    first = f.create(waves="100%")
    # another agent rollout over the same devices at the same priority is refused
    with pytest.raises(ConflictError, match="overlaps"):
        f.create(name="again")
    assert f.view(first["id"])["status"] == "pending"
