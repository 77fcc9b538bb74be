"""Rollouts in the controller's database.

A rollout row holds its spec and the engine's :class:`~controller.rollouts.RolloutState`, both
as JSON, and a ``revision`` that every save compares and bumps: two writers (the runner's tick
and an operator's pause, or two controller replicas) can never both act on the same state; the
loser gets :class:`StaleRollout` and decides again from what is stored.

A save also records, in the same transaction, the desired model of every device the decision
sends something to (``devices.desired_*``), so the state and the orders it implies are never
out of step, whatever moment the process dies at; the runner publishes only after the commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from controller.audit.store import AuditEntry, write_audit
from controller.errors import ConflictError, NotFoundError, ValidationError
from controller.fleet.versions import ModelVersion
from controller.rollouts.engine import RolloutState, Status
from controller.rollouts.spec import RolloutSpec
from controller.rollouts.spec_parse import spec_from_dict, spec_to_dict
from controller.storage import MAX_ID
from controller.storage.db import Database
from controller.storage.tables import devices, rollouts

_IN_CHUNK = 500

# Statuses in which a rollout holds its devices exclusively: another rollout overlapping it is a
# conflict (refused, or preemption by priority).
LIVE = frozenset({Status.PENDING, Status.RUNNING, Status.SOAKING, Status.PAUSED,
                  Status.ABORTING})
# A completed rollout keeps its devices (and takes late joiners) until a newer one takes them.
OWNING = LIVE | {Status.COMPLETED}
FINISHED = frozenset({Status.COMPLETED, Status.ABORTED, Status.FAILED})


class StaleRollout(ConflictError):
    """The rollout changed since it was read (another writer saved first); read it again."""


@dataclass(frozen=True)
class DesiredChange:
    """Devices whose desired model a save records (model None: run no model)."""

    devices: Sequence[str]
    model: ModelVersion | None
    deployment_id: str


@dataclass(frozen=True)
class RolloutRecord:
    id: int
    name: str
    spec: RolloutSpec
    state: RolloutState
    revision: int
    created_at: float
    updated_at: float
    created_by: str

    @property
    def status(self) -> Status:
        return self.state.status

    @property
    def target(self) -> ModelVersion:
        return ModelVersion(self.spec.model, self.spec.version)

    @property
    def label(self) -> str:
        """How errors and the CLI name it: ``#7 iris:2`` (or ``#7 name``)."""
        return f"#{self.id} {self.spec.display_name}"

    @property
    def deployment_id(self) -> str:
        """The ``deployment_id`` of the desired states this rollout sends."""
        return deployment_id(self.id)

    @property
    def revert_deployment_id(self) -> str:
        return deployment_id(self.id, revert=True)


def deployment_id(rollout_id: int, revert: bool = False) -> str:
    return f"ro-{rollout_id}" + ("-revert" if revert else "")


def rollout_of(deployment: str | None) -> int | None:
    """The rollout id a ``deployment_id`` belongs to (``ro-7``, ``ro-7-revert``), else None."""
    if not deployment or not deployment.startswith("ro-"):
        return None
    number = deployment[3:].removesuffix("-revert")
    return int(number) if number.isdigit() else None




class RolloutStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, spec: RolloutSpec, state: RolloutState, actor: str,
               audit: Sequence[AuditEntry] = (),
               releases: Sequence[tuple[RolloutRecord, RolloutState, Sequence[AuditEntry]]] = (),
               now: float | None = None) -> RolloutRecord:
        """Insert a rollout and, in the same transaction, save the states of the rollouts it
        took devices from (compare-and-swap: :class:`StaleRollout` if one moved meanwhile)."""
        now = time.time() if now is None else now
        with self.db.write() as conn:
            for record, new_state, entries in releases:
                self._save(conn, record, new_state, now)
                write_audit(conn, now, entries, record.id)
            result = conn.execute(rollouts.insert().values(
                name=spec.display_name[:128],
                # an agent rollout names no model version (its agent version is in the spec)
                model=spec.model if spec.kind == "model" else None,
                version=spec.version if spec.kind == "model" else None,
                spec_json=json.dumps(spec_to_dict(spec), sort_keys=True),
                state_json=json.dumps(state.to_dict(), sort_keys=True),
                status=state.status.value, priority=spec.priority, revision=0,
                created_at=now, updated_at=now, created_by=actor[:128]))
            key = result.inserted_primary_key
            assert key is not None
            new_id = int(key[0])
            write_audit(conn, now, audit, new_id)
        return self.get(new_id)

    def save(self, record: RolloutRecord, state: RolloutState,
             audit: Sequence[AuditEntry] = (), desired: Sequence[DesiredChange] = (),
             now: float | None = None) -> RolloutRecord:
        """Store ``state`` if the row is still at ``record.revision``; record the desired
        models in the same transaction. Returns the saved record (revision + 1)."""
        now = time.time() if now is None else now
        with self.db.write() as conn:
            self._save(conn, record, state, now)
            for change in desired:
                set_desired(conn, change)
            write_audit(conn, now, audit, record.id)
        return RolloutRecord(record.id, record.name, record.spec, state, record.revision + 1,
                             record.created_at, now, record.created_by)

    def _save(self, conn: sa.Connection, record: RolloutRecord, state: RolloutState,
              now: float) -> None:
        result = conn.execute(
            rollouts.update()
            .where(rollouts.c.id == record.id, rollouts.c.revision == record.revision)
            .values(state_json=json.dumps(state.to_dict(), sort_keys=True),
                    status=state.status.value, revision=record.revision + 1, updated_at=now))
        if result.rowcount != 1:
            raise StaleRollout(f"rollout {record.label} changed while this request was "
                               "deciding; try again")

    def get(self, rollout_id: int) -> RolloutRecord:
        if not 0 <= rollout_id <= MAX_ID:
            raise NotFoundError("rollout", rollout_id)
        with self.db.read() as conn:
            row = conn.execute(sa.select(rollouts).where(rollouts.c.id == rollout_id)).first()
        if row is None:
            raise NotFoundError("rollout", rollout_id)
        return _record(row)

    def find(self, ref: str) -> RolloutRecord:
        """A rollout by id (``7``, ``#7``) or by name (the newest of that name)."""
        text = ref.strip().removeprefix("#")
        if text.isascii() and text.isdigit():
            # thousands of digits would pass Python's int-parsing limit before the range check
            if len(text.lstrip("0")) > len(str(MAX_ID)) or int(text) > MAX_ID:
                raise NotFoundError("rollout", ref)
            return self.get(int(text))
        with self.db.read() as conn:
            row = conn.execute(sa.select(rollouts).where(rollouts.c.name == ref)
                               .order_by(rollouts.c.id.desc()).limit(1)).first()
        if row is None:
            raise NotFoundError("rollout", ref)
        return _record(row)

    def query(self, statuses: Iterable[Status] | None = None, limit: int | None = None,
             skip_corrupt: bool = True) -> list[RolloutRecord]:
        """Rollouts, oldest first (newest ``limit`` ones if given)."""
        q = sa.select(rollouts).order_by(rollouts.c.id.desc())
        if statuses is not None:
            q = q.where(rollouts.c.status.in_([s.value for s in statuses]))
        if limit is not None:
            q = q.limit(limit)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
        out = []
        for row in reversed(rows):
            try:
                out.append(_record(row))
            except ValidationError:
                if not skip_corrupt:
                    raise
        return out

    def corrupt(self) -> list[int]:
        """Ids of rows whose spec or state cannot be read (reported, never acted on)."""
        bad = []
        with self.db.read() as conn:
            for row in conn.execute(sa.select(rollouts)):
                try:
                    _record(row)
                except ValidationError:
                    bad.append(int(row.id))
        return bad

    def save_desired(self, change: DesiredChange, audit: Sequence[AuditEntry] = (),
                     now: float | None = None) -> None:
        """Record a desired model outside any rollout (an all-at-once deployment), audited."""
        with self.db.write() as conn:
            set_desired(conn, change)
            write_audit(conn, time.time() if now is None else now, audit)



def set_desired(conn: sa.Connection, change: DesiredChange) -> None:
    model = change.model
    ids = list(change.devices)
    for i in range(0, len(ids), _IN_CHUNK):
        conn.execute(devices.update().where(devices.c.device_id.in_(ids[i:i + _IN_CHUNK]))
                     .values(desired_model=model.model if model else None,
                             desired_version=model.version if model else None,
                             desired_deployment_id=change.deployment_id))


def _record(row: Any) -> RolloutRecord:
    try:
        spec = spec_from_dict(json.loads(row.spec_json))
        state = RolloutState.from_dict(json.loads(row.state_json))
    except (ValueError, TypeError) as exc:  # SpecError and ValidationError are ValueErrors
        raise ValidationError(f"rollout #{row.id} cannot be read: {exc}") from exc
    return RolloutRecord(id=int(row.id), name=row.name, spec=spec, state=state,
                         revision=int(row.revision), created_at=float(row.created_at),
                         updated_at=float(row.updated_at), created_by=row.created_by)
