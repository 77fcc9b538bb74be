"""What a device checks on a desired state before it does anything with it.

Enforcing (the configuration lists trusted keys, as every enrolled device's does): the manifest
must come in a signed envelope from a trusted key, unexpired, for this device class (neither
the envelope nor the manifest may name another; absent: any class), with a
version above the running one of the same model; going back (a version not above it, or no model
at all) needs a signed rollback order addressed to this device. Development mode (no trusted
keys): unsigned manifests are taken as they are, as Mender does without an ``ArtifactVerifyKey``;
the agent warns about it at start.

Enforcing also means replay-proof: the desired state's *seal* (:mod:`edgewise_wire.seal`) must be
for this device id, bound to the envelope and order it travels with, and carry a counter above the
highest this device accepted (kept in ``trust.json``, :mod:`edge_agent.trust_state`; the caller
records it before acting). The seal accepted last, delivered again (the broker's retained copy
after a reconnect), passes without being new. An unsealed desired state passes only while the
device has never accepted a sealed one (a controller from before seals).

Agent orders (``desired_agent``, :mod:`edge_agent.self_update`) are sealed the same way and
checked here too (:meth:`DesiredGate.check_agent_order`), against a high-water mark of their own
(``agent_counter`` in ``trust.json``): the two streams share the controller's counter sequence,
and one must not make the other's redelivered retained message look like a replay.

The keys trusted are those of ``agent.toml`` plus those a verified key update added, minus those
it retired (:meth:`DesiredGate.apply_key_update`).

Either way: the format must be one this agent runs and the artifact must fit ``max_model_bytes``.
A desired state that fails is *rejected*: nothing is downloaded, the running model keeps serving,
and the reason is reported in words.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_agent.config import is_pem_text
from edge_agent.trust_state import TrustState, TrustStore
from edgewise_wire import Desired, DesiredAgent, Manifest, ModelRef
from edgewise_wire.envelope import (
    NotForThisDevice,
    RollbackOrder,
    TrustError,
    UnknownSigningKey,
    WrongDeviceClass,
    key_id_of,
    verify_envelope,
    verify_rollback_order,
)
from edgewise_wire.key_update import KeyUpdate, KeyUpdateMessage, verify_key_update
from edgewise_wire.seal import ReplayRefused, Seal, UnsealedRefused, check_fresh, verify_seal

log = logging.getLogger("edgewise.agent.gate")

SUPPORTED_FORMATS = ("onnx", "tflite")

# a seal refused for these reasons is counted under the kind (the others are refused uncounted)
_SEAL_REFUSALS: tuple[tuple[type[TrustError], str], ...] = (
    (ReplayRefused, "replay"), (UnsealedRefused, "unsealed"), (NotForThisDevice, "other_device"))


class Rejected(Exception):
    """The desired state must not be acted upon; the message says why, for an operator."""


class ForeignKeyUpdate(Rejected):
    """A key update signed by no key this device ever trusted: another fleet's on the same
    broker and topic root, or a forgery. Refused and counted like any other, but it says
    nothing about this device's own trust, so it is not this device's error to report."""


class TrustedKeyError(ValueError):
    """A configured trusted key cannot be read; the agent refuses to start with it."""


@dataclass(frozen=True)
class Accepted:
    manifest: Manifest | None  # None: run no model
    rollback: bool  # allowed as a downgrade (or an unload) by a signed rollback order
    seal: Seal | None = None
    fresh: bool = False  # the seal is new: record its counter (DesiredGate.record) before acting


def load_trusted_keys(entries: Iterable[str]) -> dict[str, bytes]:
    """``{key_id: public_pem}`` from config entries (PEM text or paths to PEM files)."""
    keys: dict[str, bytes] = {}
    for entry in entries:
        if is_pem_text(entry):
            pem = entry.encode()
        else:
            try:
                pem = Path(entry).read_bytes()
            except OSError as exc:
                raise TrustedKeyError(f"trusted key file {entry} cannot be read: {exc}") from None
        try:
            keys[key_id_of(pem)] = pem
        except TrustError as exc:
            raise TrustedKeyError(f"trusted key {entry[:60]!r}: {exc}") from None
    return keys


class DesiredGate:
    """``trust``: the persisted trust state (None: kept in memory only, as in unit tests)."""

    def __init__(self, trusted_keys: dict[str, bytes], *, device_id: str, device_class: str,
                 max_model_bytes: int | None, trust: TrustStore | None = None) -> None:
        self.configured_keys = dict(trusted_keys)
        self.device_id = device_id
        self.device_class = device_class
        self.max_model_bytes = max_model_bytes
        self.trust = trust
        self.state = trust.state if trust is not None else TrustState()
        # the update path and agent self-update record from different threads: each change
        # of the state is read, modified and written under this lock, so none is lost
        self._lock = threading.Lock()
        # refusals by kind, reported in the agent's status: "replay", "unsealed", "other_device",
        # "other_class" (signed for another device class), "key_update" (a key update refused)
        self.refusals: Counter[str] = Counter()
        self.trusted_keys = self._effective_keys()

    def _effective_keys(self) -> dict[str, bytes]:
        keys = {**self.configured_keys,
                **{kid: pem.encode() for kid, pem in self.state.added.items()}}
        return {kid: pem for kid, pem in keys.items() if kid not in self.state.retired}

    @property
    def enforcing(self) -> bool:
        # from agent.toml alone: a key update can change which keys, never switch enforcing off
        return bool(self.configured_keys)

    # -- seals ---------------------------------------------------------------------------------

    def record(self, seal: Seal) -> None:
        """Persist ``seal`` as the highest accepted (blocking: the small-I/O pool). Called
        before the desired state it came with is acted upon."""
        with self._lock:
            if seal.counter < self.state.highest_counter:
                return  # two checks raced; the higher one stays
            self._save(replace(self.state, highest_counter=seal.counter,
                               last_seal=seal.fingerprint))

    def record_agent(self, seal: Seal) -> None:
        """Persist ``seal`` as the highest accepted agent order (blocking), before the agent
        order it came with is acted upon."""
        with self._lock:
            if seal.counter < self.state.agent_counter:
                return
            self._save(replace(self.state, agent_counter=seal.counter,
                               agent_seal=seal.fingerprint))

    def check_agent_order(self, message: DesiredAgent) -> tuple[Seal | None, bool]:
        """The verified seal of a signed agent order and whether it is new (record it with
        :meth:`record_agent` before acting), or :class:`Rejected` (counted like a desired
        state's): a seal for another device or another envelope, below the highest agent order
        accepted, or equal to it but not the same seal; no seal once a sealed one was taken."""
        seal, fresh = self._verify_seal(
            message.seal, envelope=message.signed, order=None, highest=self.state.agent_counter,
            last_fingerprint=self.state.agent_seal, what="agent order", label="the agent order")
        if seal is None and self.state.agent_counter == 0:
            log.warning("%s: accepted an unsealed agent order (a controller from before "
                        "sealed agent orders?): it is not protected against replay",
                        self.device_id)
        return seal, fresh

    def _verify_seal(self, seal_doc: dict[str, Any] | None, *,
                     envelope: Mapping[str, Any] | None, order: Mapping[str, Any] | None,
                     highest: int,
                     last_fingerprint: str | None, what: str,
                     label: str) -> tuple[Seal | None, bool]:
        """One stream's seal check (desired states and agent orders keep their own high-water
        marks): the verified seal and whether it is new, or :class:`Rejected`, counted by kind."""
        seal = None
        try:
            if seal_doc is not None:
                seal = verify_seal(seal_doc, self.trusted_keys, device_id=self.device_id,
                                   envelope=envelope, order=order)
            fresh = check_fresh(seal, highest=highest, last_fingerprint=last_fingerprint,
                                what=what)
        except TrustError as exc:
            kind = next((k for t, k in _SEAL_REFUSALS if isinstance(exc, t)), None)
            if kind is not None:
                self.refusals[kind] += 1
            raise Rejected(f"refused {label}: {exc}") from None
        return seal, fresh

    def _save(self, state: TrustState) -> None:
        if self.trust is not None:
            self.trust.save(state)
        self.state = state

    def _check_seal(self, desired: Desired) -> tuple[Seal | None, bool]:
        seal, fresh = self._verify_seal(
            desired.seal, envelope=desired.envelope, order=desired.rollback_order,
            highest=self.state.highest_counter, last_fingerprint=self.state.last_seal,
            what="desired state", label=_label(desired))
        if seal is None and desired.manifest is not None and self.state.highest_counter == 0:
            log.warning("%s: accepted an unsealed desired state (a controller from before "
                        "seals?): it is not protected against replay", self.device_id)
        return seal, fresh

    # -- key updates -----------------------------------------------------------------------------

    def check_key_update(self, message: KeyUpdateMessage) -> KeyUpdate | None:
        """The verified update to apply (:meth:`apply_key_update`), None if applied already;
        raises :class:`Rejected` (counted) if it must not be applied."""
        try:
            update = verify_key_update(message, self.trusted_keys,
                                       last_sequence=self.state.key_sequence)
        except UnknownSigningKey as exc:
            self.refusals["key_update"] += 1
            raise ForeignKeyUpdate(f"ignored a key update: {exc}") from None
        except TrustError as exc:
            self.refusals["key_update"] += 1
            raise Rejected(f"refused the key update: {exc}") from None
        if update is None:
            return None
        keys = {**self.configured_keys, **update.trusted}
        if not any(kid not in update.retired for kid in keys):
            self.refusals["key_update"] += 1
            raise Rejected("refused the key update: it would leave this device no trusted key")
        return update

    def apply_key_update(self, update: KeyUpdate) -> None:
        """Persist and apply a checked update (blocking: the small-I/O pool)."""
        added = {kid: pem.decode() for kid, pem in update.trusted.items()
                 if self.configured_keys.get(kid) != pem}
        with self._lock:
            self._save(replace(self.state, key_sequence=update.sequence, added=added,
                               retired=frozenset(update.retired)))
        self.trusted_keys = self._effective_keys()
        log.info("%s: key update %d applied (signed by %s): trusting %s; retired %s",
                 self.device_id, update.sequence, ", ".join(update.signed_by),
                 ", ".join(sorted(self.trusted_keys)), ", ".join(sorted(update.retired)) or "none")

    def check(self, desired: Desired, running: ModelRef | None, *, now: float,
              sealed: bool = True) -> Accepted:
        """Accept ``desired`` (given what serves now) or raise :class:`Rejected`.

        ``sealed=False`` checks a manifest that does not arrive as a desired state (an
        experiment's candidate): signature, expiry, device class and fit, but not the per-device
        seal, whose counter orders desired states only. Such a manifest is protected against
        replay by its envelope's expiry alone (docs/security.md)."""
        manifest = desired.manifest
        if not self.enforcing:
            if manifest is not None:
                self._check_fits(manifest)
            return Accepted(manifest, rollback=False)
        seal, fresh = self._check_seal(desired) if sealed else (None, False)
        order = self._rollback_order(desired, now)
        if manifest is None:
            if running is None:  # nothing runs: unloading changes nothing
                return Accepted(None, rollback=False, seal=seal, fresh=fresh)
            if order is None or (order.model, order.to_version) != (running.model, 0):
                raise Rejected(f"refused to unload {running}: running no model needs a signed "
                               f"rollback order for {running.model} to version 0")
            return Accepted(None, rollback=True, seal=seal, fresh=fresh)
        if desired.envelope is None:
            raise Rejected(f"refused {manifest.model}:{manifest.version}: the manifest is not "
                           "signed and this device only runs signed manifests")
        same_model = running is not None and running.model == manifest.model
        is_running = running is not None and running.sha256 == manifest.artifact.sha256
        try:
            verify_envelope(desired.envelope, self.trusted_keys, now=now,
                            device_class=self.device_class,
                            # the model that already runs is not a downgrade: nothing installs
                            running_version=(running.version if same_model and not is_running
                                             and running is not None else None),
                            rollback_order=order)
        except WrongDeviceClass as exc:
            self.refusals["other_class"] += 1
            raise Rejected(f"refused {manifest.model}:{manifest.version}: {exc}") from None
        except TrustError as exc:
            raise Rejected(f"refused {manifest.model}:{manifest.version}: {exc}") from None
        self._check_fits(manifest)
        rollback = same_model and running is not None and manifest.version <= running.version
        return Accepted(manifest, rollback=rollback and not is_running, seal=seal, fresh=fresh)

    def _rollback_order(self, desired: Desired, now: float) -> RollbackOrder | None:
        if desired.rollback_order is None:
            return None
        try:
            return verify_rollback_order(desired.rollback_order, self.trusted_keys, now=now,
                                         device_id=self.device_id)
        except TrustError as exc:
            raise Rejected(f"refused the rollback order: {exc}") from None

    def _check_fits(self, manifest: Manifest) -> None:
        if manifest.format not in SUPPORTED_FORMATS:
            raise Rejected(f"model format {manifest.format!r} is not supported by this agent")
        limit = self.max_model_bytes
        if limit is not None and manifest.artifact.size > limit:
            raise Rejected(f"model {manifest.model}:{manifest.version} is "
                           f"{manifest.artifact.size} bytes, more than this device takes "
                           f"(max_model_bytes = {limit})")


def _label(desired: Desired) -> str:
    manifest = desired.manifest
    if manifest is None:
        return f"desired state {desired.deployment_id} (no model)"
    return f"{manifest.model}:{manifest.version}"
