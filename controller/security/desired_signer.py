"""Every desired state the controller publishes, signed (``edgewise_wire.envelope``).

A device with trusted keys acts only on a manifest inside an envelope signed by one of them, and
goes to a version not above the one it runs (or to no model) only with a signed *rollback
order* naming exactly that model and version, addressed to it. :class:`DesiredSigner` is the
one place that builds such a :class:`~edgewise_wire.Desired`:

* the envelope: ``sign_manifest(manifest, active key, expires_at=now + ttl)``, signed for the
  device class the model version is built for (its manifest's ``device_class``; none: any), so
  a device of another class refuses it whoever publishes it there;
* a rollback order when it is needed (:func:`rollback_target`): the target is the model the
  device runs at a version not above the running one, or the desired state is "no model"; and
  always for the revert of a rollout, since the controller cannot know how far each device got;
* the rollout's probation policy, if it has one;
* a *seal* per device (``edgewise_wire.seal``) when the signer has a counter source: the
  device's next counter from the database, bound to the envelope and order, so a captured
  desired state is refused once the device accepted a newer one (rollback orders become
  single-use) and a device refuses a desired state sealed for another. Agent orders
  (:meth:`DesiredSigner.agent_desired`) are sealed the same way, from the same counters.
* the artifact's download URL, when the artifacts live in an object store (``locate``: sha256
  -> URL or None); it is inside the signature, so a device fetches only from where the
  controller said, and checks every chunk against the signed hashes anyway.

The rest is pure: the clock comes in as ``now``, the key through a callable, so unit tests need
neither a broker nor a data directory. :class:`ActiveSigningKey` reads the active private key of
:class:`~controller.security.signing_keys.SigningKeys` and reads it again only when
``keys.json`` changed, so ``edgewise keys rotate`` takes effect with the next publish.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from controller.security.signing import (
    sign_agent_manifest,
    sign_manifest,
    sign_rollback_order,
    sign_seal,
)
from controller.security.signing_keys import SigningKeys
from edgewise_wire import Desired, DesiredAgent, Manifest, ProbationPolicy
from edgewise_wire.manifest import AgentManifest

log = logging.getLogger("edgewise.controller.signing")

DEFAULT_TTL_S = 30 * 86400.0

# (device ids, now) -> the next seal counter of each, stored before it is returned
Counters = Callable[[Sequence[str], float], Mapping[str, int]]


class Versioned(Protocol):
    """A model version as a device reports it (``ModelRef``) or the controller records it
    (``ModelVersion``): only the name and the number matter here."""

    @property
    def model(self) -> str: ...
    @property
    def version(self) -> int: ...


def rollback_target(manifest: Manifest | None, running: Versioned | None, *,
                    pending: Versioned | None = None,
                    revert_of: str | None = None) -> tuple[str, int] | None:
    """The ``(model, to_version)`` a rollback order must name for this device, or None.

    ``running``: the model the device reports active. ``pending``: a version it may reach
    before this order does (its reported update target): going to ``manifest`` is a downgrade
    if its version is not above the running one, or below the pending one, of the same model. ``revert_of``: this is the revert
    of a rollout of that model; an order is attached whatever the device reported, since it
    may have activated the rollout's version since. "No model" (``manifest`` None) is named
    as version 0 of the model the device runs (or of ``revert_of`` when it reports none).
    """
    if manifest is None:
        model = running.model if running is not None else revert_of
        return (model, 0) if model else None
    if revert_of is not None:
        return manifest.model, manifest.version
    if running is not None and running.model == manifest.model \
            and manifest.version <= running.version:
        return manifest.model, manifest.version
    # the version it is installing is no downgrade: once active, it is the running one and
    # the device takes the same version again as what it runs
    if pending is not None and pending.model == manifest.model \
            and manifest.version < pending.version:
        return manifest.model, manifest.version
    return None


class ActiveSigningKey:
    """The active private key, cached; read again when ``keys.json`` is replaced.

    ``SigningKeys`` writes ``keys.json`` by an atomic rename, so (inode, mtime, size) changes
    with every create, rotate and retire: a ``stat`` per publish batch is the whole cost.
    """

    def __init__(self, keys: SigningKeys) -> None:
        self.keys = keys
        self._lock = threading.Lock()  # publishes come from the loop and worker threads
        self._stamp: tuple[int, int, int] | None = None
        self._pem: bytes | None = None
        self.key_id: str | None = None

    def __call__(self) -> bytes:
        try:
            st = os.stat(self.keys.dir / "keys.json")
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if self._pem is None or stamp != self._stamp:
                pem = self.keys.active_private_pem()  # PkiError when there is no key at all
                key = self.keys.active()
                if self._pem is not None and key is not None and key.key_id != self.key_id:
                    log.info("manifest-signing key is now %s (was %s)", key.key_id, self.key_id)
                self._pem, self._stamp = pem, stamp
                self.key_id = key.key_id if key is not None else None
            return self._pem


def ensure_signing_key(keys: SigningKeys) -> ActiveSigningKey:
    """Create a signing key if there is none (and say so); the key source to sign with."""
    key, created = keys.ensure()
    if created:
        log.warning("created manifest-signing key %s in %s: devices must trust its public "
                    "key (enrollment bundles carry it; `edgewise keys list`)", key.key_id,
                    keys.dir)
    else:
        log.info("signing desired states with key %s", key.key_id)
    return ActiveSigningKey(keys)


class DesiredSigner:
    """Builds signed :class:`Desired` messages; ``private_key()`` returns the PEM to sign with."""

    def __init__(self, private_key: Callable[[], bytes], ttl_s: float = DEFAULT_TTL_S, *,
                 locate: Callable[[str], str | None] | None = None,
                 counters: Counters | None = None) -> None:
        if not (math.isfinite(ttl_s) and ttl_s > 0):
            raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
        self._private_key = private_key
        self.ttl_s = float(ttl_s)
        self.counters = counters  # None: no seals (unit tests; agents then skip replay checks)
        self.locate = locate

    def with_url(self, manifest: Manifest) -> Manifest:
        """``manifest`` with its artifact's download URL, if ``locate`` knows one."""
        url = self.locate(manifest.artifact.sha256) if self.locate is not None else None
        if url is None or url == manifest.artifact.url:
            return manifest
        return replace(manifest, artifact=replace(manifest.artifact, url=url))

    def envelope(self, manifest: Manifest, now: float, pem: bytes | None = None
                 ) -> dict[str, Any]:
        return sign_manifest(manifest.to_dict(), pem or self._private_key(),
                             expires_at=now + self.ttl_s, device_class=manifest.device_class)

    def agent_desired(self, manifest: AgentManifest, device_ids: Sequence[str], *, now: float,
                      rollout_id: str | None = None) -> list[tuple[str, DesiredAgent]]:
        """The signed agent version for each of ``device_ids`` (with the store's URL if known):
        the envelope signed once, and a seal per device (when the signer has a counter source)
        from the same counter sequence as model desired states, naming the envelope's digest."""
        url = self.locate(manifest.artifact.sha256) if self.locate is not None else None
        if url is not None and url != manifest.artifact.url:
            manifest = replace(manifest, artifact=replace(manifest.artifact, url=url))
        pem = self._private_key()
        envelope = sign_agent_manifest(manifest.to_dict(), pem, expires_at=now + self.ttl_s)
        shared = DesiredAgent(envelope, rollout_id, ts=now)
        ids = list(dict.fromkeys(device_ids))
        if self.counters is None or not ids:
            return [(d, shared) for d in ids]
        counters = self.counters(ids, now)
        return [(d, replace(shared, seal=sign_seal(pem, device_id=d, counter=counters[d],
                                                   issued_at=now, envelope=envelope,
                                                   order=None)))
                for d in ids]

    def desired(self, deployment_id: str, manifest: Manifest | None, device_id: str,
                running: Versioned | None, *, now: float,
                probation: ProbationPolicy | None = None, pending: Versioned | None = None,
                revert_of: str | None = None) -> Desired:
        """The signed desired state of one device (see :func:`rollback_target`)."""
        return self.for_devices(deployment_id, manifest, {device_id: running}, now=now,
                                probation=probation,
                                pending={device_id: pending} if pending else None,
                                revert_of=revert_of)[0][1]

    def for_devices(self, deployment_id: str, manifest: Manifest | None,
                    running: Mapping[str, Versioned | None], *, now: float,
                    probation: ProbationPolicy | None = None,
                    pending: Mapping[str, Versioned | None] | None = None,
                    revert_of: str | None = None) -> list[tuple[str, Desired]]:
        """One desired state per device of ``running`` (device id -> reported active model).

        The manifest is signed once for all of them; rollback orders are per device.
        """
        pem = self._private_key()
        if manifest is not None:
            manifest = self.with_url(manifest)
        envelope = self.envelope(manifest, now, pem) if manifest is not None else None
        # one instance for every device without an order: the bridge encodes it once
        shared = Desired(deployment_id, manifest, ts=now, envelope=envelope, probation=probation)
        counters = self.counters(list(running), now) if self.counters is not None else None
        out = []
        for device_id, ref in running.items():
            target = rollback_target(manifest, ref, revert_of=revert_of,
                                     pending=(pending or {}).get(device_id))
            desired = shared
            if target is not None:
                order = sign_rollback_order(pem, model=target[0], to_version=target[1],
                                            issued_at=now, expires_at=now + self.ttl_s,
                                            device_id=device_id)
                desired = replace(shared, rollback_order=order)
            if counters is not None:
                desired = replace(desired, seal=sign_seal(
                    pem, device_id=device_id, counter=counters[device_id], issued_at=now,
                    envelope=desired.envelope, order=desired.rollback_order))
            out.append((device_id, desired))
        return out
