"""Backup objects in S3 (or any S3-compatible service), through boto3 in worker threads.

boto3 is synchronous: every call here is a plain function that ``BackupStorage`` runs with
``trio.to_thread.run_sync``, so the event loop never waits on the network. One boto3 client is
created lazily and shared: boto3 clients are thread-safe (sessions are not).

Object layout::

    <prefix>/<client_name>/<YYYYMMDDTHHMMSSZ>-<job id>.dump.gz

The object is a gzip stream whose content is a ``pg_dump --format=custom`` archive, so
``gunzip -c x.dump.gz | pg_restore -d …`` restores it by hand. User metadata: ``client-name``,
``label``, ``created-at``, ``athena-version``, ``server-version`` and ``size``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import trio

from athena.config import Settings
from athena.errors import ApiError

log = logging.getLogger("athena.backups.storage")

EXTENSION = "dump.gz"
CONTENT_TYPE = "application/gzip"
# S3 needs parts of at least 5 MiB (except the last); 8 MiB keeps the number of parts for a
# 80 GB dump under the 10 000-part limit while bounding the memory one part holds.
PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000
# A download is relayed in chunks of this size: small enough to bound memory per download.
DOWNLOAD_CHUNK = 1024 * 1024
# HEAD requests run in parallel when listing (S3 listings carry no user metadata).
LIST_HEAD_CONCURRENCY = 8

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


@dataclass(frozen=True)
class BackupObject:
    """One backup as listed: the ``BackupObject`` schema of the spec."""

    key: str
    client_name: str
    label: str | None
    size_bytes: int
    created_at: str

    @property
    def id(self) -> str:
        name = self.key.rsplit("/", 1)[-1]
        return name[: -len(EXTENSION) - 1] if name.endswith("." + EXTENSION) else name

    @property
    def filename(self) -> str:
        return f"{self.client_name}-{self.key.rsplit('/', 1)[-1]}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "client_name": self.client_name,
            "label": self.label,
            "size_bytes": self.size_bytes,
            "created_at": self.created_at,
        }


class StorageError(Exception):
    """S3 refused or could not be reached. ``reason`` is safe to show (no credentials)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BackupNotFound(Exception):
    """The key names no backup object of this gateway."""


def require_configured(settings: Settings) -> None:
    """503 ``s3_not_configured`` naming every missing setting."""
    missing = settings.s3_missing()
    if missing:
        raise ApiError(
            "s3_not_configured",
            f"backups need S3 storage; set {', '.join(missing)}",
            data={"missing_settings": missing},
        )


def storage_api_error(exc: StorageError) -> ApiError:
    return ApiError(
        "storage_unavailable", "the backup storage (S3) cannot be used", detail=exc.reason
    )


def _encode_meta(value: str) -> str:
    # S3 user metadata travels in HTTP headers: ASCII only, so labels are percent-encoded.
    return quote(value, safe=" -_.:/@+=,;")


def _describe(exc: BaseException) -> str:
    """A short reason for an S3 failure, without credentials or request signatures."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return "no S3 credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot connect to the S3 endpoint: {exc.kwargs.get('endpoint_url', '')}"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"S3 error {err.get('Code', '?')}: {err.get('Message', '')}".strip()
    return f"S3 request failed: {type(exc).__name__}"


def _is_not_found(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    return (
        isinstance(exc, ClientError)
        and str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND_CODES
    )


def _sort_stamp(obj: dict[str, Any]) -> str:
    """``YYYYMMDDTHHMMSSZ`` of a listed object: its key's own stamp, else LastModified."""
    name = obj["Key"].rsplit("/", 1)[-1]
    stamp = name[:16]
    if len(stamp) == 16 and stamp[8] == "T" and stamp.endswith("Z"):
        return stamp
    modified = obj.get("LastModified")
    return modified.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") if modified else ""


class BackupStorage:
    """The bucket and prefix of this gateway's backups."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = settings.backup_s3_bucket or ""
        self.prefix = settings.backup_s3_prefix.strip("/")
        self._client: Any = None
        self._client_lock = trio.Lock()

    # -- plumbing --------------------------------------------------------------------------

    async def _s3(self) -> Any:
        async with self._client_lock:
            if self._client is None:
                self._client = await trio.to_thread.run_sync(self._make_client)
        return self._client

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            # S3-compatible services (MinIO, Ceph, moto…) need path-style addressing, and
            # several reject the CRC checksums newer botocore adds by default.
            s3={"addressing_style": "path"} if self.settings.backup_s3_endpoint else {},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=LIST_HEAD_CONCURRENCY + 4,
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.settings.backup_s3_endpoint or None,
            region_name=self.settings.backup_s3_region,
            config=config,
        )

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a boto3 call in a worker thread; S3 failures become ``StorageError``."""
        client = await self._s3()

        def run() -> Any:
            try:
                return fn(client, *args, **kwargs)
            except BackupNotFound:
                raise
            except Exception as exc:
                if _is_not_found(exc):
                    raise BackupNotFound() from None
                raise StorageError(_describe(exc)) from None

        return await trio.to_thread.run_sync(run, abandon_on_cancel=False)

    # -- keys ------------------------------------------------------------------------------

    def new_key(self, client_name: str, job_id: str, now: datetime) -> str:
        stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"{self.prefix}/{client_name}/{stamp}-{job_id}.{EXTENSION}"

    def owns(self, key: str) -> bool:
        """Whether ``key`` lies under our prefix: keys outside it are not backups (404)."""
        return (
            key.startswith(self.prefix + "/") and ".." not in key.split("/") and "\x00" not in key
        )

    def check_key(self, key: str) -> str:
        key = key.strip()
        if not key:
            raise ApiError("invalid_request", "a backup key is required")
        if not self.owns(key):
            raise ApiError("backup_not_found", "no backup has this key", data={"key": key})
        return key

    # -- operations ------------------------------------------------------------------------

    async def head(self, key: str) -> BackupObject:
        """The object's metadata, or ``BackupNotFound``."""
        response = await self.call(lambda c: c.head_object(Bucket=self.bucket, Key=key))
        return self._object(key, response, response.get("ContentLength", 0))

    def _object(self, key: str, head: dict[str, Any], size: int) -> BackupObject:
        meta = {k.lower(): unquote(v) for k, v in (head.get("Metadata") or {}).items()}
        parts = key.split("/")
        client = meta.get("client-name") or (parts[-2] if len(parts) >= 2 else "")
        created = meta.get("created-at")
        if not created and head.get("LastModified") is not None:
            created = head["LastModified"].astimezone(UTC).isoformat()
        return BackupObject(
            key=key,
            client_name=client,
            label=meta.get("label") or None,
            size_bytes=int(size),
            created_at=created or "",
        )

    async def list(self, client_name: str | None = None) -> list[BackupObject]:
        """Every backup (of ``client_name`` if given), newest first."""
        prefix = f"{self.prefix}/{client_name}/" if client_name else f"{self.prefix}/"

        def list_all(client: Any) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                found.extend(
                    obj for obj in page.get("Contents", []) if obj["Key"].endswith(EXTENSION)
                )
            return found

        listed = await self.call(list_all)
        objects: list[BackupObject | None] = [None] * len(listed)
        limiter = trio.Semaphore(LIST_HEAD_CONCURRENCY)

        async def describe(i: int, item: dict[str, Any]) -> None:
            async with limiter:
                try:
                    head = await self.call(
                        lambda c: c.head_object(Bucket=self.bucket, Key=item["Key"])
                    )
                except BackupNotFound:
                    return  # deleted between the listing and now
                objects[i] = self._object(item["Key"], head, item.get("Size", 0))

        async with trio.open_nursery() as nursery:
            for i, item in enumerate(listed):
                nursery.start_soon(describe, i, item)
        result = [o for o in objects if o is not None]
        # Keys embed a sortable UTC timestamp, so the key breaks ties of equal created_at.
        result.sort(key=lambda o: (o.created_at, o.key), reverse=True)
        return result

    async def list_page(
        self, client_name: str | None, limit: int | None, after: str | None
    ) -> tuple[list[BackupObject], str | None]:
        """A page of backups, newest first, and the cursor of the next page (None: last).

        The listing itself is cheap (keys only); only the page's objects are asked for their
        metadata. The order is the key's own UTC stamp (falling back to S3's LastModified),
        then the key, so pages never overlap or skip while backups are added.
        """
        if limit is None and after is None:
            return await self.list(client_name), None
        prefix = f"{self.prefix}/{client_name}/" if client_name else f"{self.prefix}/"

        def list_all(client: Any) -> list[tuple[str, str, int]]:
            found: list[tuple[str, str, int]] = []
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith(EXTENSION):
                        found.append((_sort_stamp(obj), obj["Key"], obj.get("Size", 0)))
            return found

        listed = sorted(await self.call(list_all), reverse=True)
        if after is not None:
            stamp, _, key = after.partition("\n")
            listed = [item for item in listed if (item[0], item[1]) < (stamp, key)]
        page = listed if limit is None else listed[:limit]
        more = limit is not None and len(listed) > limit
        objects: list[BackupObject | None] = [None] * len(page)
        limiter = trio.Semaphore(LIST_HEAD_CONCURRENCY)

        async def describe(i: int, key: str, size: int) -> None:
            async with limiter:
                try:
                    head = await self.call(lambda c: c.head_object(Bucket=self.bucket, Key=key))
                except BackupNotFound:
                    return
                objects[i] = self._object(key, head, size)

        async with trio.open_nursery() as nursery:
            for i, (_, key, size) in enumerate(page):
                nursery.start_soon(describe, i, key, size)
        next_cursor = f"{page[-1][0]}\n{page[-1][1]}" if more and page else None
        return [o for o in objects if o is not None], next_cursor

    async def delete(self, key: str) -> None:
        await self.head(key)  # S3 deletes of missing keys succeed silently: 404 first
        await self.call(lambda c: c.delete_object(Bucket=self.bucket, Key=key))

    async def open_download(self, key: str) -> tuple[BackupObject, Iterator[bytes], Any]:
        """Start a GET: (object, chunk iterator to pull in threads, body to close)."""
        response = await self.call(lambda c: c.get_object(Bucket=self.bucket, Key=key))
        obj = self._object(key, response, response.get("ContentLength", 0))
        body = response["Body"]
        return obj, body.iter_chunks(DOWNLOAD_CHUNK), body

    async def next_chunk(self, chunks: Iterator[bytes]) -> bytes | None:
        """The next chunk of a download (``None`` at the end), read in a worker thread."""

        def pull() -> bytes | None:
            try:
                return next(chunks, None)
            except Exception as exc:
                raise StorageError(_describe(exc)) from None

        return await trio.to_thread.run_sync(pull)

    # -- multipart upload ------------------------------------------------------------------

    async def start_upload(self, key: str, metadata: dict[str, str]) -> MultipartUpload:
        meta = {k: _encode_meta(v) for k, v in metadata.items()}
        response = await self.call(
            lambda c: c.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=CONTENT_TYPE, Metadata=meta
            )
        )
        return MultipartUpload(self, key, response["UploadId"], meta)


class MultipartUpload:
    """One S3 multipart upload: parts go up one by one; ``abort()`` leaves nothing behind."""

    def __init__(self, storage: BackupStorage, key: str, upload_id: str, meta: dict[str, str]):
        self.storage = storage
        self.key = key
        self.upload_id = upload_id
        self.meta = meta
        self.parts: list[dict[str, Any]] = []
        self.size = 0
        self.completed = False

    async def upload_part(self, data: bytes) -> None:
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise StorageError(f"the backup is larger than {MAX_PARTS} parts of {PART_SIZE} bytes")
        response = await self.storage.call(
            lambda c: c.upload_part(
                Bucket=self.storage.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
            )
        )
        self.parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self.size += len(data)

    async def complete(self) -> None:
        """Finish the upload, then record the final size in the object's metadata.

        The size is only known at the end, and S3 metadata is fixed at creation, so the object
        is copied onto itself with the full metadata (a server-side copy: no bytes pass
        through the gateway; boto3's managed copy handles objects above 5 GB).
        """
        bucket, key = self.storage.bucket, self.key
        await self.storage.call(
            lambda c: c.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        )
        self.completed = True
        meta = {**self.meta, "size": str(self.size)}
        try:
            await self.storage.call(
                lambda c: c.copy(
                    {"Bucket": bucket, "Key": key},
                    bucket,
                    key,
                    ExtraArgs={
                        "Metadata": meta,
                        "MetadataDirective": "REPLACE",
                        "ContentType": CONTENT_TYPE,
                    },
                )
            )
        except (StorageError, BackupNotFound):
            # The backup itself is complete and valid; only the size metadata is missing,
            # and listings fall back to the object's Content-Length.
            log.warning("recording the size of %s in its metadata failed", key, exc_info=True)

    async def abort(self) -> None:
        """Abort the upload (S3 discards the parts), or delete the object if the failure
        came after it was completed: a failed job leaves nothing behind. Shielded: it runs
        while cancelling."""
        bucket, key = self.storage.bucket, self.key
        with trio.CancelScope(shield=True), trio.move_on_after(30):
            try:
                if self.completed:
                    await self.storage.call(lambda c: c.delete_object(Bucket=bucket, Key=key))
                else:
                    await self.storage.call(
                        lambda c: c.abort_multipart_upload(
                            Bucket=bucket, Key=key, UploadId=self.upload_id
                        )
                    )
            except (StorageError, BackupNotFound):
                log.warning("removing the failed upload of %s failed", key, exc_info=True)
