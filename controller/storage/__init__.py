"""The controller's database: engine set-up for SQLite or PostgreSQL (:mod:`.db`), the tables every
store reads and writes, and the registered migrations that bring a database to the current
schema (:mod:`.migrations`)."""

from controller.storage.db import Database

MAX_ID = 2**63 - 1  # row ids are 64-bit; a larger number names no row

__all__ = ["MAX_ID", "Database"]
