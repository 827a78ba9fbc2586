"""Passwords never leave the gateway: every URI shape a client may be configured with is masked."""

from __future__ import annotations

import pytest

from athena.errors import ApiError
from athena.services.client_catalog import safe_uri, validate_pg_uri


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("postgresql://app:s3cret@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("postgres://app:s3cret@db/x?sslmode=require", "postgres://app:***@db/x?sslmode=require"),
        (
            "postgresql://app@db/x?password=s3cret&sslmode=require",
            "postgresql://app@db/x?password=***&sslmode=require",
        ),
        ("host=db user=app password=s3cret dbname=x", "host=db user=app password=*** dbname=x"),
        ("host=db password = 's3 cret' dbname=x", "host=db password = *** dbname=x"),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        (None, None),
    ],
)
def test_safe_uri_masks_every_password_form(uri: str | None, masked: str | None) -> None:
    assert safe_uri(uri) == masked
    if uri:
        assert "s3cret" not in (safe_uri(uri) or "") and "s3 cret" not in (safe_uri(uri) or "")


@pytest.mark.parametrize(
    "uri",
    ["", "db:5432/x", "mysql://u:p@h/x", "postgresql://h:port/x", "postgresql:///x", 5, None],
)
def test_unusable_uris_are_refused(uri: object) -> None:
    with pytest.raises(ApiError) as err:
        validate_pg_uri(uri)
    assert err.value.code == "invalid_pg_uri"
