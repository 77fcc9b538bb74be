"""The staged and previous slots an agent reports are stored (revision 0006) and read back, on
SQLite and PostgreSQL; a database at revision 0005 is upgraded in place."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from controller.fleet.store import FleetStore
from controller.storage import migrator
from controller.storage.db import Database
from controller.storage.tables import devices
from edgewise_wire import ModelRef, Reported

SLOT_COLUMNS = {f"{slot}_{part}" for slot in ("staged", "previous")
                for part in ("model", "version", "sha256")}
V1, V2, V3 = (ModelRef("iris", v, c * 64) for v, c in ((1, "a"), (2, "b"), (3, "c")))


@pytest.fixture
def fleet(db: Database) -> FleetStore:
    """On every backend of tests/integration/controller/store/conftest.py (``db_url``, ``db``)."""
    return FleetStore(db)


def slots(d: dict[str, object]) -> dict[str, object]:
    return {k: d[k] for k in sorted(SLOT_COLUMNS)}


def test_staged_and_previous_are_stored_and_cleared(fleet: FleetStore) -> None:
    fleet.set_reported("d1", Reported(state="staged", active=V2, target=V3, staged=V3,
                                      previous=V1, ts=10.0))
    d = fleet.get("d1")
    assert slots(d) == {"previous_model": "iris", "previous_sha256": "a" * 64,
                        "previous_version": 1, "staged_model": "iris",
                        "staged_sha256": "c" * 64, "staged_version": 3}
    assert (d["state"], d["active_version"], d["target_version"]) == ("staged", 2, 3)
    # the same row through the list the fleet views start from
    assert slots(fleet.list_devices()[0]) == slots(d)

    # activated: nothing staged any more, the old active version is now the previous slot
    fleet.set_reported("d1", Reported(state="probation", active=V3, previous=V2, ts=11.0))
    d = fleet.get("d1")
    assert (d["staged_model"], d["staged_version"], d["staged_sha256"]) == (None, None, None)
    assert (d["previous_model"], d["previous_version"], d["previous_sha256"]) == (
        "iris", 2, "b" * 64)

    # a report without slots (an agent from before slots and signed updates) clears them
    fleet.set_reported("d1", Reported(state="active", active=V3, ts=12.0))
    assert set(slots(fleet.get("d1")).values()) == {None}


def test_an_older_report_does_not_overwrite_the_slots(fleet: FleetStore) -> None:
    fleet.set_reported("d1", Reported(state="probation", active=V2, previous=V1, ts=20.0))
    fleet.set_reported("d1", Reported(state="staged", active=V1, staged=V2, ts=19.0))
    d = fleet.get("d1")
    assert (d["state"], d["previous_version"], d["staged_model"]) == ("probation", 1, None)
    assert fleet.stale_reports == 1


def test_revision_6_adds_the_slot_columns_to_a_v5_database(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert migrator.upgrade(db, "0005")[-1] == "0005"
        with db.write() as conn:  # a database as revisions 1-5 left it, with a device in it
            before = {c["name"] for c in sa.inspect(conn).get_columns("devices")}
            conn.execute(devices.insert().values(  # v1 columns only
                device_id="old", first_seen=1.0, last_seen=1.0, state="active",
                active_model="iris", active_version=1))
        assert not before & SLOT_COLUMNS  # revision 1 still creates the v1 devices table
        applied = migrator.upgrade(db)
        assert applied[0] == "0006" and applied[-1] == migrator.head()  # and every later one
        assert migrator.upgrade(db) == []
        with db.read() as conn:
            after = {c["name"] for c in sa.inspect(conn).get_columns("devices")}
        # revision 0018 adds the agent's self-update columns on the way to head, 0019 the
        # device class
        assert after == before | SLOT_COLUMNS | {"agent_update_target", "agent_update_state",
                                                 "device_class"}
        fleet = FleetStore(db)
        old = fleet.get("old")
        assert (old["active_model"], old["active_version"]) == ("iris", 1)
        assert set(slots(old).values()) == {None}
        fleet.set_reported("old", Reported(state="probation", active=V2, previous=V1, ts=5.0))
        assert fleet.get("old")["previous_version"] == 1
    finally:
        db.dispose()
