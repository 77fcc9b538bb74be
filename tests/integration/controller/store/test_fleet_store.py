"""Device state and fleet aggregates on both backends."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from controller.errors import ConflictError, NotFoundError
from controller.fleet.store import FleetStore
from controller.fleet.telemetry_store import TelemetryStore
from controller.models.registry import ModelRegistry
from controller.storage.db import Database
from edgewise_wire import Manifest, ModelRef, Reported, TelemetryBatch


@pytest.fixture
def fleet(db: Database) -> FleetStore:
    return FleetStore(db)


def batch(records: list[dict], dropped_total: int = 0) -> TelemetryBatch:
    seqs = [r["seq"] for r in records]
    return TelemetryBatch(min(seqs), max(seqs), records, dropped_total, ts=100.0)


def test_touch_registers_unknown_device(fleet: FleetStore) -> None:
    with pytest.raises(NotFoundError, match="'d1'"):
        fleet.get("d1")
    fleet.touch("d1", 10.0)
    fleet.touch("d1", 20.0)
    fleet.touch("d1", 15.0)  # late message: last_seen does not go back
    d = fleet.get("d1")
    assert (d["first_seen"], d["last_seen"], d["online"]) == (10.0, 20.0, False)
    assert (d["predictions"], d["feedback"], d["accuracy"], d["dropped_total"]) == (0, 0, None, 0)
    assert d["labels"] == {}


def test_presence(fleet: FleetStore) -> None:
    fleet.set_presence("d1", True, 5.0, "0.1.0")
    assert (fleet.get("d1")["online"], fleet.get("d1")["agent_version"]) == (True, "0.1.0")
    fleet.set_presence("d1", False, 6.0)
    d = fleet.get("d1")
    assert (d["online"], d["agent_version"], d["last_seen"]) == (False, "0.1.0", 6.0)


def test_device_class_is_kept_as_reported_and_unknown_until_then(fleet: FleetStore) -> None:
    fleet.set_presence("old", True, 5.0, "0.1.0")  # an agent from before device classes
    assert fleet.get("old")["device_class"] is None
    fleet.set_presence("cam", True, 5.0, "0.2.0", "camera-v2")
    assert fleet.get("cam")["device_class"] == "camera-v2"
    fleet.set_reported("pi", Reported(state="idle", active=None, device_class="pi4", ts=6.0))
    # a report without a class (the agent went back to an older release) keeps the known one
    fleet.set_reported("pi", Reported(state="idle", active=None, ts=7.0))
    assert fleet.get("pi")["device_class"] == "pi4"
    fleet.set_reported("pi", Reported(state="idle", active=None, device_class="pi5", ts=8.0))
    assert fleet.device_classes(["old", "cam", "pi", "nobody"]) == {"cam": "camera-v2",
                                                                    "pi": "pi5"}


def test_reported_state_stored(fleet: FleetStore) -> None:
    fleet.set_reported("d1", Reported(
        state="downloading",
        active=ModelRef("iris", 1, "a" * 64),
        target=ModelRef("iris", 2, "b" * 64),
        deployment_id="dep-2",
        last_error="retrying chunk 3",
        progress=(3, 10),
        labels={"site": "lab", "hw": "pi4"},
        agent_version="0.2.0",
        ts=42.0,
    ))
    d = fleet.get("d1")
    assert d["state"] == "downloading"
    assert (d["active_model"], d["active_version"], d["active_sha256"]) == ("iris", 1, "a" * 64)
    assert (d["target_model"], d["target_version"]) == ("iris", 2)
    assert d["reported_deployment_id"] == "dep-2"
    assert (d["last_error"], d["progress"], d["labels"]) == (
        "retrying chunk 3", (3, 10), {"site": "lab", "hw": "pi4"})
    assert (d["agent_version"], d["last_seen"]) == ("0.2.0", 42.0)

    fleet.set_reported("d1", Reported(state="active", active=ModelRef("iris", 2, "b" * 64), ts=50.0))
    d = fleet.get("d1")
    assert (d["state"], d["active_version"], d["target_model"], d["progress"]) == (
        "active", 2, None, None)
    assert d["agent_version"] == "0.2.0"


def test_desired_and_deployments(db: Database, fleet: FleetStore,
                                 make_manifest: Callable[..., Manifest],
                                 registry: ModelRegistry) -> None:
    data = b"model" * 300
    registry.register(make_manifest(data), data)
    with pytest.raises(NotFoundError):
        fleet.create_deployment("dep-1", "iris", 9)
    fleet.create_deployment("dep-1", "iris", 1, selector="site=lab")
    with pytest.raises(ConflictError):
        fleet.create_deployment("dep-1", "iris", 1)
    assert fleet.get_deployment("dep-1")["selector"] == "site=lab"
    assert [d["deployment_id"] for d in fleet.list_deployments()] == ["dep-1"]
    for dev in ("d1", "d2", "d3"):
        fleet.touch(dev, 1.0)
    assert fleet.set_desired(["d1", "d2", "unknown"], "iris", 1, "dep-1") == 2
    got = {d["device_id"]: (d["desired_model"], d["desired_version"], d["desired_deployment_id"])
           for d in fleet.list_devices()}
    assert got == {"d1": ("iris", 1, "dep-1"), "d2": ("iris", 1, "dep-1"),
                   "d3": (None, None, None)}
    assert fleet.set_desired(["d1"], None, None, None) == 1
    assert fleet.get("d1")["desired_model"] is None


def test_list_aggregates(db: Database, fleet: FleetStore) -> None:
    tel = TelemetryStore(db)
    tel.store_batch("d1", batch([
        {"seq": 1, "kind": "prediction", "ts": 1.0, "prediction_id": "p1"},
        {"seq": 2, "kind": "prediction", "ts": 2.0, "prediction_id": "p2"},
        {"seq": 3, "kind": "prediction", "ts": 3.0, "prediction_id": "p3"},
        {"seq": 4, "kind": "feedback", "ts": 4.0, "prediction_id": "p1", "correct": True},
        {"seq": 5, "kind": "feedback", "ts": 5.0, "prediction_id": "p2", "correct": False},
        {"seq": 6, "kind": "feedback", "ts": 6.0, "prediction_id": "p3", "correct": True},
        {"seq": 7, "kind": "error", "ts": 7.0, "message": "boom"},
    ], dropped_total=4), received_at=10.0)
    tel.store_batch("d2", batch([{"seq": 1, "kind": "prediction", "ts": 1.0}]), received_at=11.0)
    fleet.touch("d3", 12.0)
    rows = {d["device_id"]: (d["predictions"], d["feedback"], d["accuracy"], d["dropped_total"])
            for d in fleet.list_devices()}
    assert rows == {"d1": (3, 3, pytest.approx(2 / 3), 4), "d2": (1, 0, None, 0),
                    "d3": (0, 0, None, 0)}
    assert fleet.get("d1")["accuracy"] == pytest.approx(2 / 3)


def test_list_counts_a_columnar_record_as_its_predictions(db: Database,
                                                         fleet: FleetStore) -> None:
    tel = TelemetryStore(db)
    tel.store_batch("d1", batch([
        {"seq": 1, "kind": "predictions", "ts": 1.0, "model": "iris", "version": 1, "n": 3,
         "boot": "b", "pid": [0, 1, 2], "latency_ms": 1.0, "labels": [0, 1, 0]},
        {"seq": 2, "kind": "prediction", "ts": 2.0, "prediction_id": "b-3"},
        {"seq": 3, "kind": "feedback", "ts": 3.0, "prediction_id": "b-1", "correct": True},
    ]), received_at=10.0)
    row = fleet.get("d1")
    assert (row["predictions"], row["feedback"]) == (4, 1)


def test_dropped_total_is_monotonic(fleet: FleetStore) -> None:
    fleet.touch("d1", 1.0)
    fleet.set_dropped_total("d1", 5)
    fleet.set_dropped_total("d1", 3)
    assert fleet.get("d1")["dropped_total"] == 5


def test_device_ids_lists_every_registered_device_in_order(db) -> None:  # type: ignore[no-untyped-def]
    from controller.fleet.store import FleetStore

    fleet = FleetStore(db)
    for device_id in ("pi-2", "pi-1", "pi-3"):
        fleet.touch(device_id, 1.0)
    assert fleet.device_ids() == ["pi-1", "pi-2", "pi-3"]
    assert fleet.device_ids() == [d["device_id"] for d in fleet.list_devices()]
