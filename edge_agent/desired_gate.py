"""What a device checks on a desired state before it does anything with it.

Enforcing (the configuration lists trusted keys, as every enrolled device's does): the manifest
must come in a signed envelope from a trusted key, unexpired, for this device class, with a
version above the running one of the same model; going back (a version not above it, or no model
at all) needs a signed rollback order addressed to this device. Development mode (no trusted
keys): unsigned manifests are taken as they are, as Mender does without an ``ArtifactVerifyKey``;
the agent warns about it at start.

Either way: the format must be one this agent runs and the artifact must fit ``max_model_bytes``.
A desired state that fails is *rejected*: nothing is downloaded, the running model keeps serving,
and the reason is reported in words.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config import is_pem_text
from edgewise_wire import Desired, Manifest, ModelRef
from edgewise_wire.envelope import (
    RollbackOrder,
    TrustError,
    key_id_of,
    verify_envelope,
    verify_rollback_order,
)

log = logging.getLogger("edgewise.agent.gate")

SUPPORTED_FORMATS = ("onnx", "tflite")


class Rejected(Exception):
    """The desired state must not be acted upon; the message says why, for an operator."""


class TrustedKeyError(ValueError):
    """A configured trusted key cannot be read; the agent refuses to start with it."""


@dataclass(frozen=True)
class Accepted:
    manifest: Manifest | None  # None: run no model
    rollback: bool  # allowed as a downgrade (or an unload) by a signed rollback order


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
    def __init__(self, trusted_keys: dict[str, bytes], *, device_id: str, device_class: str,
                 max_model_bytes: int | None) -> None:
        self.trusted_keys = trusted_keys
        self.device_id = device_id
        self.device_class = device_class
        self.max_model_bytes = max_model_bytes

    @property
    def enforcing(self) -> bool:
        return bool(self.trusted_keys)

    def check(self, desired: Desired, running: ModelRef | None, *, now: float) -> Accepted:
        """Accept ``desired`` (given what serves now) or raise :class:`Rejected`."""
        manifest = desired.manifest
        if not self.enforcing:
            if manifest is not None:
                self._check_fits(manifest)
            return Accepted(manifest, rollback=False)
        order = self._rollback_order(desired, now)
        if manifest is None:
            if running is None:
                return Accepted(None, rollback=False)  # nothing runs: unloading changes nothing
            if order is None or (order.model, order.to_version) != (running.model, 0):
                raise Rejected(f"refused to unload {running}: running no model needs a signed "
                               f"rollback order for {running.model} to version 0")
            return Accepted(None, rollback=True)
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
        except TrustError as exc:
            raise Rejected(f"refused {manifest.model}:{manifest.version}: {exc}") from None
        self._check_fits(manifest)
        rollback = same_model and running is not None and manifest.version <= running.version
        return Accepted(manifest, rollback=rollback and not is_running)

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
