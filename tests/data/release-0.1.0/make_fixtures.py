"""Make the release-0.1.0 database fixtures: an SQLite file and a PostgreSQL dump, each made by the
release's own migrations and holding one row or more in every table.

Run it from a checkout of the release (see README.md here), not from the current code: the point
of the fixtures is a database the current code did not make.

    python tests/data/release-0.1.0/make_fixtures.py OUT_DIR [PG_ADMIN_URL]

writes OUT_DIR/edgewise.sqlite.gz and OUT_DIR/edgewise.pg.sql.gz (the latter needs ``pg_dump`` and
a PostgreSQL server; PG_ADMIN_URL defaults to postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import gzip
import json
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from controller.storage.db import Database
from controller.storage.tables import metadata

T0 = 1_700_000_000.0  # a fixed time, so both files hold the same rows


def rows() -> dict[str, list[dict[str, object]]]:
    """The rows written, per table, in an order that satisfies the foreign keys."""
    manifest = {"model": "iris", "version": 1, "format": "onnx", "task": "classification"}
    return {
        "models": [{"name": "iris", "task": "classification", "created_at": T0}],
        "model_versions": [
            {"model": "iris", "version": v, "sha256": f"{v:064x}", "size": 1024 * v,
             "format": "onnx", "manifest_json": json.dumps({**manifest, "version": v}),
             "created_at": T0 + v} for v in (1, 2)],
        "devices": [
            {"device_id": f"pi-{i}", "first_seen": T0, "last_seen": T0 + 60, "online": i == 1,
             "labels_json": json.dumps({"site": "berlin"}), "state": "IDLE",
             "active_model": "iris", "active_version": 1, "active_sha256": f"{1:064x}",
             "agent_version": "0.1.0", "dropped_total": 3 * i,
             "staged_model": "iris" if i == 1 else None, "staged_version": 2 if i == 1 else None,
             "staged_sha256": f"{2:064x}" if i == 1 else None}
            for i in (1, 2)],
        "deployments": [{"deployment_id": "dep-1", "model": "iris", "version": 1,
                         "created_at": T0 + 5, "selector": "site=berlin"}],
        "telemetry": [
            {"device_id": "pi-1", "epoch": epoch, "seq": seq, "kind": "prediction",
             "ts": T0 + seq, "model": "iris", "version": 1, "prediction_id": f"p-{epoch}-{seq}",
             "latency_ms": 1.5, "correct": seq % 2 == 0, "payload_json": "{}",
             "received_at": T0 + seq + 0.1}
            for epoch in (0, 7) for seq in (1, 2, 3)],
        "rollouts": [{"id": 1, "name": "canary", "model": "iris", "version": 2,
                      "spec_json": "{}", "state_json": "{}", "status": "running", "priority": 1,
                      "revision": 4, "created_at": T0 + 10, "updated_at": T0 + 20,
                      "created_by": "ops"}],
        "audit_log": [{"id": 1, "ts": T0 + 10, "actor": "ops", "action": "rollout.create",
                       "rollout_id": 1, "device_ids_json": '["pi-1"]', "detail_json": "{}"}],
        "device_labels": [{"device_id": "pi-1", "key": "ring", "value": "canary",
                           "set_at": T0, "set_by": "ops"}],
        "device_registrations": [{"device_id": "pi-3", "registered_at": T0,
                                  "registered_by": "ops", "note": "spare"}],
        "metrics": [{"device_id": "pi-1", "model": "iris", "version": 1, "window_start": T0,
                     "window_end": T0 + 60, "epoch": 7, "seq": 3, "predictions": 100,
                     "errors": 1, "labelled": 10, "accuracy": 0.9, "p95_latency_ms": 2.0,
                     "drift_psi": 0.05, "drifted": False, "summary_json": "{}",
                     "received_at": T0 + 61, "evaluated": True}],
        "alert_states": [{"kind": "accuracy", "device_id": "pi-1", "firing": True,
                          "bad_streak": 2, "good_streak": 0, "model": "iris", "version": 1,
                          "value": 0.6, "threshold": 0.8, "since": T0 + 30,
                          "updated_at": T0 + 40, "detail": "below"}],
        "alert_events": [{"id": 1, "ts": T0 + 30, "kind": "accuracy", "device_id": "pi-1",
                          "event": "fired", "model": "iris", "version": 1, "value": 0.6,
                          "threshold": 0.8, "detail": "below", "context_json": "{}"}],
        "retrain_runs": [{"id": 1, "started_at": T0 + 50, "finished_at": T0 + 55,
                          "kind": "accuracy", "model": "iris", "version": 1,
                          "action": "log", "status": "done", "detail": "",
                          "new_version": None, "context_json": "{}"}],
        "device_history": [{"id": 1, "device_id": "pi-1", "ts": T0 + 1, "recorded_at": T0 + 2,
                            "state": "IDLE", "model": "iris", "version": 1,
                            "sha256": f"{1:064x}"}],
        "leases": [{"name": "leader", "holder": "replica-a", "expires_at": T0 + 30,
                    "acquired_at": T0, "term": 5}],
        "reported_order": [{"device_id": "pi-1", "ts": T0 + 1}],
        "watch_states": [{"scope_key": "device:pi-1", "model": "iris", "version": 1,
                          "state_json": "{}", "updated_at": T0 + 40}],
    }


def fill(url: str) -> None:
    db = Database(url)
    try:
        db.migrate()
        with db.write() as conn:
            for name, table_rows in rows().items():
                conn.execute(metadata.tables[name].insert(), table_rows)
            if db.dialect_name == "postgresql":  # explicit ids leave the sequences behind
                for name in ("rollouts", "audit_log", "alert_events", "retrain_runs",
                             "device_history"):
                    conn.execute(sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"(SELECT max(id) FROM {name}))"))
    finally:
        db.dispose()


def make_sqlite(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "edgewise.db"
        fill(str(path))
        with sa.create_engine(f"sqlite:///{path}").connect() as conn:  # fold the WAL in
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
        (out / "edgewise.sqlite.gz").write_bytes(gzip.compress(path.read_bytes(), mtime=0))


def make_postgres(out: Path, admin_url: str) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"ew_release_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin_url).set(database=name)
        fill(url.render_as_string(hide_password=False))
        # plain SQL with INSERTs (no COPY), so a test can replay it through the driver
        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        dump = subprocess.run(["pg_dump", "--no-owner", "--no-privileges", "--column-inserts",
                               libpq], check=True, capture_output=True).stdout
        (out / "edgewise.pg.sql.gz").write_bytes(gzip.compress(dump, mtime=0))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    make_sqlite(out)
    make_postgres(out, argv[1] if len(argv) > 1
                  else "postgresql+psycopg://postgres@127.0.0.1:5432/test")


if __name__ == "__main__":
    main(sys.argv[1:])
