"""S3 on loopback for tests: moto's standalone server, one bucket, the credentials to use."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from moto.server import ThreadedMotoServer

from athena.db.embedded import free_port


def aws_env(name: str) -> dict[str, str]:
    """Credentials for a gateway's environment (moto accepts any; they must only be set)."""
    return {
        "AWS_ACCESS_KEY_ID": f"{name}-access",
        "AWS_SECRET_ACCESS_KEY": f"{name}-secret-" + secrets.token_hex(8),
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@contextmanager
def loopback_s3(bucket: str, env: dict[str, str]) -> Iterator[str]:
    """Run an S3 server on 127.0.0.1 holding ``bucket``; yields its endpoint URL."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client(
            "s3", endpoint_url=endpoint, region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=bucket)  # fmt: skip
        yield endpoint
    finally:
        server.stop()
