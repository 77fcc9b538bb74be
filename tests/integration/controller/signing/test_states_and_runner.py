"""The new update states in the controller's views and gates, the rollout's probation, and the
rollout runner signing what it publishes: on a real SQLite database, without a broker (the
runner's ``publish`` is a recorder, devices are driven by writing what they would report)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.fleet.device_registry import DeviceRow
from controller.fleet.store import FleetStore
from controller.models.artifact_store import ArtifactStore
from controller.models.queries import ModelViews
from controller.models.registry import ModelRegistry
from controller.rollouts import SpecError
from controller.rollouts.deployment_views import DeploymentViews
from controller.rollouts.gates import FAILED_ACTIVATIONS, Gates, ModelVersion, evaluate_gates
from controller.rollouts.observations import observe
from controller.rollouts.runner import RolloutRunner
from controller.rollouts.spec_parse import spec_from_dict, spec_to_dict
from controller.security.desired_signer import DesiredSigner
from controller.security.signing import generate_keypair
from controller.storage import migrator
from controller.storage.db import Database
from controller.web.rollup import DeviceFacts
from edgewise_wire import Desired, ModelRef, ProbationPolicy, Reported
from edgewise_wire.envelope import trusted_keys_from, verify_rollback_order
from edgewise_wire.update_states import IN_PROGRESS_STATES, REST_STATES, gave_up_on, runs
from edgewise_wire.update_states import UPDATE_STATE_NAMES as UPDATE_STATES
from tests.integration.controller.store.conftest import build_manifest

V1, V2 = ModelVersion("iris", 1), ModelVersion("iris", 2)


def test_every_update_state_is_either_in_progress_or_at_rest() -> None:
    assert set(UPDATE_STATES) == IN_PROGRESS_STATES | REST_STATES
    assert not IN_PROGRESS_STATES & REST_STATES
    assert {"staged", "activating", "probation", "rolling_back"} <= IN_PROGRESS_STATES


@pytest.mark.parametrize(("state", "active", "done", "failed"), [
    ("active", V2, True, False),
    ("probation", V2, False, False),  # serving, not committed: not done yet
    ("staged", V1, False, False),
    ("rolling_back", V2, False, False),
    ("rolled_back", V1, False, True),  # gave up on v2, back on v1
    ("rolled_back", V2, True, False),  # rolled back onto v2 (a revert or a downgrade to it)
    ("failed", V1, False, True),
])
def test_done_and_failed_for_a_target(state: str, active: ModelVersion, done: bool,
                                      failed: bool) -> None:
    assert runs(state, active, V2) is done
    assert gave_up_on(state, active, V2) is failed


def row(device: str, state: str, active: ModelVersion | None,
        target: ModelVersion | None) -> DeviceRow:
    return DeviceRow(device, True, {}, state, active, target, V2, "ro-1", 0.0)


def test_gates_count_a_rollback_away_from_the_target_as_a_failed_activation() -> None:
    rows = {"a": row("a", "rolled_back", V1, V2),  # tried v2, probation failed
            "b": row("b", "rolled_back", V1, ModelVersion("iris", 0)),  # an older failure
            "c": row("c", "probation", V2, V2),
            "d": row("d", "active", V2, V2)}
    obs = observe(rows, list(rows), V2)
    assert [d for d, o in obs.items() if o.failed_on(V2)] == ["a"]
    assert [d for d, o in obs.items() if o.runs(V2)] == ["d"]
    results = {g.name: g for g in evaluate_gates(Gates(min_reporting_share=0.25), list(rows),
                                                 obs, V2)}
    assert results[FAILED_ACTIVATIONS].value == 1 and results[FAILED_ACTIVATIONS].failed


def test_fleet_views_count_rollbacks_by_what_the_device_should_run() -> None:
    away = DeviceFacts("a", {}, True, "rolled_back", "iris", 1, "iris", 2)
    onto = DeviceFacts("b", {}, True, "rolled_back", "iris", 1, "iris", 1)
    assert away.update_failed and not onto.update_failed
    assert DeviceFacts("c", {}, True, "failed", "iris", 1).update_failed
    assert not DeviceFacts("d", {}, True, "probation", "iris", 2, "iris", 2).update_failed


def test_rollout_spec_takes_a_probation_policy() -> None:
    spec = spec_from_dict({"model": "iris", "version": 2,
                           "probation": {"duration_s": 120, "max_p95_latency_ms": 40}})
    assert spec.probation == ProbationPolicy(120.0, max_p95_latency_ms=40.0)
    assert spec_from_dict(spec_to_dict(spec)) == spec
    assert "probation" not in spec_to_dict(spec_from_dict({"model": "iris", "version": 2}))
    with pytest.raises(SpecError, match="probation.duration_s"):
        spec_from_dict({"model": "iris", "version": 2, "probation": {"duration_s": -1}})
    with pytest.raises(SpecError, match="unknown key"):
        spec_from_dict({"model": "iris", "version": 2, "probation": {"seconds": 5}})


# -- the runner, signing -------------------------------------------------------------------------

class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.db = Database(str(tmp_path / "c.sqlite"))
        migrator.upgrade(self.db)
        self.registry = ModelRegistry(self.db, ArtifactStore(tmp_path / "artifacts"))
        self.fleet = FleetStore(self.db)
        private, public, _ = generate_keypair()
        self.trusted = trusted_keys_from([public])
        self.published: list[tuple[str, Desired]] = []
        self.runner = RolloutRunner(self.db, self.registry, self.fleet,
                                    lambda d, m: self.published.append((d, m)), lambda: 1,
                                    signer=DesiredSigner(lambda: private, ttl_s=600.0))
        self.refs: dict[int, ModelRef] = {}
        for seed in (1, 2):
            m = self.registry.register(build_manifest(bytes([seed]) * 3000), bytes([seed]) * 3000)
            self.refs[m.version] = ModelRef("iris", m.version, m.artifact.sha256)

    def report(self, device: str, version: int | None, state: str = "active",
               target: int | None = None) -> None:
        self.fleet.set_reported(device, Reported(
            state=state, active=self.refs[version] if version else None,
            target=self.refs[target] if target else None, labels={"site": "x"}))

    def told(self) -> dict[str, Desired]:
        return dict(self.published)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.db.dispose()


def test_runner_signs_waves_with_the_probation_and_every_revert_with_an_order(
        h: Harness) -> None:
    h.report("on-v1", 1)
    h.report("on-none", None, state="idle")
    view = asyncio.run(h.runner.create({
        "model": "iris", "version": 2, "waves": "100%", "soak_seconds": 600,
        "probation": {"duration_s": 30}}, "operator:t"))
    asyncio.run(h.runner.tick())
    sent = h.told()
    assert set(sent) == {"on-v1", "on-none"}
    for desired in sent.values():
        assert desired.envelope is not None and desired.rollback_order is None
        assert desired.probation == ProbationPolicy(30.0)
    h.report("on-v1", 2, state="probation", target=2)
    h.report("on-none", 2, state="active", target=2)
    h.published.clear()
    asyncio.run(h.runner.abort(str(view["id"]), "operator:t", "test"))
    reverts = h.told()
    orders = {d: verify_rollback_order(m.rollback_order, h.trusted, now=m.ts, device_id=d)
              for d, m in reverts.items()}
    assert (orders["on-v1"].model, orders["on-v1"].to_version) == ("iris", 1)
    assert reverts["on-v1"].manifest is not None and reverts["on-v1"].manifest.version == 1
    assert (orders["on-none"].model, orders["on-none"].to_version) == ("iris", 0)
    assert reverts["on-none"].manifest is None and reverts["on-none"].envelope is None
    assert all(m.probation is None for m in reverts.values())  # the old version: no window

    # sent again after a reconnect: still signed, still with the orders
    h.published.clear()
    asyncio.run(h.runner.republish())
    again = h.told()
    assert set(again) == {"on-v1", "on-none"}
    assert all(m.rollback_order is not None for m in again.values())


def test_a_downgrade_rollout_carries_an_order_and_republish_keeps_the_probation(
        h: Harness) -> None:
    h.report("dev", 2)
    asyncio.run(h.runner.create({"model": "iris", "version": 1, "waves": "100%",
                                 "soak_seconds": 0, "probation": {"duration_s": 5}},
                                "operator:t"))
    asyncio.run(h.runner.tick())
    (device, desired), = h.published
    order = verify_rollback_order(desired.rollback_order, h.trusted, now=desired.ts,
                                  device_id="dev")
    assert (order.model, order.to_version) == ("iris", 1)
    h.published.clear()
    asyncio.run(h.runner.republish())
    (_, again), = h.published
    assert again.probation == ProbationPolicy(5.0) and again.rollback_order is not None


def test_deployment_progress_counts_probation_as_installing_and_rollbacks_as_failed(
        h: Harness) -> None:
    h.fleet.create_deployment("dep-x", "iris", 2)
    for device in ("ok", "trying", "back", "onto"):
        h.report(device, 1)
    h.fleet.set_desired(["ok", "trying", "back", "onto"], "iris", 2, "dep-x")
    h.report("ok", 2, state="active", target=2)
    h.report("trying", 2, state="probation", target=2)
    h.report("back", 1, state="rolled_back", target=2)
    h.report("onto", 2, state="rolled_back", target=2)
    progress = DeploymentViews(h.db, h.fleet).deployment_progress("dep-x")
    assert (progress["active"], progress["installing"], progress["failed"]) == (2, 1, 1)
    assert [f["device_id"] for f in progress["failed_devices"]] == ["back"]
    placement = ModelViews(h.db, h.registry).version_placement("iris")
    assert placement[2]["failed"] == 1 and placement[2]["installing"] == 1


def test_unsigned_without_a_signer_as_before(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.runner.signer = None
    h.report("dev", 1)
    asyncio.run(h.runner.create({"model": "iris", "version": 2, "waves": "100%"}, "op"))
    asyncio.run(h.runner.tick())
    (_, desired), = h.published
    assert desired.envelope is None and desired.manifest is not None
    assert desired.manifest.version == 2
    h.db.dispose()


def test_controller_creates_its_key_at_start_and_checks_a_deployments_probation(
        tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from controller.app.api import create_app
    from controller.app.service import Controller
    from controller.config import ControllerConfig
    from controller.security.signing_keys import SigningKeys

    controller = Controller(ControllerConfig(data_dir=tmp_path))
    try:
        assert SigningKeys.for_data_dir(tmp_path).active() is not None
        again = Controller(ControllerConfig(data_dir=tmp_path))  # a restart keeps the key
        assert len(SigningKeys.for_data_dir(tmp_path).all()) == 1
        again.db.dispose()
        with TestClient(create_app(controller)) as client:
            response = client.post("/api/v1/deployments", json={
                "model": "iris", "probation": {"duration_s": -5}})
        assert response.status_code == 422
        assert "probation.duration_s" in response.json()["detail"]
    finally:
        controller.db.dispose()
