"""API key format, generation and verification (pure; no I/O).

A key is ``ath_<public_id>.<secret>``: ``public_id`` is 16 hex characters and looks the key up;
``secret`` is 32 random bytes as hex. Only ``salt`` and ``sha256(salt + ":" + secret)`` are
stored, so a catalog leak does not leak usable keys. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "ath_"
_KEY_RE = re.compile(r"ath_([0-9a-f]{16})\.([0-9a-f]{32,256})")


@dataclass(frozen=True)
class NewKey:
    """A freshly generated key: ``full`` is shown to the caller exactly once."""

    public_id: str
    secret: str
    salt: str
    key_hash: str

    @property
    def full(self) -> str:
        return f"{KEY_PREFIX}{self.public_id}.{self.secret}"


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def generate_key(public_id: str | None = None) -> NewKey:
    public_id = public_id or secrets.token_hex(8)
    secret = secrets.token_hex(32)
    salt = secrets.token_hex(16)
    return NewKey(public_id, secret, salt, hash_secret(salt, secret))


def parse_key(text: str) -> tuple[str, str] | None:
    """``(public_id, secret)`` of a well-formed key, else None."""
    match = _KEY_RE.fullmatch(text.strip())
    if match is None:
        return None
    return match.group(1), match.group(2)


def verify_secret(secret: str, salt: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(salt, secret), key_hash)


def constant_time_equals(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
