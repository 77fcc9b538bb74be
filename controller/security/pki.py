"""The fleet CA: one self-signed certificate authority per controller, the client certificates it
issues to devices and to the controller itself, the broker's server certificate, and the
certificate revocation list (CRL) the broker checks.

Layout under ``{data_dir}/pki/``::

    ca.key        the CA's private key (EC P-256, mode 0600); whoever holds it can mint devices
    ca.crt        the CA certificate: goes into every bundle and the broker's ``cafile``
    crl.pem       every revoked serial, signed by the CA: the broker's ``crlfile``
    passwd        Mosquitto password hashes of devices enrolled with a password
    state.json    issued and revoked credentials (device id, kind, serial, dates)

Identities: a device's certificate has ``CN = device id`` (Mosquitto's
``use_identity_as_username`` makes that the MQTT user name, and the broker ACL's ``%u``). The
controller's certificate has ``CN = _edgewise-controller``, which no device id can be: device ids
start with a letter or a digit.

All changes hold an exclusive ``flock`` on ``pki/.lock``, so two CLI invocations cannot issue the
same device twice or lose a revocation.

One module on purpose (about 430 lines): issuing, revoking and the CRL are one class around one CA
key and one index of issued certificates; split, each part would reach into the other's files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.errors import ConflictError, EdgewiseError, NotFoundError, ValidationError
from controller.security.passwords import hash_password
from edgewise_wire.errors import TopicError
from edgewise_wire.topics import validate_device_id

CONTROLLER_IDENTITY = "_edgewise-controller"
CA_DAYS = 3650
DEVICE_DAYS = 1826  # five years; `edgewise devices enroll --force` issues a new one
SERVER_DAYS = 825
# The broker refuses every client certificate once the CRL is past its next-update time
# (OpenSSL: "CRL has expired"), so it is signed for long and rewritten on every revocation.
CRL_DAYS = 3650


class PkiError(EdgewiseError):
    """The fleet CA is missing, unreadable or asked for something it cannot do."""


@dataclass(frozen=True)
class Identity:
    """One issued credential, as recorded in ``state.json``."""

    name: str  # device id, or CONTROLLER_IDENTITY
    kind: str  # "cert" or "password"
    issued_at: str  # ISO 8601 UTC
    serial: str | None = None  # hex, for certificates
    not_after: str | None = None
    revoked_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class IssuedCert:
    key_pem: bytes
    cert_pem: bytes
    serial: int


def _identity(row: dict[str, Any]) -> Identity:
    """An identity from its ``state.json`` row (which may list ``superseded`` serials too)."""
    return Identity(**{k: v for k, v in row.items() if k != "superseded"})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _iso(when: dt.datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only, atomically (rename over the old file)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def controller_identity(replica: int = 1) -> str:
    """The MQTT identity of controller replica ``replica`` (1-based): each replica needs its
    own, as the broker gives every identity one connection (``use_username_as_clientid``)."""
    return CONTROLLER_IDENTITY if replica == 1 else f"{CONTROLLER_IDENTITY}-{replica}"


def is_controller_identity(name: str) -> bool:
    return name == CONTROLLER_IDENTITY or bool(
        re.fullmatch(re.escape(CONTROLLER_IDENTITY) + r"-[0-9]{1,3}", name))


def validate_identity_name(name: str) -> str:
    """A device id (the protocol's rule) or one of the controller's reserved identities."""
    if is_controller_identity(name):
        return name
    try:
        return validate_device_id(name)
    except TopicError as exc:
        raise ValidationError(str(exc)) from None


class FleetCA:
    """The CA files under ``directory`` (normally ``{data_dir}/pki``)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> FleetCA:
        return cls(data_dir / "pki")

    # -- paths -------------------------------------------------------------------------------

    @property
    def ca_cert_path(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        return self.dir / "ca.key"

    @property
    def crl_path(self) -> Path:
        return self.dir / "crl.pem"

    @property
    def passwd_path(self) -> Path:
        return self.dir / "passwd"

    @property
    def _state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def exists(self) -> bool:
        return self.ca_cert_path.exists() and self.ca_key_path.exists()

    # -- creation ----------------------------------------------------------------------------

    def init(self, common_name: str = "Edgewise fleet CA") -> bool:
        """Create the CA if there is none; return True if it was created now."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        with self._locked():
            if self.exists:
                return False
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                              x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Edgewise")])
            now = _now()
            cert = (
                x509.CertificateBuilder()
                .subject_name(name).issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256())
            )
            _write_private(self.ca_key_path, _key_pem(key))
            _write_public(self.ca_cert_path, cert.public_bytes(serialization.Encoding.PEM))
            self._save_state({"identities": {}, "revoked": []})
            self._write_crl_locked(key, cert, [])
            self._write_passwd_locked({})
            return True

    # -- reading -----------------------------------------------------------------------------

    def ca_cert(self) -> x509.Certificate:
        self._require()
        return x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())

    def ca_cert_pem(self) -> bytes:
        self._require()
        return self.ca_cert_path.read_bytes()

    def identities(self) -> list[Identity]:
        """Every credential ever issued, current ones and revoked ones."""
        self._require()
        state = self._load_state()
        return [_identity(row) for row in state["identities"].values()] + [
            _identity(row) for row in state["revoked"]]

    def current(self, name: str) -> Identity | None:
        self._require()
        row = self._load_state()["identities"].get(name)
        return _identity(row) if row else None

    def denied_names(self) -> list[str]:
        """Identities that were revoked and hold no credential now: the broker ACL denies
        them everything, which also cuts off a connection opened before the revocation."""
        state = self._load_state()
        return sorted({r["name"] for r in state["revoked"]} - set(state["identities"]))

    def revoked_serials(self) -> set[int]:
        return {int(r["serial"], 16) for r in self._load_state()["revoked"] if r.get("serial")}

    # -- issuing -----------------------------------------------------------------------------

    def issue_client_cert(self, name: str, *, days: int = DEVICE_DAYS,
                          replace: bool = False) -> IssuedCert:
        """A client certificate with ``CN = name`` (a device id or the controller identity).

        An identity that already has a live credential is refused unless ``replace``: then the
        old one is revoked in the same step.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        cert_pem, serial = self.issue_for_public_key(name, key.public_key(), days=days,
                                                     replace=replace)
        return IssuedCert(_key_pem(key), cert_pem, serial)

    def issue_for_public_key(self, name: str, public_key: CertificatePublicKeyTypes, *,
                             days: int = DEVICE_DAYS, replace: bool = False,
                             renewal: bool = False) -> tuple[bytes, int]:
        """A client certificate for a key the device made itself (zero-touch enrollment: only
        its public key came here). ``renewal``: the identity's live certificate is replaced
        without being revoked (same key, the old one simply expires; a lost answer can be
        asked again); its serial stays listed so `devices revoke` revokes both."""
        validate_identity_name(name)
        if days < 1:
            raise ValidationError("a certificate must be valid for at least 1 day")
        with self._locked():
            ca_key, ca_cert = self._load_ca()
            state = self._load_state()
            previous = state["identities"].get(name)
            if renewal:
                if previous is None or previous.get("kind") != "cert":
                    raise NotFoundError("enrolled device", name)
                del state["identities"][name]
            else:
                self._retire_locked(state, name, replace)
            now = _now()
            not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
            serial = x509.random_serial_number()
            ec_key = isinstance(public_key, ec.EllipticCurvePublicKey)
            cert = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_cert.subject)
                .public_key(public_key)
                .serial_number(serial)
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=ec_key, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            superseded = list(previous.get("superseded", [])) if renewal and previous else []
            if renewal and previous and previous.get("serial"):
                superseded = [*superseded, previous["serial"]][-4:]
            row = asdict(Identity(name=name, kind="cert", issued_at=_iso(now),
                                  serial=f"{serial:x}", not_after=_iso(not_after)))
            if superseded:
                row["superseded"] = superseded
            state["identities"][name] = row
            self._save_state(state)
            self._refresh_locked(state, ca_key, ca_cert)
            return cert.public_bytes(serialization.Encoding.PEM), serial

    def issue_password(self, name: str, *, replace: bool = False) -> str:
        """A random password for ``name``; only its hash is kept (in ``passwd``)."""
        validate_identity_name(name)
        with self._locked():
            ca_key, ca_cert = self._load_ca()
            state = self._load_state()
            self._retire_locked(state, name, replace)
            password = secrets.token_urlsafe(32)
            state["identities"][name] = asdict(Identity(
                name=name, kind="password", issued_at=_iso(_now())))
            state.setdefault("password_hashes", {})[name] = hash_password(password)
            self._save_state(state)
            self._refresh_locked(state, ca_key, ca_cert)
            return password

    def issue_server_cert(self, hostnames: list[str], *, days: int = SERVER_DAYS) -> IssuedCert:
        """A TLS server certificate (for the broker or the REST API) valid for ``hostnames``,
        each a DNS name or an IP address. Server certificates are not recorded as identities."""
        if not hostnames:
            raise ValidationError("a server certificate needs at least one host name or address")
        sans: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        with self._locked():
            ca_key, ca_cert = self._load_ca()
            key = ec.generate_private_key(ec.SECP256R1())
            now = _now()
            serial = x509.random_serial_number()
            cert = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
                .issuer_name(ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            return IssuedCert(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM), serial)

    # -- revoking ----------------------------------------------------------------------------

    def revoke(self, name: str) -> Identity:
        """Revoke ``name``'s live credential: its serial goes into the CRL, its password hash
        out of ``passwd``. Returns the revoked identity."""
        with self._locked():
            ca_key, ca_cert = self._load_ca()
            state = self._load_state()
            if name not in state["identities"]:
                raise NotFoundError("enrolled device", name)
            revoked = self._retire_locked(state, name, True)
            assert revoked is not None
            self._save_state(state)
            self._refresh_locked(state, ca_key, ca_cert)
            return revoked

    def refresh(self) -> None:
        """Rewrite ``crl.pem`` and ``passwd`` from the state (e.g. to renew the CRL's dates)."""
        with self._locked():
            ca_key, ca_cert = self._load_ca()
            self._refresh_locked(self._load_state(), ca_key, ca_cert)

    # -- internals ---------------------------------------------------------------------------

    def _require(self) -> None:
        if not self.exists:
            raise PkiError(f"no fleet CA in {self.dir}: run `edgewise pki init` (or enroll a "
                           "device, which creates it) with the controller's --data-dir")

    def _load_ca(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        self._require()
        try:
            key = serialization.load_pem_private_key(self.ca_key_path.read_bytes(), password=None)
        except PermissionError:
            raise PkiError(f"cannot read {self.ca_key_path}: run as the controller's user "
                           "(or root)") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{self.ca_key_path} is not an EC private key")
        return key, self.ca_cert()

    def _retire_locked(self, state: dict[str, Any], name: str, replace: bool) -> Identity | None:
        row = state["identities"].get(name)
        if row is None:
            return None
        if not replace:
            raise ConflictError(
                f"{name!r} is already enrolled ({row['kind']}, issued {row['issued_at']}); "
                "pass --force to revoke that credential and issue a new one")
        row = dict(row)
        superseded = row.pop("superseded", [])
        revoked = Identity(**{**row, "revoked_at": _iso(_now())})
        state["revoked"].append(asdict(revoked))
        for serial in superseded:  # renewed certificates of the same key, not expired yet
            state["revoked"].append(asdict(Identity(**{**row, "serial": serial,
                                                       "revoked_at": revoked.revoked_at})))
        del state["identities"][name]
        state.get("password_hashes", {}).pop(name, None)
        return revoked

    def _refresh_locked(self, state: dict[str, Any], ca_key: ec.EllipticCurvePrivateKey,
                        ca_cert: x509.Certificate) -> None:
        self._write_crl_locked(ca_key, ca_cert, [r for r in state["revoked"] if r.get("serial")])
        self._write_passwd_locked(state.get("password_hashes", {}))

    def _write_crl_locked(self, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                          revoked: list[dict[str, Any]]) -> None:
        now = _now()
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(ca_cert.subject)
                   .last_update(now - dt.timedelta(minutes=5))
                   .next_update(now + dt.timedelta(days=CRL_DAYS)))
        for row in revoked:
            when = dt.datetime.fromisoformat(row["revoked_at"].replace("Z", "+00:00"))
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(int(row["serial"], 16))
                .revocation_date(when).build())
        crl = builder.sign(ca_key, hashes.SHA256())
        _write_public(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))

    def _write_passwd_locked(self, hashes_by_name: dict[str, str]) -> None:
        lines = "".join(f"{name}:{hashed}\n" for name, hashed in sorted(hashes_by_name.items()))
        _write_private(self.passwd_path, lines.encode())

    def _load_state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return {"identities": {}, "revoked": []}
        except (OSError, ValueError) as exc:
            raise PkiError(f"cannot read {self._state_path}: {exc}") from None
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        _write_private(self._state_path, json.dumps(state, indent=2, sort_keys=True).encode())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
