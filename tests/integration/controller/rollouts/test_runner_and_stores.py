"""The rollout runner and its stores on a real database, without a broker: the runner's
``publish`` is a recorder and devices are driven by writing what they would report."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from controller.audit.store import AuditEntry, AuditLog
from controller.errors import ConflictError, NotFoundError, ValidationError
from controller.fleet.device_registry import DeviceRegistry, UnknownDeviceError
from controller.fleet.selectors import SelectorError
from controller.fleet.store import FleetStore
from controller.models.artifact_store import ArtifactStore
from controller.models.registry import ModelRegistry
from controller.monitoring.figures import NO_FIGURES
from controller.monitoring.figures import VersionFigures as Figures
from controller.rollouts import SpecError, Status
from controller.rollouts.observations import p95
from controller.rollouts.runner import RolloutRunner
from controller.rollouts.store import StaleRollout
from controller.storage import migrator
from controller.storage.db import Database
from controller.storage.tables import devices
from edgewise_wire import Desired, ModelRef, Reported
from tests.integration.controller.store.conftest import build_manifest


class FakeFigures:
    """Figures the test sets per (model, version); every device gets the same."""

    def __init__(self) -> None:
        self.by_version: dict[tuple[str, int], Figures] = {}

    def version_figures(self, device_ids: Any, model: str, version: int,
                        since: float) -> dict[str, Figures]:
        f = self.by_version.get((model, version), NO_FIGURES)
        return {d: f for d in device_ids}


class Harness:
    def __init__(self, db: Database, tmp_path: Path) -> None:
        self.db = db
        self.registry = ModelRegistry(db, ArtifactStore(tmp_path / "artifacts"))
        self.fleet = FleetStore(db)
        self.figures = FakeFigures()
        self.published: list[tuple[str, Desired, str]] = []
        self.runner = RolloutRunner(db, self.registry, self.fleet, self._publish,
                                    lambda: 1, figures=self.figures)
        self.store = self.runner.store
        self.refs: dict[int, ModelRef] = {}

    def _publish(self, device_id: str, desired: Desired) -> None:
        # what the stored rollouts say at the moment of publishing: must already be saved
        statuses = ",".join(r.status.value for r in self.store.query())
        self.published.append((device_id, desired, statuses))

    def model(self, seed: int) -> int:
        manifest = self.registry.register(build_manifest(bytes([seed]) * 3000), bytes([seed]) * 3000)
        self.refs[manifest.version] = ModelRef("iris", manifest.version, manifest.artifact.sha256)
        return manifest.version

    def report(self, device_id: str, version: int | None, state: str = "active",
               labels: dict[str, str] | None = None, target: int | None = None) -> None:
        self.fleet.set_reported(device_id, Reported(
            state=state, active=self.refs[version] if version else None,
            target=self.refs[target] if target else None, labels=labels or {}))

    def settle(self) -> None:
        """Every device does what it was last told (and succeeds)."""
        told: dict[str, Desired] = {}
        for device_id, desired, _ in self.published:
            told[device_id] = desired
        for device_id, desired in told.items():
            labels = json.loads(self._row(device_id)["labels_json"])
            m = desired.manifest
            self.report(device_id, m.version if m else None, labels=labels)

    def _row(self, device_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            return dict(conn.execute(sa.select(devices).where(
                devices.c.device_id == device_id)).one()._mapping)

    def desired(self, device_id: str) -> tuple[Any, Any, Any]:
        row = self._row(device_id)
        return row["desired_model"], row["desired_version"], row["desired_deployment_id"]

    def tick(self, now: float | None = None) -> None:
        asyncio.run(self.runner.tick(now))

    def run(self, coro: Any) -> Any:
        return asyncio.run(coro)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(str(tmp_path / "c.sqlite"))
        migrator.upgrade(database)
        yield database
        database.dispose()
        return
    admin: sa.Engine = request.getfixturevalue("pg_admin")
    name = f"ew_ro_{secrets.token_hex(5)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    database = Database(admin.url.set(database=name).render_as_string(hide_password=False))
    try:
        migrator.upgrade(database)
        yield database
    finally:
        database.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def h(db: Database, tmp_path: Path) -> Harness:
    harness = Harness(db, tmp_path)
    assert harness.model(1) == 1 and harness.model(2) == 2
    return harness


def berlin(h: Harness, n: int = 4, version: int | None = 1, prefix: str = "b") -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(n)]
    for d in ids:
        h.report(d, version, labels={"site": "berlin"})
    return ids


# -- the runner ----------------------------------------------------------------------------------

def test_state_is_saved_before_anything_is_published_and_a_rollout_completes(h: Harness) -> None:
    ids = berlin(h, 4)
    view = h.run(h.runner.create({"model": "iris", "version": 2, "selector": "site=berlin",
                                  "waves": "1,100%", "soak_seconds": 0}, "operator:t"))
    assert view["status"] == "pending" and h.published == []
    for _ in range(8):
        h.tick()
        h.settle()
    assert h.store.get(view["id"]).status is Status.COMPLETED
    assert sorted(d for d, _, _ in h.published) == ids  # each device told once
    assert all(s == "running" for _, _, s in h.published)  # saved (running) before publishing
    assert all(h.desired(d) == ("iris", 2, f"ro-{view['id']}") for d in ids)


def test_abort_reverts_to_the_previous_version_and_to_no_model(h: Harness) -> None:
    with_model = berlin(h, 2, version=1, prefix="old")
    without = berlin(h, 2, version=None, prefix="new")
    view = h.run(h.runner.create({"model": "iris", "version": 2, "selector": "site=berlin",
                                  "waves": "100%", "soak_seconds": 600}, "operator:t"))
    h.tick()
    h.settle()
    h.published.clear()
    aborted = h.run(h.runner.abort(str(view["id"]), "operator:t", "wrong model"))
    assert aborted["status"] == "aborting"
    told = {d: desired for d, desired, _ in h.published}
    assert all(s == "aborting" for _, _, s in h.published)
    assert {d for d in told} == set(with_model + without)
    assert all(told[d].manifest is not None and told[d].manifest.version == 1 for d in with_model)
    assert all(told[d].manifest is None for d in without)  # ran nothing: run nothing
    assert {told[d].deployment_id for d in told} == {f"ro-{view['id']}-revert"}
    assert h.desired("new-0") == (None, None, f"ro-{view['id']}-revert")
    h.settle()
    h.tick()
    assert h.store.get(view["id"]).status is Status.ABORTED
    entry = h.runner.audit.page(rollout_id=view["id"], action="rollout.aborted")["entries"][0]
    assert entry["actor"] == "operator:t" and sorted(entry["devices"]) == sorted(with_model + without)
    assert entry["detail"]["revert"]["new-0"] is None and entry["detail"]["revert"]["old-0"] == "iris:1"


def test_accuracy_gate_uses_the_previous_versions_accuracy(h: Harness) -> None:
    berlin(h, 4)
    h.figures.by_version[("iris", 1)] = Figures(0.95, 200, 5.0, None, 200)
    h.figures.by_version[("iris", 2)] = Figures(0.60, 100, 5.0, None, 100)
    view = h.run(h.runner.create({
        "model": "iris", "version": 2, "selector": "site=berlin", "waves": "100%",
        "soak_seconds": 600, "on_gate_failure": "pause",
        "gates": {"max_accuracy_drop": 0.05, "min_labelled": 50}}, "operator:t"))
    for _ in range(3):
        h.tick()
        h.settle()
    record = h.store.get(view["id"])
    assert record.status is Status.PAUSED
    assert "accuracy_drop 0.35 vs threshold 0.05" in record.state.reasons[-1]
    shown = h.run(h.runner.view(str(view["id"])))
    gate = next(g for g in shown["gates"] if g["name"] == "accuracy_drop")
    assert gate["value"] == pytest.approx(0.35) and not gate["passed"] and not gate["pending"]


def test_latency_and_drift_gates_read_the_figures_of_the_wave(h: Harness) -> None:
    ids = berlin(h, 4)
    h.figures.by_version[("iris", 2)] = Figures(None, 0, 12.0, 0.45, 50)
    view = h.run(h.runner.create({
        "model": "iris", "version": 2, "selector": "site=berlin", "waves": "1,100%",
        "soak_seconds": 600, "on_gate_failure": "abort",
        "gates": {"max_p95_latency_ms": 50, "max_drift_psi": 0.2}}, "operator:t"))
    for _ in range(4):
        h.tick()
        h.settle()
    record = h.store.get(view["id"])
    assert record.status is Status.ABORTED
    assert any(r.startswith("abort (drift_psi 0.45 vs threshold 0.2") for r in record.state.reasons)
    # only the canary was moved, and only it was sent back
    told = [d for d, desired, _ in h.published if desired.manifest and desired.manifest.version == 2]
    assert len(told) == 1 and told[0] in ids
    assert h.desired(told[0]) == ("iris", 1, f"ro-{view['id']}-revert")


def test_overlap_is_refused_or_preempted_by_priority(h: Harness) -> None:
    berlin(h, 4)
    first = h.run(h.runner.create({"model": "iris", "version": 2, "selector": "site=berlin",
                                   "waves": "1,100%", "soak_seconds": 600}, "operator:a"))
    with pytest.raises(ConflictError) as refused:
        h.run(h.runner.create({"model": "iris", "version": 1, "selector": "site",
                               "waves": "100%"}, "operator:b"))
    assert f"overlaps rollout 'iris:2 (#{first['id']})' (priority 0) on 4 devices" in str(refused.value)
    assert "give it a priority above 0" in str(refused.value)
    second = h.run(h.runner.create({"model": "iris", "version": 1, "selector": "site",
                                    "waves": "100%", "priority": 5}, "operator:b"))
    assert second["targets"] == 4
    loser = h.store.get(first["id"])
    assert loser.state.assignment == {} and "preempted by rollout 'iris:1' (priority 5)" in \
        loser.state.reasons[-1]
    assert h.runner.audit.page(rollout_id=first["id"], action="rollout.preempted")["entries"]


def test_all_at_once_deployment_respects_rollouts(h: Harness) -> None:
    ids = berlin(h, 2)
    view = h.run(h.runner.create({"model": "iris", "version": 2, "selector": "site=berlin",
                                  "waves": "100%", "soak_seconds": 600}, "operator:t"))
    with pytest.raises(ConflictError, match=r"belong to rollout #1 iris:2 \(pending\)"):
        h.run(h.runner.claim_for_deployment(ids, "iris", 1, "dep-x"))
    h.run(h.runner.abort(str(view["id"]), "operator:t"))
    h.tick()
    assert h.store.get(view["id"]).status is Status.ABORTED  # nothing was moved
    done = h.run(h.runner.create({"model": "iris", "version": 1, "selector": "site=berlin",
                                  "waves": "100%", "soak_seconds": 0}, "operator:t"))
    for _ in range(3):
        h.tick()
        h.settle()
    assert h.store.get(done["id"]).status is Status.COMPLETED
    h.run(h.runner.claim_for_deployment(ids[:1], "iris", 2, "dep-y"))
    assert set(h.store.get(done["id"]).state.assignment) == set(ids[1:])  # let go of b-0
    assert h.desired(ids[0]) == ("iris", 2, "dep-y")
    # an explicit deployment stands: the completed rollout does not take b-0 back
    h.tick()
    assert ids[0] not in h.store.get(done["id"]).state.assignment


def test_late_joiners_go_to_the_newest_matching_rollout(h: Harness) -> None:
    berlin(h, 2)
    old = h.run(h.runner.create({"model": "iris", "version": 1, "selector": "site",
                                 "waves": "100%", "soak_seconds": 0}, "operator:t"))
    for _ in range(3):
        h.tick()
        h.settle()
    assert h.store.get(old["id"]).status is Status.COMPLETED  # completed: no conflict
    new = h.run(h.runner.create({"model": "iris", "version": 2, "selector": "site=berlin",
                                 "waves": "100%", "soak_seconds": 0}, "operator:t"))
    for _ in range(3):
        h.tick()
        h.settle()
    assert h.store.get(old["id"]).state.assignment == {}  # b-* moved to the newer rollout
    h.report("joiner-berlin", None, labels={"site": "berlin"})
    h.report("joiner-oslo", None, labels={"site": "oslo"})
    h.report("joiner-none", None, labels={})
    for _ in range(3):
        h.tick()
        h.settle()
    assert "joiner-berlin" in h.store.get(new["id"]).state.assignment
    assert "joiner-oslo" in h.store.get(old["id"]).state.assignment
    assert h.desired("joiner-berlin")[:2] == ("iris", 2)
    assert h.desired("joiner-oslo")[:2] == ("iris", 1)
    assert h.desired("joiner-none") == (None, None, None)


def test_republish_sends_only_what_devices_do_not_run_yet(h: Harness) -> None:
    ids = berlin(h, 3)
    h.run(h.runner.create({"model": "iris", "version": 2, "selector": "site=berlin",
                           "waves": "100%", "soak_seconds": 0}, "operator:t"))
    h.tick()
    h.report(ids[0], 2, labels={"site": "berlin"})  # only b-0 has switched
    h.published.clear()
    assert h.run(h.runner.republish()) == 2
    assert sorted(d for d, _, _ in h.published) == ids[1:]
    assert h.runner.audit.page(action="controller.republished")["entries"][0]["devices"] == ids[1:]


def test_the_loop_publishes_orders_again_after_every_reconnection(h: Harness) -> None:
    berlin(h, 2)
    h.run(h.runner.create({"model": "iris", "version": 2, "selector": "site=berlin",
                           "waves": "100%", "soak_seconds": 0}, "operator:t"))
    link: dict[str, int | None] = {"generation": 1}
    h.runner._connection = lambda: link["generation"]
    h.runner.interval = 0.02

    async def scenario() -> list[str]:
        await h.runner.start()
        seen = []
        try:
            for generation in (1, None, 2):  # connected, broker lost, connected again
                link["generation"] = generation
                await asyncio.sleep(0.3)
                seen.append(",".join(d for d, _, _ in h.published))
                h.published.clear()
        finally:
            await h.runner.stop()
        return seen

    first, while_down, after = asyncio.run(scenario())
    assert first == "b-0,b-1"  # the wave (nothing to publish again on the first connection)
    assert while_down == ""  # no decisions, no orders without a broker
    assert after == "b-0,b-1"  # the devices still do not run iris:2: told again
    assert len(h.runner.audit.page(action="controller.republished")["entries"]) == 1


def test_operator_actions_in_the_wrong_state_say_what_to_do(h: Harness) -> None:
    berlin(h, 1)
    view = h.run(h.runner.create({"model": "iris", "version": 2, "selector": "site=berlin",
                                  "waves": "100%", "soak_seconds": 0}, "operator:t"))
    with pytest.raises(ConflictError, match="only a paused rollout can be resumed"):
        h.run(h.runner.resume(str(view["id"]), "operator:t"))
    for _ in range(3):
        h.tick()
        h.settle()
    with pytest.raises(ConflictError, match="roll the previous version out"):
        h.run(h.runner.abort(str(view["id"]), "operator:t"))
    with pytest.raises(NotFoundError):
        h.run(h.runner.view("99"))


def test_create_refuses_bad_specs_before_storing(h: Harness) -> None:
    berlin(h, 2)
    with pytest.raises(NotFoundError, match="iris:7"):
        h.run(h.runner.create({"model": "iris", "version": 7}, "operator:t"))
    with pytest.raises(SpecError, match="matches no devices"):
        h.run(h.runner.create({"model": "iris", "version": 2, "selector": "site=oslo"}, "t"))
    with pytest.raises(SpecError, match="gates.max_drift_psi: must be >= 0"):
        h.run(h.runner.create({"model": "iris", "version": 2, "waves": "100%",
                               "gates": {"max_drift_psi": -1}}, "t"))
    dry = h.run(h.runner.create({"model": "iris", "version": 2, "waves": "1,100%"}, "t",
                                dry_run=True))
    assert dry["dry_run"] and [len(w["device_ids"]) for w in dry["waves"]] == [1, 1]
    assert h.store.query() == [] and h.published == []


# -- stores --------------------------------------------------------------------------------------

def test_a_stale_save_is_refused(h: Harness) -> None:
    berlin(h, 1)
    view = h.run(h.runner.create({"model": "iris", "version": 2, "waves": "100%"}, "t"))
    record = h.store.get(view["id"])
    h.store.save(record, record.state)
    with pytest.raises(StaleRollout, match="changed while this request was deciding"):
        h.store.save(record, record.state)


def test_audit_pages_and_filters(h: Harness) -> None:
    store: AuditLog = h.runner.audit
    for i in range(7):
        store.append([AuditEntry("device.labels", actor="operator:t",
                                       devices=("dev_1" if i % 2 else "devX1",))])
    page = store.page(limit=3)
    assert len(page["entries"]) == 3 and page["next"] == page["entries"][-1]["id"]
    rest = store.page(limit=10, before=page["next"])
    assert len(rest["entries"]) == 4 and rest["next"] is None
    # '_' is not a LIKE wildcard here: devX1 does not match dev_1
    assert len(store.page(device_id="dev_1")["entries"]) == 3
    assert store.page(action="rollout.")["entries"] == []


def test_operator_labels_override_the_devices_own(h: Harness) -> None:
    registry = DeviceRegistry(h.db, h.fleet)
    h.report("pi-1", 1, labels={"site": "oslo", "hw": "pi4"})
    shown = registry.set_labels("pi-1", {"site": "berlin", "canary": "true"}, [], "operator:t")
    assert shown["labels"] == {"site": "berlin", "hw": "pi4", "canary": "true"}
    assert [d["device_id"] for d in registry.list("site=berlin,canary")] == ["pi-1"]
    assert registry.rows()["pi-1"].labels["site"] == "berlin"
    h.report("pi-2", 1, labels={"site": "oslo", "hw": "pi4"})  # the same labels' text
    # the labels alone (the sampling reconcile's read) are the rows' labels
    assert registry.labels() == {d: row.labels for d, row in registry.rows().items()}
    assert registry.labels()["pi-2"] == {"site": "oslo", "hw": "pi4"}
    back = registry.set_labels("pi-1", {}, ["site", "nothing"], "operator:t")
    assert back["labels"]["site"] == "oslo" and back["not_set"] == ["nothing"]
    with pytest.raises(ConflictError, match="come from the device's own configuration"):
        registry.set_labels("pi-1", {}, ["hw"], "operator:t")
    with pytest.raises(ValidationError, match="may only contain"):
        registry.set_labels("pi-1", {"bad key": "x"}, [], "operator:t")
    with pytest.raises(SelectorError):
        registry.list("site in berlin")
    with pytest.raises(UnknownDeviceError, match="edgewise devices register pi-9"):
        registry.set_labels("pi-9", {"a": "b"}, [], "operator:t")


def test_pre_registered_devices_are_listed_and_keep_their_labels(h: Harness) -> None:
    registry = DeviceRegistry(h.db, h.fleet)
    registry.register("pi-new", {"site": "berlin"}, "operator:t", note="rack 3")
    listed = {d["device_id"]: d for d in registry.list()}
    assert listed["pi-new"]["seen"] is False and listed["pi-new"]["labels"] == {"site": "berlin"}
    assert "pi-new" not in registry.rows()  # not a rollout target until it connects
    assert "pi-new" not in registry.labels()
    with pytest.raises(ConflictError, match="already registered"):
        registry.register("pi-new", {}, "operator:t")
    h.report("pi-new", None, labels={"site": "oslo"})
    assert registry.rows()["pi-new"].labels == {"site": "berlin"}
    assert registry.labels()["pi-new"] == {"site": "berlin"}
    with pytest.raises(ConflictError, match="has already connected"):
        registry.register("pi-new", {}, "operator:t")
    with pytest.raises(ValidationError, match="invalid device id"):
        registry.register("no spaces", {}, "operator:t")


# -- pure parts ----------------------------------------------------------------------------------

def test_p95_is_nearest_rank() -> None:
    assert p95([]) is None
    assert p95([5.0]) == 5.0
    assert p95([float(i) for i in range(1, 101)]) == 95.0
    assert p95([float(i) for i in range(1, 21)]) == 19.0
