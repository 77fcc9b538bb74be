"""The sequential detectors of each device and group of devices, per model version, kept between
evaluations.

A :class:`~controller.monitoring.watch.ModelWatch` is built at the first window of a model version
from the version's manifest (its reference profile, its task, and the accuracy or MAE measured at
conversion as the reference for versions whose profile carries no quality block), then stored as
JSON in ``watch_states`` inside the evaluation's transaction, so evidence keeps accumulating
across evaluations, restarts and replicas.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from controller.monitoring.watch import ModelWatch, WatchSettings
from controller.storage.tables import watch_states

log = logging.getLogger("edgewise.controller.monitoring")

WatchKey = tuple[str, str, int]  # (scope key, model, version)


@dataclass
class Watches:
    """The watches one evaluation read or built; :meth:`save` writes back those it used."""

    loaded: dict[WatchKey, ModelWatch] = field(default_factory=dict)
    used: set[WatchKey] = field(default_factory=set)


def build_watch(manifest: Mapping[str, Any] | None, settings: WatchSettings,
                scope: str) -> ModelWatch:
    """The detectors of one model version: what its manifest lets them watch (``.missing`` says
    what it does not: a version without a profile is not watched for drift, one without a
    reference accuracy not for accuracy)."""
    manifest = dict(manifest or {})
    profile = manifest.get("reference_profile")
    task = manifest.get("task") if manifest.get("task") in ("classification", "regression") \
        else "classification"
    raw_parity = manifest.get("parity")
    parity: dict[str, Any] = raw_parity if isinstance(raw_parity, dict) else {}
    n = parity.get("n")
    return ModelWatch(profile if isinstance(profile, dict) else None, str(task),
                      reference_accuracy=_finite(parity.get("artifact_accuracy")),
                      reference_mae=_finite(parity.get("artifact_mae")),
                      reference_n=int(n) if isinstance(n, int) and n > 0 else None,
                      settings=settings, scope=scope)


def load_watches(conn: sa.Connection, keys: Iterable[WatchKey]) -> Watches:
    """The stored watches of ``keys``; a state that cannot be read is dropped (logged), and a
    new watch starts over for that key."""
    wanted = set(keys)
    out = Watches()
    if not wanted:
        return out
    w = watch_states.c
    scopes = sorted({k[0] for k in wanted})
    for i in range(0, len(scopes), 500):
        for r in conn.execute(sa.select(w.scope_key, w.model, w.version, w.state_json)
                              .where(w.scope_key.in_(scopes[i:i + 500]))):
            key = (r.scope_key, r.model, int(r.version))
            if key not in wanted:
                continue
            try:
                out.loaded[key] = ModelWatch.from_dict(json.loads(r.state_json))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("detector state of %s %s:%s cannot be read (%s); starting over",
                          key[0], key[1], key[2], exc)
    return out


def save_watches(conn: sa.Connection, watches: Watches, now: float | None = None) -> None:
    """Write back every watch the evaluation used (insert or replace)."""
    now = time.time() if now is None else now
    w = watch_states.c
    for key in sorted(watches.used):
        state = json.dumps(watches.loaded[key].to_dict(), sort_keys=True, allow_nan=False)
        where = sa.and_(w.scope_key == key[0], w.model == key[1], w.version == key[2])
        updated = conn.execute(watch_states.update().where(where)
                               .values(state_json=state, updated_at=now)).rowcount
        if not updated:
            conn.execute(watch_states.insert().values(scope_key=key[0], model=key[1],
                                                      version=key[2], state_json=state,
                                                      updated_at=now))


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
