"""The controller's database: engine set-up for SQLite or PostgreSQL (:mod:`.db`), the tables every
store reads and writes (:mod:`.tables`), the insert the telemetry window sinks share
(:mod:`.windows`), and the Alembic revisions (:mod:`.migrations`) that
:mod:`.migrator` applies to bring a database to those tables, or back."""

from controller.storage.db import Database

MAX_ID = 2**63 - 1  # row ids are 64-bit; a larger number names no row

__all__ = ["MAX_ID", "Database"]
