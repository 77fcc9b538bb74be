"""Ed25519 public keys and signature verification on the device, through PyNaCl (libsodium).

The one module that imports ``nacl`` (``tests/unit/test_architecture.py`` holds it to that): the
rest of the wire contract stays on the standard library. The device only ever verifies; the
controller signs with ``cryptography`` (:mod:`controller.security.signing`). Why PyNaCl and not
``cryptography`` on the device: importing it costs the agent about a megabyte of resident memory
where ``cryptography`` cost 8.5 MiB, it ships arm64 wheels, and libsodium is audited code nobody
here has to own (docs/benchmarks.md, section "verify", has the figures).

Which keys are trusted: a ``-----BEGIN PUBLIC KEY-----`` PEM holding an Ed25519
SubjectPublicKeyInfo whose 32 bytes are a canonical point of the main subgroup, not of small
order (libsodium's ``crypto_core_ed25519_is_valid_point``): with a small-order key anyone can
forge signatures. Anything else is refused with a sentence saying what it is instead.

The one exception to "the device only verifies": zero-touch enrollment, where the device makes
its own Ed25519 key pair (:func:`new_device_key`) and signs its certificate request with it
(:func:`sign_with_seed`, used by :mod:`edgewise_wire.csr`), so its private key never leaves it.

Which signatures verify: libsodium's ``crypto_sign_verify_detached`` (S below the group order,
canonical R, small-order R refused).
"""

from __future__ import annotations

import base64
import binascii

import nacl.bindings
import nacl.exceptions
import nacl.signing

__all__ = ["PUBLIC_KEY_SIZE", "SIGNATURE_SIZE", "MalformedKey", "MalformedSignature",
           "new_device_key", "public_key_from_pem", "sign_with_seed", "verify"]

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

# SubjectPublicKeyInfo of an Ed25519 key, DER: SEQUENCE { SEQUENCE { OID 1.3.101.112 },
# BIT STRING (0 unused bits) of the 32 key bytes }. DER has exactly one encoding of it.
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_ED25519_OID = bytes.fromhex("06032b6570")

# what a PUBLIC KEY block holds instead, told by the DER encoding of its algorithm OID
_OTHER_ALGORITHMS = {
    bytes.fromhex("06092a864886f70d010101"): "an RSA",
    bytes.fromhex("06092a864886f70d01010a"): "an RSASSA-PSS",
    bytes.fromhex("06072a8648ce380401"): "a DSA",
    bytes.fromhex("06032b656e"): "an X25519 (key agreement)",
    bytes.fromhex("06032b656f"): "an X448 (key agreement)",
    bytes.fromhex("06032b6571"): "an Ed448",
}
_EC = bytes.fromhex("06072a8648ce3d0201")
_CURVES = {
    bytes.fromhex("06082a8648ce3d030107"): "P-256",
    bytes.fromhex("06052b81040022"): "P-384",
    bytes.fromhex("06052b81040023"): "P-521",
    bytes.fromhex("06052b8104000a"): "secp256k1",
}
_OTHER_PEM_LABELS = {
    "PRIVATE KEY": "a private key (PKCS#8); a device needs only the public key",
    "ENCRYPTED PRIVATE KEY": "an encrypted private key; a device needs only the public key",
    "RSA PRIVATE KEY": "an RSA private key",
    "EC PRIVATE KEY": "an EC private key",
    "OPENSSH PRIVATE KEY": "an OpenSSH private key",
    "RSA PUBLIC KEY": "an RSA public key (PKCS#1)",
    "CERTIFICATE": "an X.509 certificate, not a bare public key",
    "CERTIFICATE REQUEST": "a certificate request",
}


class MalformedKey(ValueError):
    """Not an Ed25519 public key this device can trust; the message says what it is instead."""


class MalformedSignature(ValueError):
    """Not shaped as an Ed25519 signature at all (64 bytes)."""


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` (64 bytes, ``R || S``) is ``public_key``'s (the raw 32 bytes
    :func:`public_key_from_pem` gives) signature of ``message``. A well-formed signature that does
    not match is False; a key or signature of the wrong length or type raises
    :class:`MalformedKey` / :class:`MalformedSignature`."""
    key = _raw(public_key, PUBLIC_KEY_SIZE, MalformedKey, "public key")
    sig = _raw(signature, SIGNATURE_SIZE, MalformedSignature, "signature")
    if not isinstance(message, (bytes, bytearray, memoryview)):
        raise TypeError(f"message must be bytes, not {type(message).__name__}")
    try:
        nacl.signing.VerifyKey(key).verify(bytes(message), sig)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def public_key_from_pem(pem: bytes) -> bytes:
    """The raw 32 bytes of the Ed25519 public key in a ``-----BEGIN PUBLIC KEY-----`` PEM (what
    :func:`verify` takes and key ids are hashed from). Text around the block is ignored, as
    OpenSSL ignores it. Anything else raises :class:`MalformedKey` saying what it is: no PEM, a
    private key, a certificate, another algorithm's key, or 32 bytes that are no usable point."""
    if not isinstance(pem, (bytes, bytearray)):
        raise TypeError(f"PEM must be bytes, not {type(pem).__name__}")
    try:
        text = bytes(pem).decode("ascii")
    except UnicodeDecodeError:
        raise MalformedKey("not a PEM public key: not ASCII text (a binary DER file?)") from None
    blocks = _pem_blocks(text)
    bodies = [body for label, body in blocks if label == "PUBLIC KEY"]
    if not bodies:
        if blocks:
            label = blocks[0][0]
            what = _OTHER_PEM_LABELS.get(label, f"a PEM {label!r} block")
            raise MalformedKey(f"not a PEM public key: it is {what}")
        if text.lstrip().startswith("ssh-ed25519 "):
            raise MalformedKey("not a PEM public key: it is an OpenSSH public key line "
                               "(convert it with `ssh-keygen -e -m PKCS8 -f KEY`)")
        raise MalformedKey("not a PEM public key: no '-----BEGIN PUBLIC KEY-----' block")
    try:
        der = base64.b64decode(bodies[0], validate=True)
    except (binascii.Error, ValueError):
        raise MalformedKey("not a PEM public key: the PUBLIC KEY block is not valid base64"
                           ) from None
    if len(der) != len(_ED25519_SPKI_PREFIX) + PUBLIC_KEY_SIZE \
            or not der.startswith(_ED25519_SPKI_PREFIX):
        raise MalformedKey(_describe_other_key(der))
    raw = der[len(_ED25519_SPKI_PREFIX):]
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(raw):
        raise MalformedKey("PEM holds 32 bytes that are no Ed25519 public key a device may "
                           "trust (not a canonical point of the main subgroup, or of small "
                           "order, with which anyone could forge signatures)")
    return raw


def _raw(value: object, size: int, error: type[ValueError], name: str) -> bytes:
    # bytes(n) of an int would be n zero bytes: only real byte strings are taken
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    raw = bytes(value)
    if len(raw) != size:
        raise error(f"an Ed25519 {name} is {size} bytes, this one is {len(raw)}")
    return raw


def _describe_other_key(der: bytes) -> str:
    if _ED25519_OID in der[:16]:  # the Ed25519 algorithm, the wrong length
        return (f"PEM holds a malformed Ed25519 public key ({len(der)} bytes of DER, expected "
                f"{len(_ED25519_SPKI_PREFIX) + PUBLIC_KEY_SIZE})")
    head = der[:32]  # the AlgorithmIdentifier sits at the start of the SubjectPublicKeyInfo
    if _EC in head:
        curve = next((name for oid, name in _CURVES.items() if oid in der[:40]), "unknown curve")
        return f"PEM holds an EC ({curve}) public key, not an Ed25519 public key"
    kind = next((name for oid, name in _OTHER_ALGORITHMS.items() if oid in head), None)
    if kind is None:
        return "PEM public key is of an unknown algorithm or malformed, not an Ed25519 public key"
    return f"PEM holds {kind} public key, not an Ed25519 public key"


def _pem_blocks(text: str) -> list[tuple[str, str]]:
    """``[(label, base64 body)]`` of the PEM blocks in ``text``, in order."""
    blocks: list[tuple[str, str]] = []
    label: str | None = None
    body: list[str] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if label is None:
            if line.startswith("-----BEGIN ") and line.endswith("-----"):
                label, body = line[len("-----BEGIN "):-len("-----")], []
        elif line == f"-----END {label}-----":
            blocks.append((label, "".join(body)))
            label = None
        else:
            body.append(line)
    return blocks


def new_device_key() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair from the system's random source: ``(seed, public)``, 32 bytes each
    (the seed is the private key, RFC 8032)."""
    key = nacl.signing.SigningKey.generate()
    return bytes(key), bytes(key.verify_key)


def sign_with_seed(seed: bytes, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message`` by the key with this 32-byte seed."""
    raw = _raw(seed, PUBLIC_KEY_SIZE, MalformedKey, "private key seed")
    return bytes(nacl.signing.SigningKey(raw).sign(bytes(message)).signature)


def public_of_seed(seed: bytes) -> bytes:
    """The 32-byte public key of a seed."""
    raw = _raw(seed, PUBLIC_KEY_SIZE, MalformedKey, "private key seed")
    return bytes(nacl.signing.SigningKey(raw).verify_key)
