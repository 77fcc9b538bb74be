"""The controller's telemetry ingest alone, in a process a test can SIGKILL: the real
:class:`~controller.fleet.bridge.ControllerBridge` and :class:`TelemetryStore` on a database,
nothing else (no REST, no rollouts)::

    python -m tests.harness.ingest_process --db URL --broker HOST:PORT \
        [--commit-delay 0.3 --marker PATH]

``--commit-delay`` holds every transaction open that long just before its COMMIT, after touching
``--marker``: a test that sees the marker and kills the process kills it in the middle of a
group commit, with the group's rows written and not committed.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from controller.fleet.bridge import ControllerBridge
from controller.fleet.store import FleetStore
from controller.fleet.telemetry_store import TelemetryStore
from controller.storage import migrator
from controller.storage.db import Database
from edgewise_mqtt.link import BrokerAddress
from tests.harness.bridges import NoArtifacts


async def _serve(db: Database, broker: BrokerAddress) -> None:
    bridge = ControllerBridge(broker, FleetStore(db), TelemetryStore(db), NoArtifacts(),
                              client_id=f"ew-ingest-test-{time.time_ns()}")
    await bridge.start()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--commit-delay", type=float, default=0.0)
    parser.add_argument("--marker", type=Path)
    args = parser.parse_args()
    db = Database(args.db)
    migrator.upgrade(db)
    if args.commit_delay:
        @event.listens_for(db.engine, "commit")
        def _slow_commit(_conn: Any) -> None:
            if args.marker is not None:
                args.marker.touch()
            time.sleep(args.commit_delay)

    host, port = args.broker.rsplit(":", 1)
    asyncio.run(_serve(db, BrokerAddress(host, int(port))))


if __name__ == "__main__":
    main()
