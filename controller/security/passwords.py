"""Mosquitto password hashes, written without ``mosquitto_passwd`` (the controller host need not
have Mosquitto installed).

Format of Mosquitto 2.0's ``password_file`` lines (what ``mosquitto_passwd`` writes)::

    username:$7$ITERATIONS$BASE64(salt, 12 bytes)$BASE64(PBKDF2-HMAC-SHA512(password, salt), 64 bytes)

The iteration count is Mosquitto's default (101): the passwords Edgewise issues are 256 random
bits, so a stolen ``passwd`` file cannot be brute-forced however cheap one guess is, and the
broker pays this hash on every connect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

ITERATIONS = 101
SALT_BYTES = 12


def hash_password(password: str, *, salt: bytes | None = None,
                  iterations: int = ITERATIONS) -> str:
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def verify_password(password: str, hashed: str) -> bool:
    """True if ``password`` matches a ``$7$`` hash (as Mosquitto would decide)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]), len(expected))
    return hmac.compare_digest(digest, expected)
