"""The device registry: who the devices are and which labels selectors see on them.

A device registers itself on first contact (``fleet_store.touch``) and reports the labels of its
configuration (``[labels]`` in agent.toml) with every ``reported`` message. An operator can also
register a device before it ever connects, and set labels of their own on any device.

Label precedence, one rule: **the operator's label wins**. The labels a selector sees are the
device's own labels with the operator's laid over them, key by key::

    effective = {**labels the device reports, **labels the operator set}

Removing an operator label uncovers the device's own value again. A label that exists only in
the device's configuration cannot be removed from the controller (the device would report it
again); override it with another value or change the device's configuration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from controller.audit.store import AuditEntry, write_audit
from controller.errors import ConflictError, NotFoundError, ValidationError
from controller.fleet.selectors import label_problem, parse_selector
from controller.fleet.store import FleetStore
from controller.fleet.versions import ModelVersion
from controller.storage.db import Database
from controller.storage.tables import device_labels, device_registrations, devices
from edgewise_wire.errors import ProtocolError
from edgewise_wire.topics import validate_device_id


class UnknownDeviceError(NotFoundError):
    """Neither seen nor pre-registered; the message says how to register it."""

    def __init__(self, device_id: str) -> None:
        super().__init__("device", device_id)
        self.args = (f"device {device_id!r} is not known: it has never connected and is not "
                     f"pre-registered; register it with `edgewise devices register {device_id}`",)


@dataclass(frozen=True)
class DeviceRow:
    """What the rollout runner needs of one device, read once per tick for the whole fleet."""

    device_id: str
    online: bool
    labels: Mapping[str, str]  # effective labels
    state: str | None
    active: ModelVersion | None
    target: ModelVersion | None
    desired: ModelVersion | None
    desired_deployment_id: str | None
    last_seen: float
    # the agent it runs and its self-update as last reported (what agent rollouts judge)
    agent_version: str = ""
    agent_update_target: str | None = None
    agent_update_state: str | None = None
    device_class: str | None = None  # as the agent reports it; None: unknown (an older agent)


def effective_labels(own: Mapping[str, str], operator: Mapping[str, str]) -> dict[str, str]:
    """The labels selectors see: the operator's labels laid over the device's own."""
    return {**own, **operator}


class DeviceRegistry:
    def __init__(self, db: Database, fleet: FleetStore) -> None:
        self.db = db
        self.fleet = fleet

    # -- the runner's view -----------------------------------------------------------------------

    def labels(self) -> dict[str, dict[str, str]]:
        """Every device that has connected at least once -> its effective labels: what
        :meth:`rows` gives as ``labels``, for a reader that needs nothing else and runs often
        (the sampling reconcile, every second: building whole rows cost ~0.3 s of CPU per pass
        over 10,000 devices). Devices share few distinct label texts, each parsed once."""
        d = devices.c
        with self.db.read() as conn:
            operator = self._operator_labels(conn)
            result = conn.execute(sa.select(d.device_id, d.labels_json)).all()
        parsed: dict[str | None, dict[str, str]] = {}
        out = {}
        for device_id, text in result:
            own = parsed.get(text)
            if own is None:
                own = parsed[text] = _own_labels(text)
            extra = operator.get(device_id)
            out[device_id] = effective_labels(own, extra) if extra else dict(own)
        return out

    def rows(self) -> dict[str, DeviceRow]:
        """Every device that has connected at least once, with effective labels; no telemetry."""
        d = devices.c
        q = sa.select(d.device_id, d.online, d.labels_json, d.state, d.active_model,
                      d.active_version, d.target_model, d.target_version, d.desired_model,
                      d.desired_version, d.desired_deployment_id, d.last_seen,
                      d.agent_version, d.agent_update_target, d.agent_update_state,
                      d.device_class)
        with self.db.read() as conn:
            operator = self._operator_labels(conn)
            result = conn.execute(q).all()
        out = {}
        for r in result:
            out[r.device_id] = DeviceRow(
                device_id=r.device_id, online=bool(r.online),
                labels=effective_labels(_own_labels(r.labels_json),
                                        operator.get(r.device_id, {})),
                state=r.state,
                active=_mv(r.active_model, r.active_version),
                target=_mv(r.target_model, r.target_version),
                desired=_mv(r.desired_model, r.desired_version),
                desired_deployment_id=r.desired_deployment_id,
                last_seen=float(r.last_seen), agent_version=r.agent_version or "",
                agent_update_target=r.agent_update_target,
                agent_update_state=r.agent_update_state, device_class=r.device_class)
        return out

    # -- the operator's view ---------------------------------------------------------------------

    def list(self, selector: str | None = None) -> list[dict[str, Any]]:
        """Every known device (connected or pre-registered), optionally filtered by a selector.

        Each row is the fleet row (state, versions, telemetry counts) plus ``labels`` (effective),
        ``device_labels`` (the device's own), ``operator_labels``, ``registered`` and ``seen``.
        """
        sel = parse_selector(selector or "")
        rows = self.fleet.list_devices()
        with self.db.read() as conn:
            operator = self._operator_labels(conn)
            registered = {r.device_id: r for r in conn.execute(sa.select(device_registrations))}
        out = []
        seen = set()
        for row in rows:
            seen.add(row["device_id"])
            out.append(_decorate(row, operator.get(row["device_id"], {}),
                                 registered.get(row["device_id"])))
        for device_id in sorted(set(registered) - seen):
            out.append(_never_seen(device_id, operator.get(device_id, {}), registered[device_id]))
        out.sort(key=lambda r: r["device_id"])
        return [r for r in out if sel.matches(r["labels"])]

    def show(self, device_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            operator = self._operator_labels(conn, device_id).get(device_id, {})
            registration = conn.execute(sa.select(device_registrations).where(
                device_registrations.c.device_id == device_id)).first()
        try:
            row = self.fleet.get(device_id)
        except NotFoundError:
            if registration is None:
                raise UnknownDeviceError(device_id) from None
            return _never_seen(device_id, operator, registration)
        return _decorate(row, operator, registration)

    def set_labels(self, device_id: str, set_: Mapping[str, str], remove: Sequence[str],
                   actor: str) -> dict[str, Any]:
        """Set and remove operator labels in one transaction; audited as ``device.labels``.

        Removing a label the operator never set is not an error (the result lists it under
        ``not_set``), except when the device itself carries it: then nothing changes and the
        error says how to override it instead.
        """
        _check_labels(set_)
        overlap = sorted(set(set_) & set(remove))
        if overlap:
            raise ValidationError(f"label(s) {', '.join(overlap)} both set and removed")
        if not set_ and not remove:
            raise ValidationError("nothing to do: give labels to set (key=value) or to remove (key-)")
        now = time.time()
        with self.db.write() as conn:
            own = self._known(conn, device_id)
            current = self._operator_labels(conn, device_id).get(device_id, {})
            own_only = sorted(k for k in remove if k not in current and k in own)
            if own_only:
                raise ConflictError(
                    f"label(s) {', '.join(own_only)} on {device_id} come from the device's own "
                    "configuration ([labels] in its agent.toml), so the controller cannot remove "
                    f"them; override with {own_only[0]}=VALUE or change the device's configuration")
            not_set = sorted(k for k in remove if k not in current)
            gone = [k for k in remove if k in current]
            if gone:
                conn.execute(device_labels.delete().where(device_labels.c.device_id == device_id,
                                                          device_labels.c.key.in_(gone)))
            for key, value in set_.items():
                conn.execute(device_labels.delete().where(device_labels.c.device_id == device_id,
                                                          device_labels.c.key == key))
                conn.execute(device_labels.insert().values(
                    device_id=device_id, key=key, value=value, set_at=now, set_by=actor))
            write_audit(conn, now, [AuditEntry(
                "device.labels", actor=actor, devices=(device_id,),
                detail={"set": dict(set_), "removed": gone, "not_set": not_set})])
        result = self.show(device_id)
        result["not_set"] = not_set
        return result

    def register(self, device_id: str, labels: Mapping[str, str], actor: str,
                 note: str = "") -> dict[str, Any]:
        """Pre-register a device that has not connected yet, with operator labels.

        Once it connects it matches selectors with these labels at once, so the newest matching
        rollout sends it its version as a late joiner.
        """
        try:
            validate_device_id(device_id)
        except ProtocolError as e:
            raise ValidationError(str(e)) from None
        _check_labels(labels)
        now = time.time()
        with self.db.write() as conn:
            seen = conn.execute(sa.select(devices.c.device_id)
                                .where(devices.c.device_id == device_id)).first()
            if seen is not None:
                raise ConflictError(f"device {device_id!r} has already connected; set its labels "
                                    f"with `edgewise devices label {device_id} KEY=VALUE`")
            try:
                with conn.begin_nested():
                    conn.execute(device_registrations.insert().values(
                        device_id=device_id, registered_at=now, registered_by=actor, note=note))
            except exc.IntegrityError:
                raise ConflictError(f"device {device_id!r} is already registered") from None
            for key, value in labels.items():
                conn.execute(device_labels.delete().where(device_labels.c.device_id == device_id,
                                                          device_labels.c.key == key))
                conn.execute(device_labels.insert().values(
                    device_id=device_id, key=key, value=value, set_at=now, set_by=actor))
            write_audit(conn, now, [AuditEntry("device.registered", actor=actor,
                                               devices=(device_id,),
                                               detail={"labels": dict(labels), "note": note})])
        return self.show(device_id)

    # -- internals -------------------------------------------------------------------------------

    def _known(self, conn: sa.Connection, device_id: str) -> dict[str, str]:
        """The device's own labels; raise UnknownDeviceError if neither seen nor registered."""
        row = conn.execute(sa.select(devices.c.labels_json)
                           .where(devices.c.device_id == device_id)).first()
        if row is not None:
            return _own_labels(row.labels_json)
        registered = conn.execute(sa.select(device_registrations.c.device_id).where(
            device_registrations.c.device_id == device_id)).first()
        if registered is None:
            raise UnknownDeviceError(device_id)
        return {}

    def _operator_labels(self, conn: sa.Connection,
                         device_id: str | None = None) -> dict[str, dict[str, str]]:
        q = sa.select(device_labels.c.device_id, device_labels.c.key, device_labels.c.value)
        if device_id is not None:
            q = q.where(device_labels.c.device_id == device_id)
        out: dict[str, dict[str, str]] = {}
        for r in conn.execute(q):
            out.setdefault(r.device_id, {})[r.key] = r.value
        return out


def _check_labels(labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        problem = (label_problem(key, "label key")
                   or label_problem(value, f"value of label {key!r}"))
        if problem:
            raise ValidationError(problem)


def _own_labels(raw: str | None) -> dict[str, str]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _mv(model: str | None, version: int | None) -> ModelVersion | None:
    return ModelVersion(model, int(version)) if model is not None and version is not None else None


def _decorate(row: dict[str, Any], operator: Mapping[str, str], registration: Any) -> dict[str, Any]:
    own = dict(row.get("labels") or {})
    return {**row, "labels": effective_labels(own, operator), "device_labels": own,
            "operator_labels": dict(operator), "registered": registration is not None,
            "seen": True}


def _never_seen(device_id: str, operator: Mapping[str, str], registration: Any) -> dict[str, Any]:
    """A pre-registered device that has not connected: the fleet row's keys, mostly empty."""
    return {
        "device_id": device_id, "online": False, "first_seen": None, "last_seen": None,
        "labels": dict(operator), "device_labels": {}, "operator_labels": dict(operator),
        "state": None, "agent_version": "", "device_class": None, "active_model": None, "active_version": None,
        "active_sha256": None, "target_model": None, "target_version": None,
        "staged_model": None, "staged_version": None, "staged_sha256": None,
        "previous_model": None, "previous_version": None, "previous_sha256": None,
        "reported_deployment_id": None, "desired_model": None, "desired_version": None,
        "desired_deployment_id": None, "last_error": None, "progress": None,
        "dropped_total": 0, "predictions": 0, "feedback": 0, "accuracy": None,
        "registered": True, "seen": False,
        "registered_at": registration.registered_at, "registered_by": registration.registered_by,
        "note": registration.note,
    }
