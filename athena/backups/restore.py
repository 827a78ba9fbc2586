"""A backup streamed from S3 into ``pg_restore``, into a client's database.

    S3 GET ─1 MiB chunks─► gunzip (worker thread, bounded output) ─stdin─► pg_restore

``pg_restore --clean --if-exists --single-transaction``: the target either ends up exactly as
the backup or, on any error, unchanged (the one transaction rolls back). ``--no-owner``: the
objects belong to the role the client connects with, which is the only role the gateway can
vouch for on the target server. Privileges (GRANTs) are kept.
"""

from __future__ import annotations

import subprocess
import zlib
from typing import Any, Protocol

import trio

from athena.backups.pgtools import StderrTail, ToolTarget, failure_reason
from athena.backups.storage import BackupStorage

# Decompressed output per step: a small archive chunk can inflate a lot (gzip ratios of
# 1000:1 exist), so output is produced in bounded slices rather than all at once.
MAX_INFLATE = 1024 * 1024


class RestoreFailed(Exception):
    """pg_restore failed or the archive is not a valid backup; ``reason`` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RestoreProgress(Protocol):
    def total(self, nbytes: int) -> None: ...
    def downloaded(self, nbytes: int) -> None: ...
    def set_phase(self, name: str) -> None: ...


def pg_restore_args(pg_restore: str, target: ToolTarget) -> list[str]:
    return [
        pg_restore,
        "--clean",
        "--if-exists",
        "--single-transaction",
        "--exit-on-error",
        "--no-owner",
        "--no-password",
        f"--dbname={target.conninfo}",
    ]


async def restore_from_storage(
    pg_restore: str,
    target: ToolTarget,
    storage: BackupStorage,
    key: str,
    progress: RestoreProgress,
) -> int:
    """Restore the backup ``key`` into ``target``; return the archive's size in bytes.

    Raises ``BackupNotFound``, ``StorageError``, ``RestoreFailed`` or ``Cancelled``. A kill of
    pg_restore (cancellation) closes its connection, so the server rolls the transaction back.
    """
    obj, chunks, body = await storage.open_download(key)
    progress.total(obj.size_bytes)
    try:
        proc = await trio.lowlevel.open_process(
            pg_restore_args(pg_restore, target),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=target.env(),
        )
    except BaseException:
        await _close_body(body)
        raise
    assert proc.stdin is not None and proc.stderr is not None
    tail = StderrTail()
    invalid: str | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tail.collect, proc.stderr)
            try:
                invalid = await _feed(proc, storage, chunks, progress)
            except trio.BrokenResourceError:
                pass  # pg_restore stopped reading: it failed; its stderr says why
            finally:
                with trio.CancelScope(shield=True):
                    await proc.stdin.aclose()
            if invalid is not None:
                _kill(proc)
            progress.set_phase("committing")
            returncode = await proc.wait()
    except BaseException:
        _kill(proc)
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await proc.wait()
        raise
    finally:
        await _close_body(body)
    if invalid is not None:
        raise RestoreFailed(invalid)
    if returncode != 0:
        raise RestoreFailed(failure_reason("pg_restore", returncode, tail.text(), target))
    return obj.size_bytes


async def _feed(
    proc: trio.Process, storage: BackupStorage, chunks: Any, progress: RestoreProgress
) -> str | None:
    """Pump the object through gunzip into pg_restore; a reason if the archive is bad."""
    assert proc.stdin is not None
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def inflate(data: bytes) -> bytes:
        return inflater.decompress(data, MAX_INFLATE)

    while True:
        chunk = await storage.next_chunk(chunks)
        if chunk is None:
            break
        progress.downloaded(len(chunk))
        data = chunk
        while data:
            if inflater.eof:
                return "the backup has data after the end of its gzip stream"
            try:
                out = await trio.to_thread.run_sync(inflate, data)
            except zlib.error as exc:
                return f"the backup is not a valid gzip archive ({exc})"
            if inflater.unused_data:
                return "the backup has data after the end of its gzip stream"
            data = inflater.unconsumed_tail
            if out:
                await proc.stdin.send_all(out)
    if not inflater.eof:
        return "the backup is truncated (its gzip stream does not end)"
    return None


def _kill(proc: trio.Process) -> None:
    if proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass


async def _close_body(body: Any) -> None:
    with trio.CancelScope(shield=True):
        await trio.to_thread.run_sync(body.close)
