"""A device's Ed25519 key and certificate request (PKCS#10), in DER built here, for zero-touch
enrollment: the device makes its key pair and sends only the request, so the private key never
leaves it. Standard library plus :mod:`edgewise_wire.public_keys` (PyNaCl) for the signature; a
device does not carry ``cryptography``.

The request holds ``CN = device id``, the Ed25519 public key and a signature by it (proof that
whoever sent it holds the private key): the controller checks it with ``cryptography``
(``x509.load_pem_x509_csr(...).is_signature_valid``) and issues a certificate from the fleet CA
for that public key. Mosquitto (OpenSSL) takes Ed25519 client certificates over TLS 1.3.
"""

from __future__ import annotations

import base64

from edgewise_wire import public_keys

_ED25519_ALG = bytes.fromhex("300506032b6570")  # AlgorithmIdentifier { id-Ed25519 }
_CN_OID = bytes.fromhex("0603550403")
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def _name(common_name: str) -> bytes:
    attribute = _tlv(0x30, _CN_OID + _tlv(0x0C, common_name.encode()))  # UTF8String
    return _tlv(0x30, _tlv(0x31, attribute))


def csr_der(common_name: str, seed: bytes) -> bytes:
    """A PKCS#10 request for ``CN = common_name`` and the key with this seed, signed by it."""
    public = public_keys.public_of_seed(seed)
    spki = _tlv(0x30, _ED25519_ALG + _tlv(0x03, b"\x00" + public))
    info = _tlv(0x30, _tlv(0x02, b"\x00") + _name(common_name) + spki + _tlv(0xA0, b""))
    signature = public_keys.sign_with_seed(seed, info)
    return _tlv(0x30, info + _ED25519_ALG + _tlv(0x03, b"\x00" + signature))


def _pem(label: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"
            ).encode("ascii")


def csr_pem(common_name: str, seed: bytes) -> bytes:
    return _pem("CERTIFICATE REQUEST", csr_der(common_name, seed))


def private_key_pem(seed: bytes) -> bytes:
    """The seed as an unencrypted PKCS#8 ``PRIVATE KEY`` PEM (what OpenSSL and paho load)."""
    if len(seed) != public_keys.PUBLIC_KEY_SIZE:
        raise ValueError("an Ed25519 seed is 32 bytes")
    return _pem("PRIVATE KEY", _PKCS8_PREFIX + seed)


def seed_from_pem(pem: bytes) -> bytes:
    """The seed of a PEM :func:`private_key_pem` wrote (the device reads its key back)."""
    text = pem.decode("ascii")
    body = "".join(line.strip() for line in text.splitlines() if line and "-----" not in line)
    der = base64.b64decode(body, validate=True)
    if len(der) != len(_PKCS8_PREFIX) + 32 or not der.startswith(_PKCS8_PREFIX):
        raise ValueError("not an Ed25519 PKCS#8 private key")
    return der[len(_PKCS8_PREFIX):]
