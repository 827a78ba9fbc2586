"""``pg_dump`` of a client's database streamed straight into an S3 multipart upload.

    pg_dump --format=custom --compress=0 ─stdout─► gzip (worker thread) ─8 MiB parts─► S3

Neither the dump nor the compressed archive is ever whole in memory or on disk: at most one
part is being built, one waits in the channel and one is being uploaded (about 3 x ``PART_SIZE``).
pg_dump writes its archive uncompressed so that the one gzip layer around it makes the object a
plain ``application/gzip`` file (``gunzip -c | pg_restore`` works by hand).

A failure anywhere (pg_dump's exit status, S3, cancellation) kills pg_dump and leaves the
upload to the caller to abort, so no partial object ever becomes visible.
"""

from __future__ import annotations

import subprocess
import zlib
from typing import Protocol

import trio

from athena.backups.pgtools import StderrTail, ToolTarget, failure_reason
from athena.backups.storage import PART_SIZE, MultipartUpload

# gzip level 3: most of level 6's ratio on table data at roughly twice the speed, so the
# compressor (one core) keeps up with pg_dump and S3.
GZIP_LEVEL = 3
# Bytes gathered from pg_dump before one hop to the compressor thread (pipes deliver ≤ 64 KiB).
COMPRESS_BATCH = 1024 * 1024
# pg_dump gives up instead of waiting forever behind a long-held exclusive lock.
LOCK_WAIT_TIMEOUT_MS = 60_000


class DumpFailed(Exception):
    """pg_dump exited with an error; ``reason`` is its scrubbed stderr."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DumpProgress(Protocol):
    def dumped(self, raw: int, compressed: int) -> None: ...
    def uploaded(self, nbytes: int) -> None: ...


def pg_dump_args(pg_dump: str, target: ToolTarget) -> list[str]:
    return [
        pg_dump,
        "--format=custom",
        "--compress=0",
        "--no-password",
        f"--lock-wait-timeout={LOCK_WAIT_TIMEOUT_MS}",
        f"--dbname={target.conninfo}",
    ]


async def dump_to_upload(
    pg_dump: str, target: ToolTarget, upload: MultipartUpload, progress: DumpProgress
) -> int:
    """Run pg_dump into ``upload``; return the archive's size in bytes (compressed).

    Raises ``DumpFailed`` (pg_dump failed), ``StorageError`` (S3 failed) or ``Cancelled``;
    the caller completes or aborts ``upload``.
    """
    proc = await trio.lowlevel.open_process(
        pg_dump_args(pg_dump, target),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=target.env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    tail = StderrTail()
    stderr_done = trio.Event()
    compressed_total = 0
    try:
        parts_send, parts_recv = trio.open_memory_channel[bytes](1)

        async def collect_stderr() -> None:
            assert proc.stderr is not None
            try:
                await tail.collect(proc.stderr)
            finally:
                stderr_done.set()

        async def upload_parts() -> None:
            async with parts_recv:
                async for part in parts_recv:
                    await upload.upload_part(part)
                    progress.uploaded(len(part))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect_stderr)
            nursery.start_soon(upload_parts)
            async with parts_send:
                compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                pending = bytearray()  # raw pg_dump output waiting for the compressor
                part = bytearray()  # compressed bytes waiting to fill a part
                raw_total = 0
                eof = False
                while not eof:
                    chunk = await proc.stdout.receive_some(COMPRESS_BATCH)
                    if chunk:
                        pending += chunk
                        raw_total += len(chunk)
                    else:
                        eof = True
                    if len(pending) < COMPRESS_BATCH and not eof:
                        continue
                    data = bytes(pending)
                    pending.clear()
                    out = await trio.to_thread.run_sync(compressor.compress, data)
                    if eof:
                        out += compressor.flush()
                    part += out
                    compressed_total += len(out)
                    progress.dumped(raw_total, compressed_total)
                    while len(part) >= PART_SIZE:
                        with memoryview(part) as view:  # one copy, not two
                            ready = bytes(view[:PART_SIZE])
                        del part[:PART_SIZE]
                        await parts_send.send(ready)
                returncode = await proc.wait()
                with trio.move_on_after(5):
                    await stderr_done.wait()
                if returncode != 0:
                    raise DumpFailed(failure_reason("pg_dump", returncode, tail.text(), target))
                # The last part may be small; S3 allows that for the final part only.
                if part or not upload.parts:
                    await parts_send.send(bytes(part))
    except BaseException:
        _kill(proc)
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await proc.wait()
        raise
    return compressed_total


def _kill(proc: trio.Process) -> None:
    if proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
