"""The device's Ed25519 verification (edgewise_wire.public_keys, PyNaCl): RFC 8032 vectors,
signatures made by the controller's library, tampered content, the wrong key, and malformed keys,
signatures and PEMs, each refused with the reason.

Test vectors: RFC 8032 section 7.1 TEST 1, TEST 2, TEST 3 and TEST SHA(abc).
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from edgewise_wire.public_keys import (
    MalformedKey,
    MalformedSignature,
    public_key_from_pem,
    verify,
)

P = 2**255 - 19
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")

# (public key, message, signature), hex, RFC 8032 section 7.1
RFC8032_VECTORS = {
    "TEST 1": (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    "TEST 2": (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    "TEST 3": (
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    "TEST SHA(abc)": (
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        hashlib.sha512(b"abc").hexdigest(),
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
}

IDENTITY = (1).to_bytes(32, "little")  # the neutral point (0, 1): small order
ORDER_2 = (P - 1).to_bytes(32, "little")  # the point (0, -1): small order
IDENTITY_NONCANONICAL = (P + 1).to_bytes(32, "little")  # y = p + 1
OFF_CURVE = (2).to_bytes(32, "little")


def _pem(raw: bytes) -> bytes:
    body = base64.b64encode(SPKI_PREFIX + raw).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n".encode()


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def _vector(name: str) -> tuple[bytes, bytes, bytes]:
    public, message, signature = (bytes.fromhex(v) for v in RFC8032_VECTORS[name])
    return public, message, signature


@pytest.mark.parametrize("name", sorted(RFC8032_VECTORS))
def test_rfc8032_vectors_verify_and_any_change_does_not(name: str) -> None:
    public, message, signature = _vector(name)
    assert verify(public, signature, message)
    assert verify(bytearray(public), memoryview(signature), bytearray(message))
    assert not verify(public, signature, message + b"\x00")  # tampered content
    assert not verify(public, _flip(signature, 0), message)  # in R
    assert not verify(public, _flip(signature, 300), message)  # in S
    other = _vector("TEST 2" if name != "TEST 2" else "TEST 3")[0]
    assert not verify(other, signature, message)  # the wrong key


def test_signatures_of_the_controllers_library_verify() -> None:
    """What controller/security/signing.py makes (cryptography, OpenSSL) verifies here."""
    ced = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    from cryptography.hazmat.primitives import serialization

    private = ced.Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    public = public_key_from_pem(pem)
    for message in (b"", b"x", b"manifest" * 500):
        signature = private.sign(message)
        assert verify(public, signature, message)
        assert not verify(public, signature, message + b"!")


@pytest.mark.parametrize(("key", "signature", "error", "pattern"), [
    (bytes(31), bytes(64), MalformedKey, "public key is 32 bytes, this one is 31"),
    (bytes(33), bytes(64), MalformedKey, "public key is 32 bytes, this one is 33"),
    (bytes(32), bytes(63), MalformedSignature, "signature is 64 bytes, this one is 63"),
    (bytes(32), b"", MalformedSignature, "signature is 64 bytes, this one is 0"),
])
def test_malformed_keys_and_signatures_are_refused_with_the_reason(
        key: bytes, signature: bytes, error: type[Exception], pattern: str) -> None:
    public, message, valid = _vector("TEST 1")
    with pytest.raises(error, match=pattern):
        verify(key if len(key) != 32 else public, signature or valid[:0], message)


def test_arguments_that_are_not_bytes_are_a_type_error() -> None:
    public, message, signature = _vector("TEST 1")
    bad: Any
    for bad in (32, "a" * 32, None):
        with pytest.raises(TypeError):
            verify(bad, signature, message)
        with pytest.raises(TypeError):
            verify(public, bad, message)
        with pytest.raises(TypeError):
            verify(public, signature, bad)


def test_small_order_and_invalid_points_verify_nothing() -> None:
    """With a small-order key anyone forges signatures: libsodium refuses to verify with one."""
    _, message, signature = _vector("TEST 1")
    for key in (IDENTITY, ORDER_2, OFF_CURVE):
        assert not verify(key, signature, message)


# ----------------------------------------------------------------------------------- PEM


def test_rfc_vector_pems_parse() -> None:
    for public, _, _ in RFC8032_VECTORS.values():
        assert public_key_from_pem(_pem(bytes.fromhex(public))) == bytes.fromhex(public)
    text = b"a comment\n" + _pem(bytes.fromhex(RFC8032_VECTORS["TEST 1"][0])) + b"trailer\n"
    assert public_key_from_pem(text) == bytes.fromhex(RFC8032_VECTORS["TEST 1"][0])


@pytest.mark.parametrize("raw", [IDENTITY, ORDER_2, IDENTITY_NONCANONICAL, OFF_CURVE])
def test_pem_with_an_unusable_point_is_refused(raw: bytes) -> None:
    with pytest.raises(MalformedKey, match="no Ed25519 public key a device may trust"):
        public_key_from_pem(_pem(raw))


def test_other_key_types_are_named() -> None:
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa, x25519
    from cryptography.hazmat.primitives.asymmetric import ed25519 as ced

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM

    def public_pem(private: Any) -> bytes:
        return bytes(private.public_key().public_bytes(pem, spki))

    cases = {
        "an RSA public key": public_pem(rsa.generate_private_key(65537, 1024)),
        r"an EC \(P-256\) public key": public_pem(ec.generate_private_key(ec.SECP256R1())),
        r"an EC \(P-384\) public key": public_pem(ec.generate_private_key(ec.SECP384R1())),
        "an Ed448 public key": public_pem(ed448.Ed448PrivateKey.generate()),
        "X25519": public_pem(x25519.X25519PrivateKey.generate()),
    }
    for pattern, key_pem in cases.items():
        with pytest.raises(MalformedKey, match=pattern) as info:
            public_key_from_pem(key_pem)
        assert "not an Ed25519 public key" in str(info.value)

    private = ced.Ed25519PrivateKey.generate().private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(MalformedKey, match="private key"):
        public_key_from_pem(private)
    pkcs1 = rsa.generate_private_key(65537, 1024).public_key().public_bytes(
        pem, serialization.PublicFormat.PKCS1)
    with pytest.raises(MalformedKey, match=r"RSA public key \(PKCS#1\)"):
        public_key_from_pem(pkcs1)


@pytest.mark.parametrize(("data", "pattern"), [
    (b"", "no '-----BEGIN PUBLIC KEY-----' block"),
    (b"not a pem", "no '-----BEGIN PUBLIC KEY-----' block"),
    (SPKI_PREFIX + bytes(32) + b"\xff", "not ASCII"),
    (b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI user@host\n", "OpenSSH public key"),
    (b"-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n", "not valid base64"),
    (b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
     r"malformed Ed25519 public key \(12 bytes of DER, expected 44\)"),  # the key bytes cut off
    (b"-----BEGIN PUBLIC KEY-----\nMCkwBQYDK2VwAyAAAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n"
     b"-----END PUBLIC KEY-----\n", "malformed Ed25519 public key"),  # a 31-byte key
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
     "unknown algorithm or malformed"),
    (b"-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n", "no '-----BEGIN PUBLIC KEY-----' block"),  # no END
])
def test_pem_garbage_is_refused_with_a_reason(data: bytes, pattern: str) -> None:
    with pytest.raises(MalformedKey, match=pattern):
        public_key_from_pem(data)
    with pytest.raises(TypeError):
        public_key_from_pem(data.decode("latin-1"))  # type: ignore[arg-type]


def test_agent_modules_do_not_load_cryptography_and_verify_without_it() -> None:
    """A device installs no ``cryptography``: importing the agent must not load it, and the
    verification path must work with it made unimportable."""
    public, message, signature = RFC8032_VECTORS["TEST 2"]
    code = textwrap.dedent(f"""
        import sys
        import edgewise_wire.envelope, edge_agent.desired_gate, edge_agent.agent
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "cryptography")
        assert not loaded, loaded
        sys.modules["cryptography"] = None  # any import of it now fails
        from edgewise_wire import public_keys, envelope as trust
        public = bytes.fromhex("{public}")
        assert public_keys.verify(public, bytes.fromhex("{signature}"), bytes.fromhex("{message}"))
        assert trust.key_id_of({_pem(bytes.fromhex(public))!r}) == (
            __import__("hashlib").sha256(public).hexdigest()[:16])
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
