"""Ed25519 signature verification (RFC 8032, section 5.1.7) in pure Python, stdlib only.

Why not ``cryptography``: the device only ever *verifies* (the controller signs), and importing
``cryptography`` costs the agent about 8.5 MiB of RSS against an 80 MiB budget; importing this
module costs about 0.5 MiB (tests/unit/test_docs_figures.py checks both figures). The price is speed: about 1 ms per verification on an x86-64 development machine
(Python big-integer arithmetic; OpenSSL takes 0.1 ms), so presumably several ms on a Raspberry
Pi; the agent verifies a handful of documents per update, and a process-wide cache makes repeats
free (the simulator runs 1,000 agents in one process that verify the same envelope).

Everything here is public (public keys, signatures, signed messages), so nothing needs to run in
constant time: the code branches and returns early freely.

Which signatures verify: exactly those OpenSSL (so ``cryptography``) accepts, for every public
key an Ed25519 implementation can produce:

* ``S`` must be below the group order ``L`` (RFC 8032 5.1.7 step 1; no malleability by ``S + L``).
* ``R`` must be the canonical encoding of the point ``[S]B - [k]A``: compared as bytes, as OpenSSL
  does, which refuses every non-canonical or off-curve ``R`` just as decoding it would.
* ``k = SHA-512(R || A || M) mod L`` and the *cofactorless* equation ``[S]B == R + [k]A`` (the one
  RFC 8032 allows as "sufficient" and OpenSSL uses; the cofactored ``[8]`` form would accept a few
  signatures OpenSSL refuses).
* ``A`` must decode (RFC 8032 5.1.3): a point on the curve, ``y < p``, and no "negative zero"
  ``x``. Here, and only here, RFC 8032 is stricter than OpenSSL, which reduces a non-canonical ``y``
  modulo ``p`` and ignores the sign bit of ``x = 0``: a public key encoded that way (no key
  generator makes one) verifies nothing here.

:func:`public_key_from_pem` also refuses public keys of small order (the identity and the other
seven torsion points), as libsodium does: with such a key anyone can forge signatures that pass
the equation above. A trusted key is configuration, so this is checked where keys are loaded.

One module on purpose, about 450 lines: RFC 8032 verification is one chain of field, point and
encoding arithmetic that reads best in one place, beside the test vectors it is checked with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections import OrderedDict
from functools import lru_cache

__all__ = ["CACHE_SIZE", "PUBLIC_KEY_SIZE", "SIGNATURE_SIZE", "cache_clear", "cache_info",
           "public_key_from_pem", "verify"]

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
CACHE_SIZE = 256  # distinct (key, signature, message) triples remembered process-wide

_P = 2**255 - 19  # the field prime
_L = 2**252 + 27742317777372353535851937790883648493  # order of the base point B
_D = -121665 * pow(121666, -1, _P) % _P  # curve constant d of -x^2 + y^2 = 1 + d x^2 y^2
_D2 = 2 * _D % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

# Points are handled in two forms (Hisil-Wong-Carter-Dawson, "Twisted Edwards curves revisited"):
# extended projective (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z as the running sum, and the
# affine "precomputed" form (y - x, y + x, 2*d*x*y) for the fixed multiples added to it, which
# saves multiplications in the addition formula. Additions take the precomputed form only.

_BytesLike = bytes | bytearray | memoryview
_Affine = tuple[int, int]
_Precomp = tuple[int, int, int]

_B_WINDOW = 7  # wNAF width for the fixed base B: odd multiples 1B..63B, built once at import
_A_WINDOW = 5  # wNAF width for the public key A: odd multiples 1A..15A, built once per key


def _decode_point(encoded: bytes) -> _Affine | None:
    """RFC 8032 5.1.3: the point a 32-byte encoding names, or None if it names none.

    Refused: ``y >= p`` (non-canonical), ``x`` with no square root (not on the curve), and
    ``x = 0`` with the sign bit set (a second encoding of the same point).
    """
    value = int.from_bytes(encoded, "little")
    sign, y = value >> 255, value & ((1 << 255) - 1)
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P  # never 0: d is not a square
    # x = sqrt(u / v) = u * v^3 * (u * v^7)^((p - 5) / 8), one exponentiation (RFC 8032 5.1.3)
    v3 = v * v * v % _P
    x = u * v3 * pow(u * v3 * v3 * v % _P, (_P - 5) // 8, _P) % _P
    vxx = v * x * x % _P
    if vxx != u:
        if vxx != _P - u:
            return None
        x = x * _SQRT_M1 % _P
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _precomputed(x: int, y: int) -> _Precomp:
    return (y - x) % _P, (y + x) % _P, _D2 * x * y % _P


def _odd_multiples(point: _Affine, count: int) -> list[_Precomp]:
    """``[1]P, [3]P, ..., [2*count - 1]P`` in precomputed form (affine: one inversion each)."""
    x, y = point
    # [2]P once (dbl-2008-hwcd with Z = 1), then add it repeatedly
    a, b = x * x % _P, y * y % _P
    h, e, g = a + b, (a + b - (x + y) ** 2) % _P, (a - b) % _P
    f = 2 + g
    zi = pow(f * g, -1, _P)  # F*G is never 0: the formulas are complete on this curve
    step = _precomputed(e * f * zi % _P, g * h * zi % _P)
    out = [_precomputed(x, y)]
    cx, cy, cz, ct = x, y, 1, x * y % _P
    for _ in range(count - 1):
        cx, cy, cz, ct = _add(cx, cy, cz, ct, step)
        zi = pow(cz, -1, _P)
        out.append(_precomputed(cx * zi % _P, cy * zi % _P))
    return out


def _add(x1: int, y1: int, z1: int, t1: int, q: _Precomp) -> tuple[int, int, int, int]:
    """Extended + precomputed affine (madd-2008-hwcd-3 for a = -1)."""
    ym, yp, t2d = q
    a = (y1 - x1) * ym % _P
    b = (y1 + x1) * yp % _P
    c = t1 * t2d % _P
    d = 2 * z1
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _wnaf(n: int, width: int) -> list[int]:
    """Width-``width`` non-adjacent form of ``n >= 0``, least significant digit first."""
    digits: list[int] = []
    full, half = 1 << width, 1 << (width - 1)
    while n:
        if n & 1:
            digit = n & (full - 1)
            if digit >= half:
                digit -= full
            n -= digit
        else:
            digit = 0
        digits.append(digit)
        n >>= 1
    return digits


def _signed_table(multiples: list[_Precomp]) -> dict[int, _Precomp]:
    """``{digit: [digit]P}`` for the odd digits of a wNAF, negatives included."""
    table: dict[int, _Precomp] = {}
    for i, (ym, yp, t2d) in enumerate(multiples):
        table[2 * i + 1] = (ym, yp, t2d)
        table[-(2 * i + 1)] = (yp, ym, (-t2d) % _P)  # -(x, y) = (-x, y)
    return table


_BASE = _decode_point(bytes.fromhex(
    "5866666666666666666666666666666666666666666666666666666666666666"))  # y = 4/5, x even
if _BASE is None:  # cannot happen: the standard base point; kept for the type checker
    raise RuntimeError("Ed25519 base point does not decode")
_B_TABLE = _signed_table(_odd_multiples(_BASE, 1 << (_B_WINDOW - 2)))


@lru_cache(maxsize=32)
def _key_table(public_key: bytes) -> dict[int, _Precomp] | None:
    """Multiples of ``-A`` for the wNAF of ``k`` (None: ``A`` does not decode); few keys exist."""
    point = _decode_point(public_key)
    if point is None:
        return None
    x, y = point
    return _signed_table(_odd_multiples(((-x) % _P, y), 1 << (_A_WINDOW - 2)))


def _encode_sb_minus_ka(s: int, k: int, minus_a: dict[int, _Precomp]) -> bytes:
    """The canonical encoding of ``[s]B + [k](-A)``: one shared doubling chain (interleaved wNAF).

    Written out in one loop, not as calls per operation, because Python's call overhead would
    otherwise cost as much as the arithmetic.
    """
    s_digits, k_digits = _wnaf(s, _B_WINDOW), _wnaf(k, _A_WINDOW)
    s_digits += [0] * (len(k_digits) - len(s_digits))
    k_digits += [0] * (len(s_digits) - len(k_digits))
    b_table, p = _B_TABLE, _P
    x, y, z, t = 0, 1, 1, 0  # the identity
    for i in range(len(s_digits) - 1, -1, -1):
        # doubling (dbl-2008-hwcd, a = -1); T is only needed by an addition, computed on demand
        a, b, c = x * x % p, y * y % p, 2 * z * z % p
        h = a + b
        e, g = h - (x + y) * (x + y) % p, a - b
        f = c + g
        x, y, z = e * f % p, g * h % p, f * g % p
        ds, dk = s_digits[i], k_digits[i]
        if ds or dk:
            t = e * h % p
            for digit, table in ((ds, b_table), (dk, minus_a)):
                if digit:
                    ym, yp, t2d = table[digit]
                    a, b, c, dd = (y - x) * ym % p, (y + x) * yp % p, t * t2d % p, 2 * z
                    e, f, g, h = b - a, dd - c, dd + c, b + a
                    x, y, z, t = e * f % p, g * h % p, f * g % p, e * h % p
    zi = pow(z, -1, p)
    xa, ya = x * zi % p, y * zi % p
    return (ya | (xa & 1) << 255).to_bytes(32, "little")


def _verify_uncached(public_key: bytes, signature: bytes, message: bytes) -> bool:
    r_bytes, s = signature[:32], int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False  # RFC 8032 5.1.7 step 1: S out of range, a malleated signature
    minus_a = _key_table(public_key)
    if minus_a is None:
        return False
    k = int.from_bytes(hashlib.sha512(r_bytes + public_key + message).digest(), "little") % _L
    # [S]B == R + [k]A  <=>  encode([S]B - [k]A) == R, the check OpenSSL makes
    return _encode_sb_minus_ka(s, k, minus_a) == r_bytes


# ------------------------------------------------------------------------------------- cache

# Keyed on the key, the signature and the message's SHA-512 digest plus length: a hit needs the
# same three inputs (up to a SHA-512 collision), so it cannot turn one input's False into another's
# True, and large messages are not kept alive by the cache. Both results are remembered: a bad
# envelope retried by 1,000 simulated agents costs one verification too.
_cache: OrderedDict[tuple[bytes, bytes, bytes, int], bool] = OrderedDict()
_cache_lock = threading.Lock()
_cache_hits = 0
_cache_misses = 0


def cache_clear() -> None:
    """Forget every remembered result (tests; nothing else needs to)."""
    global _cache_hits, _cache_misses
    with _cache_lock:
        _cache.clear()
        _cache_hits = _cache_misses = 0
    _key_table.cache_clear()
    _public_key_from_pem.cache_clear()


def cache_info() -> dict[str, int]:
    """``{"hits", "misses", "size", "maxsize"}`` of the verification cache."""
    with _cache_lock:
        return {"hits": _cache_hits, "misses": _cache_misses, "size": len(_cache),
                "maxsize": CACHE_SIZE}


def _as_bytes(value: object, name: str) -> bytes:
    # bytes(n) of an int would be n zero bytes: only real byte strings are taken
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    return bytes(value)


def verify(public_key_raw32: _BytesLike, signature64: _BytesLike, message: _BytesLike) -> bool:
    """Whether ``signature64`` is a valid Ed25519 signature of ``message`` by ``public_key_raw32``.

    ``public_key_raw32`` is the raw 32-byte key (:func:`public_key_from_pem` gives it from a PEM),
    ``signature64`` the raw 64-byte ``R || S``. A key or signature of another length is simply
    not valid: False, not an exception. Arguments that are not bytes-like raise ``TypeError``.
    """
    global _cache_hits, _cache_misses
    public_key = _as_bytes(public_key_raw32, "public key")
    signature = _as_bytes(signature64, "signature")
    message = _as_bytes(message, "message")
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    key = (public_key, signature, hashlib.sha512(message).digest(), len(message))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            _cache_hits += 1
            return cached
        _cache_misses += 1
    # computed outside the lock: two threads may both compute a new triple, with the same result
    result = _verify_uncached(public_key, signature, message)
    with _cache_lock:
        _cache[key] = result
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return result


# --------------------------------------------------------------------------------------- PEM

# SubjectPublicKeyInfo of an Ed25519 key, DER: SEQUENCE { SEQUENCE { OID 1.3.101.112 },
# BIT STRING (0 unused bits) of the 32 key bytes }. DER has exactly one encoding of it.
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")

_ALGORITHMS = {
    "1.2.840.113549.1.1.1": "an RSA",
    "1.2.840.113549.1.1.10": "an RSASSA-PSS",
    "1.2.840.10045.2.1": "an EC",
    "1.2.840.10040.4.1": "a DSA",
    "1.2.840.113549.1.3.1": "a Diffie-Hellman",
    "1.2.840.10046.2.1": "a Diffie-Hellman (X9.42)",
    "1.3.101.110": "an X25519 (key agreement)",
    "1.3.101.111": "an X448 (key agreement)",
    "1.3.101.113": "an Ed448",
}
_CURVES = {
    "1.2.840.10045.3.1.7": "P-256",
    "1.3.132.0.34": "P-384",
    "1.3.132.0.35": "P-521",
    "1.3.132.0.10": "secp256k1",
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


def _der_item(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """``(tag, content, next position)`` of the DER element at ``pos``; ValueError if cut short."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length, pos = data[pos], data[pos + 1], pos + 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("bad DER length")
        length, pos = int.from_bytes(data[pos:pos + n], "big"), pos + n
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:pos + length], pos + length


def _oid_text(content: bytes) -> str:
    if not content:
        raise ValueError("empty OID")
    arcs, value = [], 0
    for byte in content:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def _describe_spki(der: bytes) -> str:
    """What a SubjectPublicKeyInfo that is not a plain Ed25519 key holds, in words."""
    try:
        tag, spki, _ = _der_item(der, 0)
        if tag != 0x30:
            raise ValueError("not a SEQUENCE")
        tag, algorithm, _ = _der_item(spki, 0)
        if tag != 0x30:
            raise ValueError("no AlgorithmIdentifier")
        tag, oid_der, after = _der_item(algorithm, 0)
        if tag != 0x06:
            raise ValueError("no algorithm OID")
        oid = _oid_text(oid_der)
    except ValueError as exc:
        return f"PEM public key is not a readable SubjectPublicKeyInfo ({exc})"
    if oid == "1.3.101.112":
        return (f"PEM holds a malformed Ed25519 public key ({len(der)} bytes of DER, expected "
                f"{len(_ED25519_SPKI_PREFIX) + PUBLIC_KEY_SIZE})")
    kind = _ALGORITHMS.get(oid, "an unknown kind of")
    if oid == "1.2.840.10045.2.1":  # EC: name the curve
        try:
            tag, curve, _ = _der_item(algorithm, after)
            if tag == 0x06:
                curve_oid = _oid_text(curve)
                kind = f"an EC ({_CURVES.get(curve_oid, curve_oid)})"
        except ValueError:
            pass
    return f"PEM holds {kind} public key (algorithm OID {oid}), not an Ed25519 public key"


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


def public_key_from_pem(pem: bytes | bytearray) -> bytes:
    """The raw 32-byte Ed25519 public key in a ``-----BEGIN PUBLIC KEY-----`` PEM.

    The raw bytes are what :func:`verify` takes and what key ids are hashed from. Anything else
    raises ``ValueError`` saying what it is: no PEM, a private key, a certificate, an RSA/EC/other
    public key, a malformed Ed25519 key, or one that is not a usable point (off the curve, not in
    canonical form, or of small order, which would let anyone forge signatures). Text around
    the block is ignored, as OpenSSL ignores it.
    """
    if not isinstance(pem, (bytes, bytearray)):
        raise TypeError(f"PEM must be bytes, not {type(pem).__name__}")
    return _public_key_from_pem(bytes(pem))


@lru_cache(maxsize=32)  # every signature check loads its trusted key; a device has a few
def _public_key_from_pem(pem: bytes) -> bytes:
    try:
        text = pem.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not a PEM public key: not ASCII text (a binary DER file?)") from None
    blocks = _pem_blocks(text)
    bodies = [body for label, body in blocks if label == "PUBLIC KEY"]
    if not bodies:
        if blocks:
            label = blocks[0][0]
            what = _OTHER_PEM_LABELS.get(label, f"a PEM {label!r} block")
            raise ValueError(f"not a PEM public key: it is {what}")
        if text.lstrip().startswith("ssh-ed25519 "):
            raise ValueError("not a PEM public key: it is an OpenSSH public key line "
                             "(convert it with `ssh-keygen -e -m PKCS8 -f KEY`)")
        raise ValueError("not a PEM public key: no '-----BEGIN PUBLIC KEY-----' block")
    try:
        der = base64.b64decode(bodies[0], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a PEM public key: the PUBLIC KEY block is not valid base64") from None
    if len(der) != len(_ED25519_SPKI_PREFIX) + PUBLIC_KEY_SIZE \
            or not der.startswith(_ED25519_SPKI_PREFIX):
        raise ValueError(_describe_spki(der))
    raw = der[len(_ED25519_SPKI_PREFIX):]
    point = _decode_point(raw)
    if point is None:
        raise ValueError("PEM holds 32 bytes that are not an Ed25519 public key "
                         "(not a point on the curve in canonical encoding)")
    if _has_small_order(*point):
        raise ValueError("PEM holds an Ed25519 public key of small order, with which anyone "
                         "can forge signatures; it cannot be trusted")
    return raw


def _has_small_order(x: int, y: int) -> bool:
    """Whether ``[8]P`` is the identity: ``P`` is one of the eight torsion points."""
    z = 1
    for _ in range(3):
        a, b, c = x * x % _P, y * y % _P, 2 * z * z % _P
        h = a + b
        e, g = h - (x + y) * (x + y) % _P, a - b
        f = c + g
        x, y, z = e * f % _P, g * h % _P, f * g % _P
    return x % _P == 0  # x = 0: the identity or (0, -1), and [8]P of order 2 cannot be the latter
