"""Store-and-forward outbox for the agent's telemetry: an SQLite file that outlives the process.

The agent appends telemetry records as they are produced and drains them oldest first while the
broker is reachable; a record leaves the outbox only when the controller has acknowledged it::

    outbox = TelemetryOutbox(state_dir / "outbox.sqlite3")
    outbox.append_many(records)              # -> [seq, ...] of the records stored
    batch = outbox.next_batch(500)           # oldest first; every record carries its "seq"
    ...publish batch, wait for the acknowledgement...
    outbox.ack(batch[0]["seq"], batch[-1]["seq"])

Guarantees
    * Every stored record gets a ``seq`` from an ``INTEGER PRIMARY KEY AUTOINCREMENT`` column, so
      a seq is never reused, even after acks, deletes and restarts.
    * One call of :meth:`TelemetryOutbox.append_many` is one transaction: after a crash the file
      holds every committed batch whole and nothing of an uncommitted one. WAL with
      ``synchronous=NORMAL`` survives a process crash; a power loss may lose the last commits.
    * The outbox is bounded by ``max_records``. Records that do not fit are dropped (the oldest,
      :attr:`OverflowPolicy.DROP_OLDEST`) or refused (the new ones,
      :attr:`OverflowPolicy.REFUSE_NEW`); either way they are counted in ``dropped_total``, which
      is persisted with the rows, and logged at WARNING (at most once per
      :data:`DROP_LOG_INTERVAL_S`, with the count since the previous line). Never silent.
      ``DROP_OLDEST`` spares the records the caller says are in flight (sent, not yet
      acknowledged) as long as other records can go, so a dropped record is one the
      controller never received.
    * ``dropped_total`` and ``acked_total`` are written in the same transaction as the rows they
      count, so they survive restarts and agree with the rows.
    * Every file has an ``epoch``: a random integer (1 <= epoch < 2**53) drawn when the file is
      created and kept in its meta table; a file created before epochs existed keeps epoch 0.
      Seqs are unique per epoch, so the controller keys records by (device, epoch, seq) and a
      replaced file (moved aside as corrupt, a re-provisioned device) whose seq restarts at 1 is
      not taken for a replay of the old one.

How pending is counted
    ``pending`` is kept in memory: read once with ``SELECT count(*)`` at open, then moved by the
    exact number of rows each committed transaction inserted or deleted (``rowcount``). It cannot
    be derived from ``max(seq) - min(seq) + 1``: acks may delete any range (a later batch can be
    acknowledged before an earlier one), which leaves holes. The counter is exact as long as this
    object is the only writer of the file, which is the agent's case: one process, one outbox.

Threads
    The class is **not thread-safe**. It owns one connection and is meant for the agent's single
    asyncio thread. Calls may be moved to a worker thread (``asyncio.to_thread``) as long as they
    never overlap.

Only the standard library (and the wire contract's bounds) is used: this module runs on the
device. One module on purpose, past 400 lines: every method is part of one transaction
discipline over one connection (the counters written with the rows they count), and the
guarantees above hold only if nothing outside this class writes the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

from edgewise_wire.telemetry_messages import MAX_EPOCH  # the largest epoch the wire carries

log = logging.getLogger("edgewise.agent.outbox")

SCHEMA_VERSION = 1
DROP_LOG_INTERVAL_S = 10.0
BUSY_TIMEOUT_MS = 5_000
# Keep the WAL file from staying large on a small device after a burst (bytes).
JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024

# SQLite primary result codes (https://sqlite.org/rescode.html).
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26

# Compact JSON; one encoder built once (json.dumps with arguments builds one per call).
_encode = json.JSONEncoder(separators=(",", ":")).encode
_decode = json.loads

_SCHEMA = (
    "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)",
    "CREATE TABLE outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO outbox_meta (key, value) VALUES ('dropped_total', 0), ('acked_total', 0)",
)
_INSERT = "INSERT INTO outbox (body) VALUES (?)"
_INSERT_META = "INSERT INTO outbox_meta (key, value) VALUES (?, ?)"
# Epochs stay below 2**53 so that any JSON reader holds them exactly.
_SET_META = "UPDATE outbox_meta SET value = ? WHERE key = ?"


class OutboxError(Exception):
    """Base class: the outbox could not do what was asked."""


class OutboxFullError(OutboxError):
    """The disk (or ``max_db_pages``) is full: the whole batch was refused and counted as dropped."""


class OutboxCorruptError(OutboxError):
    """The file is not a usable SQLite database: :func:`move_aside` it and open a new one."""


class OverflowPolicy(str, Enum):  # noqa: UP042 -- enum.StrEnum needs Python 3.11; we support 3.10
    """What :meth:`TelemetryOutbox.append_many` does when ``max_records`` would be exceeded."""

    # Keep the newest max_records: the oldest stored records are deleted to make room.
    DROP_OLDEST = "drop_oldest"
    # Keep the oldest max_records: the new records that don't fit are not stored.
    REFUSE_NEW = "refuse_new"


@dataclass(frozen=True)
class OutboxStats:
    pending: int  # records stored and not yet acknowledged
    dropped_total: int  # records dropped or refused, ever (persisted)
    last_seq: int  # highest seq ever assigned (0 if none)
    acked_total: int  # records acknowledged, ever (persisted)


class TelemetryOutbox:
    """A bounded, crash-safe FIFO of telemetry records in one SQLite file. Not thread-safe.

    ``max_db_pages`` caps the database size in pages (``PRAGMA max_page_count``); it is a hook
    for tests and for hard size limits: past it, appends raise :class:`OutboxFullError` exactly
    as on a full disk. ``clock`` is the monotonic clock used to rate-limit drop warnings (a test
    hook).

    Raises :class:`OutboxCorruptError` if ``path`` is not a database, :class:`OutboxError` if it
    cannot be opened for another reason (permissions, locked, written by a newer agent).
    """

    def __init__(
        self,
        path: Path,
        *,
        max_records: int = 200_000,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
        max_db_pages: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        self.path = Path(path)
        self.max_records = max_records
        self.overflow = OverflowPolicy(overflow)
        self._clock = clock
        self._closed = False
        self.epoch = 0  # read from the file in _open
        self._dropped_dirty = False  # dropped_total in memory is ahead of the file
        self._drops_since_log = 0
        self._last_drop_log = float("-inf")
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise OutboxError(f"cannot open telemetry outbox {self.path}: {e}") from e
        try:
            self._open(max_db_pages)
        except sqlite3.Error as e:
            self._conn.close()
            self._closed = True
            if _is_corrupt(e):
                raise OutboxCorruptError(
                    f"telemetry outbox {self.path} is not a valid SQLite database ({e}); "
                    "move it aside and open a new one"
                ) from e
            raise OutboxError(f"cannot open telemetry outbox {self.path}: {e}") from e
        except OutboxError:
            self._conn.close()
            self._closed = True
            raise

    def _open(self, max_db_pages: int | None) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # The first statement that reads the file: a corrupt header fails here.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"telemetry outbox {self.path}: cannot enable WAL (got {mode!r})")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        if max_db_pages is not None:
            conn.execute(f"PRAGMA max_page_count = {int(max_db_pages)}")

        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                conn.execute(_INSERT_META, ("epoch", 1 + secrets.randbelow(MAX_EPOCH)))
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise OutboxError(
                    f"telemetry outbox {self.path} has schema version {version}; "
                    f"this agent knows version {SCHEMA_VERSION}"
                )
            meta = dict(conn.execute("SELECT key, value FROM outbox_meta").fetchall())
            if "epoch" not in meta:  # a file from before epochs: its records were sent as epoch 0
                conn.execute(_INSERT_META, ("epoch", 0))
                meta["epoch"] = 0
            self.epoch = int(meta["epoch"])
            self._dropped_total = int(meta.get("dropped_total", 0))
            self._acked_total = int(meta.get("acked_total", 0))
            self._pending = int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            self._last_seq = int(row[0]) if row else 0
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    # ----------------------------------------------------------------------------------- writes

    def append_many(self, records: Sequence[dict[str, Any]], *,
                    in_flight: tuple[int, int] | None = None) -> list[int]:
        """Store ``records`` in one transaction; return the seqs of those stored, in order.

        ``in_flight`` (first, last): the seqs sent and awaiting their acknowledgement.
        :attr:`OverflowPolicy.DROP_OLDEST` drops the oldest records *outside* that range first:
        a record deleted after it was sent may still reach the controller, and would then be
        both stored there and counted as dropped. Only when nothing else is left to drop are
        in-flight records dropped too.

        Records are stored as compact JSON without their seq; :meth:`next_batch` adds ``"seq"``
        on read (overwriting any ``"seq"`` key the record had). A record that is not a dict or
        that JSON cannot encode raises ``TypeError``/``ValueError``; then nothing of the batch is
        stored or counted.

        When the bound is exceeded, see :class:`OverflowPolicy`: the returned list omits the
        records refused or dropped by this call. Raises :class:`OutboxFullError` when the disk
        (or ``max_db_pages``) is full: nothing of the batch is stored, all of it is counted in
        ``dropped_total``, and the caller decides what to do (ack, retry later, discard).
        """
        # A non-object body would break next_batch for good; ~20 ns a record.
        if not all(isinstance(r, dict) for r in records):
            raise TypeError("telemetry records must be dicts (JSON objects)")
        return self._append(records, _encode, in_flight)

    def append_encoded(self, bodies: Sequence[str], *,
                       in_flight: tuple[int, int] | None = None) -> list[int]:
        """As :meth:`append_many`, for records already encoded as compact JSON objects (the
        caller's encoder must give what ``json`` would: :meth:`next_batch` decodes them)."""
        if not all(b[:1] == "{" for b in bodies):
            raise TypeError("telemetry records must be JSON objects")
        return self._append(bodies, None, in_flight)

    def _append(self, items: Sequence[Any], encode: Callable[[Any], str] | None,
                in_flight: tuple[int, int] | None) -> list[int]:
        n = len(items)
        if n == 0:
            return []
        dropped_now = 0
        to_store: Sequence[Any] = items
        if self.overflow is OverflowPolicy.REFUSE_NEW:
            room = max(0, self.max_records - self._pending)
            if n > room:
                dropped_now = n - room
                to_store = items[:room]
        elif n > self.max_records:
            # DROP_OLDEST with a batch bigger than the bound: its own oldest records would be
            # deleted right after insertion; don't store them at all.
            dropped_now = n - self.max_records
            to_store = items[dropped_now:]
        # (body,) tuples, no Python-level loop
        rows = list(zip(map(encode, to_store) if encode is not None else to_store))

        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                last = self._last_seq
                if rows:
                    conn.executemany(_INSERT, rows)
                    last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
                deleted = 0
                excess = self._pending + len(rows) - self.max_records
                if excess > 0 and self.overflow is OverflowPolicy.DROP_OLDEST:
                    # Also shrinks an outbox reopened with a smaller max_records.
                    if in_flight is not None:
                        deleted = conn.execute(
                            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
                            "WHERE seq < ? OR seq > ? ORDER BY seq LIMIT ?)",
                            (in_flight[0], in_flight[1], excess),
                        ).rowcount
                    if deleted < excess:
                        deleted += conn.execute(
                            "DELETE FROM outbox WHERE seq IN "
                            "(SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                            (excess - deleted,),
                        ).rowcount
                    dropped_now += deleted
                if dropped_now or self._dropped_dirty:
                    conn.execute(_SET_META, (self._dropped_total + dropped_now, "dropped_total"))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as e:
            if _is_full(e):
                self._count_drops(n, persist=True)
                raise OutboxFullError(
                    f"telemetry outbox {self.path} is full ({e}): refused {n} records, "
                    f"{self._dropped_total} dropped in total"
                ) from e
            raise self._translate(e, "append to") from e

        self._pending += len(rows) - deleted
        self._last_seq = last
        self._dropped_dirty = False
        if dropped_now:
            self._count_drops(dropped_now, persist=False)
        first = last - len(rows) + 1
        # AUTOINCREMENT gives consecutive seqs within one transaction: we hold the write lock
        # and each new seq is max(ever assigned) + 1.
        return list(range(first, last + 1))

    def ack(self, first_seq: int, last_seq: int) -> int:
        """Delete the records with ``first_seq <= seq <= last_seq``; return how many there were.

        Acknowledging a range twice is harmless (the second call returns 0).
        """
        deleted = self._delete(first_seq, last_seq, as_dropped=False)
        self._acked_total += deleted
        self._maybe_log_drops()
        return deleted

    def discard(self, first_seq: int, last_seq: int) -> int:
        """Delete the records ``first_seq..last_seq`` *as dropped* (counted in ``dropped_total``);
        for records that can never be delivered (e.g. larger than a message may be)."""
        deleted = self._delete(first_seq, last_seq, as_dropped=True)
        self._count_drops(deleted, persist=False)
        return deleted

    def _delete(self, first_seq: int, last_seq: int, *, as_dropped: bool) -> int:
        """Delete a seq range in one transaction, persisting the counter it adds to: dropped
        (``discard``) or acknowledged (``ack``, which also writes a dropped count not yet
        persisted). The caller updates the in-memory counter it owns."""
        if first_seq > last_seq:
            return 0
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = conn.execute(
                    "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first_seq, last_seq)
                ).rowcount
                if as_dropped:
                    conn.execute(_SET_META, (self._dropped_total + deleted, "dropped_total"))
                else:
                    if deleted:
                        conn.execute(_SET_META, (self._acked_total + deleted, "acked_total"))
                    if self._dropped_dirty:
                        conn.execute(_SET_META, (self._dropped_total, "dropped_total"))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as e:
            raise self._translate(e, "discard from" if as_dropped else "acknowledge in") from e
        self._pending -= deleted
        self._dropped_dirty = False
        return deleted

    # ------------------------------------------------------------------------------------ reads

    def next_batch(self, max_records: int = 500, after_seq: int = 0) -> list[dict[str, Any]]:
        """Return up to ``max_records`` records with ``seq > after_seq``, oldest first.

        Each record is the dict that was appended, with ``"seq"`` set. Nothing is removed: the
        records stay until :meth:`ack`. Pass the last seq sent as ``after_seq`` to read ahead
        while earlier batches await their acknowledgement.
        """
        out: list[dict[str, Any]] = []
        append = out.append
        for seq, body in self.next_raw(max_records, after_seq):
            rec = _decode(body)
            rec["seq"] = seq
            append(rec)
        return out

    def next_raw(self, max_records: int = 500, after_seq: int = 0) -> list[tuple[int, str]]:
        """As :meth:`next_batch`, but ``(seq, body)`` with the body as stored: compact JSON of
        the record without its seq (for sending without decoding every record)."""
        try:
            return self._conn.execute(
                "SELECT seq, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, max_records),
            ).fetchall()
        except sqlite3.Error as e:
            raise self._translate(e, "read from") from e

    def stats(self) -> OutboxStats:
        return OutboxStats(
            pending=self._pending,
            dropped_total=self._dropped_total,
            last_seq=self._last_seq,
            acked_total=self._acked_total,
        )

    def close(self) -> None:
        """Log any drops not yet reported and close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._maybe_log_drops(force=True)
        if self._dropped_dirty:
            self._persist_dropped()
        self._conn.close()

    def __enter__(self) -> TelemetryOutbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -------------------------------------------------------------------------------- internals

    def _count_drops(self, count: int, *, persist: bool) -> None:
        """Account for ``count`` lost records; ``persist``: write the total in its own transaction
        (otherwise the caller's committed transaction already did)."""
        self._dropped_total += count
        self._drops_since_log += count
        if persist:
            self._dropped_dirty = True
            self._persist_dropped()
        self._maybe_log_drops()

    def _persist_dropped(self) -> None:
        """Best effort: on failure the total stays in memory and the next write persists it."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(_SET_META, (self._dropped_total, "dropped_total"))
                self._conn.execute("COMMIT")
            except BaseException:
                _rollback(self._conn)
                raise
        except sqlite3.Error as e:
            log.warning(
                "telemetry outbox %s: cannot persist dropped_total=%d yet (%s)",
                self.path,
                self._dropped_total,
                e,
            )
            return
        self._dropped_dirty = False

    def _maybe_log_drops(self, *, force: bool = False) -> None:
        if not self._drops_since_log:
            return
        now = self._clock()
        if not force and now - self._last_drop_log < DROP_LOG_INTERVAL_S:
            return
        log.warning(
            "telemetry outbox %s: dropped %d records since the last report "
            "(policy %s, max_records %d, %d dropped in total)",
            self.path,
            self._drops_since_log,
            self.overflow.value,
            self.max_records,
            self._dropped_total,
        )
        self._drops_since_log = 0
        self._last_drop_log = now

    def _translate(self, e: sqlite3.Error, action: str) -> OutboxError:
        if _is_corrupt(e):
            return OutboxCorruptError(f"telemetry outbox {self.path} is corrupt ({e})")
        if isinstance(e, sqlite3.ProgrammingError) and self._closed:
            return OutboxError(f"telemetry outbox {self.path} is closed")
        return OutboxError(f"cannot {action} telemetry outbox {self.path}: {e}")


def move_aside(path: Path, tag: str | None = None) -> Path:
    """Rename an unusable outbox *and its -wal/-shm files* to ``<name>.corrupt-<tag>[-wal|-shm]``.

    The ``-wal`` may hold the last commits of the set aside database: renaming only the main
    file would separate them, and SQLite deletes a ``-wal`` it finds next to a new, empty
    database. Returns the new path of the main file. The outbox must not be open.
    """
    path = Path(path)
    aside = path.with_name(f"{path.name}.corrupt-{tag or int(time.time())}")
    for suffix in ("-wal", "-shm", ""):  # companions first: a crash in between leaves no orphan
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.rename(aside.with_name(aside.name + suffix))
    return aside


def _error_code(e: sqlite3.Error) -> int | None:
    code = getattr(e, "sqlite_errorcode", None)  # Python >= 3.11
    return None if code is None else int(code) & 0xFF  # primary code of an extended one


def _is_full(e: sqlite3.Error) -> bool:
    code = _error_code(e)
    if code is not None:
        return code == _SQLITE_FULL
    return "database or disk is full" in str(e)


def _is_corrupt(e: sqlite3.Error) -> bool:
    code = _error_code(e)
    if code is not None:
        return code in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    msg = str(e)
    return "file is not a database" in msg or "malformed" in msg


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is open; SQLite may already have rolled back (e.g. on FULL)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
