"""API key format, hashing and verification; where the guard finds the presented key."""

from __future__ import annotations

import hashlib
import re

from athena.auth.guard import presented_key, presented_keys
from athena.auth.keys import (
    constant_time_equals,
    generate_key,
    hash_secret,
    parse_key,
    verify_secret,
)
from athena.context import CallContext


def test_generated_key_has_the_contract_format() -> None:
    key = generate_key()
    assert re.fullmatch(r"ath_[0-9a-f]{16}\.[0-9a-f]{64}", key.full)
    assert key.full == f"ath_{key.public_id}.{key.secret}"
    assert key.key_hash == hashlib.sha256(f"{key.salt}:{key.secret}".encode()).hexdigest()
    assert key.secret not in key.key_hash and key.secret != key.salt


def test_keys_are_unique_and_salted() -> None:
    keys = [generate_key() for _ in range(50)]
    assert len({k.public_id for k in keys}) == 50
    assert len({k.salt for k in keys}) == 50
    same_secret = [hash_secret(k.salt, "s" * 64) for k in keys[:2]]
    assert same_secret[0] != same_secret[1]  # the salt changes the hash


def test_parse_key() -> None:
    key = generate_key()
    assert parse_key(key.full) == (key.public_id, key.secret)
    assert parse_key(f"  {key.full}\n") == (key.public_id, key.secret)
    for bad in (
        "",
        "ath_",
        key.full.upper(),
        key.full.replace("ath_", "sk_"),
        f"ath_{key.public_id}{key.secret}",  # no dot
        f"ath_{key.public_id[:-1]}.{key.secret}",  # public id too short
        f"ath_{key.public_id}.{key.secret[:31]}",  # secret too short
        f"ath_{key.public_id}.{key.secret}z",
    ):
        assert parse_key(bad) is None, bad


def test_verify_secret() -> None:
    key = generate_key()
    assert verify_secret(key.secret, key.salt, key.key_hash)
    flipped = key.secret[:-1] + ("1" if key.secret[-1] == "0" else "0")
    assert not verify_secret(flipped, key.salt, key.key_hash)
    assert not verify_secret(key.secret, "other-salt", key.key_hash)
    assert not verify_secret("", key.salt, key.key_hash)


def test_constant_time_equals_handles_any_text() -> None:
    assert constant_time_equals("abc", "abc")
    assert not constant_time_equals("abc", "abd")
    assert not constant_time_equals("ä", "a")  # non-ASCII must not raise


def ctx(query: dict[str, str] | None = None, **headers: str) -> CallContext:
    return CallContext.from_pairs(
        [(k.replace("_", "-"), v) for k, v in headers.items()], query=query or {}
    )


def test_presented_keys_in_precedence_order() -> None:
    call = ctx(apikey="a", x_api_key="b", x_athena_key="c", authorization="Bearer d")
    assert presented_keys(call) == ["a", "b", "c", "d"]
    assert presented_keys(ctx(authorization="bearer  e ")) == ["e"]
    assert presented_keys(ctx(authorization="Basic xyz")) == []
    assert presented_keys(ctx(apikey="   ")) == []
    # the admin key may also come from X-Athena-Admin-Key (admin routes only), never from the
    # query string (?api_key=): the call gate refuses keys in URLs
    admin = ctx({"api_key": "q"}, x_athena_admin_key="z")
    assert presented_keys(admin, admin=True) == ["z"]
    assert presented_keys(admin) == []


def test_presented_key_prefers_an_athena_key() -> None:
    key = generate_key().full
    assert presented_key(ctx(apikey="anon-jwt", authorization=f"Bearer {key}")) == key
    assert presented_key(ctx(apikey="anon-jwt")) == "anon-jwt"
    assert presented_key(ctx()) is None
