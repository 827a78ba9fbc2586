"""The one way the event loop talks to one PostgreSQL database: ``Database`` over a pool.

psycopg's async API speaks asyncio, not trio, so a blocking database call runs a synchronous
function in a worker thread (``trio.to_thread.run_sync``) bounded by one ``CapacityLimiter``;
the gateway's own statements run on the event loop through libpq's non-blocking interface
(``fetch_one`` / ``fetch_json``). The event loop never blocks on a socket to Postgres.
"""

from __future__ import annotations

import contextlib
import logging
import math
import select
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
import trio
from psycopg_pool import ConnectionPool, PoolTimeout

from athena.db.libpq import PreparedNames, first_row_text, numbered, text_params
from athena.observability import tracing

log = logging.getLogger("athena.db")
T = TypeVar("T")


_DEFAULT = object()


class StatementDeadlineExceeded(Exception):
    """A call outlived its hard deadline (statement timeout plus grace) and was cancelled.

    ``statement_timeout`` bounds each statement server-side, but SQL sent by a trusted key could
    ``SET statement_timeout = 0``; this deadline, enforced from the event loop, cannot be
    switched off from SQL. Mapped to 504 ``statement_timeout``.
    """


class DatabaseUnavailable(Exception):
    """No connection could be had within the pool timeout (server down or pool exhausted).

    Raised by ``Database.run``; routes turn it into 503 ``client_unavailable`` (or
    ``auth_unavailable`` / ``catalog_unavailable`` for the catalog).
    """


def make_pool(
    uri: str,
    *,
    name: str,
    min_size: int,
    max_size: int,
    statement_timeout_ms: int,
    connect_timeout_s: float,
    pool_timeout_s: float,
    application_name: str = "athena",
) -> ConnectionPool:
    """A pool whose connections are autocommit and carry a statement timeout.

    ``open(wait=False)``: an unreachable database must not stop the gateway from starting; its
    requests get 503 until it comes back, and the pool reconnects by itself.
    """
    pool = ConnectionPool(
        uri,
        name=f"athena-{name}",
        min_size=min_size,
        max_size=max_size,
        timeout=pool_timeout_s,
        # A broken connection is dropped on return; checking on borrow costs a round trip
        # per request, so we rely on reconnect_failed + discard of BAD connections instead.
        kwargs={
            "autocommit": True,
            "connect_timeout": max(1, int(connect_timeout_s)),
            "application_name": application_name,
            "options": f"-c statement_timeout={int(statement_timeout_ms)}",
        },
        # A failed connect is retried once at once, then given up: no backoff of psycopg's own
        # (it starts at 1 s and doubles) sits between a database coming back and the gateway
        # noticing. Callers that wait retry with a short, capped backoff of ours instead
        # (Database._ask_pool_to_grow); a request that finds none fails fast with 503.
        reconnect_timeout=0,
        open=False,
    )
    pool.open(wait=False)
    return pool


@dataclass
class Database:
    """A pool plus the limiter that bounds the threads using it.

    Connections are handed out on the event loop: a call takes an idle connection at once, or
    parks until one comes back (``_acquire``). Worker threads run statements, not waits for
    the pool. That matters under load: a request that waited for a connection in a thread held
    it through two thread hops, so more requests found none idle and fell back to threads too
    (measured: 9 in 10 fetches at 32 concurrent requests).
    """

    name: str
    pool: ConnectionPool
    limiter: trio.CapacityLimiter
    pool_timeout_s: float = 5.0
    # Hard bound on one call: waiting for a connection + the statement timeout + grace.
    deadline_s: float | None = None
    # Every connection is closed after one call instead of going back to the pool (raw SQL:
    # whatever session state the caller's SQL leaves — prepared statements, SET, temp
    # objects — dies with its connection; the pool opens a fresh one).
    single_use: bool = False
    _returned: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)
    _growing: threading.Lock = field(default_factory=threading.Lock)
    _checking: threading.Lock = field(default_factory=threading.Lock)
    # Statements prepared by fetch_json, per connection (gone with the connection).
    _prepared: weakref.WeakKeyDictionary[psycopg.Connection, PreparedNames] = field(
        default_factory=weakref.WeakKeyDictionary
    )

    async def run(
        self, fn: Callable[[psycopg.Connection], T], *, deadline_s: float | object | None = _DEFAULT
    ) -> T:
        """Run ``fn(conn)`` in a worker thread with a pooled connection.

        On cancellation (client gone, shutdown, the hard deadline) the running statement is
        cancelled server-side and the connection goes back to the pool clean;
        ``trio.Cancelled`` propagates, the deadline raises ``StatementDeadlineExceeded``.
        ``deadline_s`` overrides the pool's deadline for long jobs (``None``: no deadline).
        """
        if tracing.TRACER is not None:
            # fn's statements are unknown here (raw SQL among them): no text on the span
            with tracing.statement_span(self.name, None):
                return await self._run_within(fn, deadline_s)
        return await self._run_within(fn, deadline_s)

    async def _run_within(self, fn: Callable[[psycopg.Connection], T], deadline_s: Any) -> T:
        deadline = self.deadline_s if deadline_s is _DEFAULT else deadline_s
        if deadline is None:
            return await self._run(fn)
        assert isinstance(deadline, (int, float))
        with trio.move_on_after(deadline) as scope:
            return await self._run(fn)
        assert scope.cancelled_caught
        raise StatementDeadlineExceeded(self.name)

    async def _run(self, fn: Callable[[psycopg.Connection], T]) -> T:
        conn = await self._acquire()
        token = trio.lowlevel.current_trio_token()
        lease = _Lease()

        def work() -> T:
            try:
                return fn(conn)
            except psycopg.OperationalError as exc:
                if _is_connection_failure(exc):
                    raise DatabaseUnavailable(self.name) from exc
                raise
            finally:
                # Also when the caller was cancelled and stopped waiting for this thread —
                # unless the statement is being stopped, and whoever stops it returns it.
                if lease.finish():
                    self._put_back_from_thread(conn, token)

        try:
            return await trio.to_thread.run_sync(work, limiter=self.limiter, abandon_on_cancel=True)
        except trio.Cancelled:
            if not lease.finished.is_set():
                threading.Thread(
                    target=self._stop_then_return, args=(conn, lease, token), daemon=True
                ).start()
            raise

    async def fetch_one(self, statement: Any, params: Any = None) -> tuple[Any, ...] | None:
        """Run one statement and return its first row, on the event loop itself.

        The hot path of the gateway: a worker-thread hand-off costs about as much CPU as the
        rest of a small request, so the statement is driven through libpq's non-blocking
        interface with trio waiting on the socket (``wait_on_trio``). Same errors, deadline and
        cancellation as ``run``.
        """

        if tracing.TRACER is not None:
            shape = statement if isinstance(statement, (str, bytes)) else None  # not Composed
            with tracing.statement_span(self.name, shape):
                return await self._fetch_one(statement, params)
        return await self._fetch_one(statement, params)

    async def _fetch_one(self, statement: Any, params: Any) -> tuple[Any, ...] | None:
        async def first_row(conn: psycopg.Connection) -> tuple[Any, ...] | None:
            cursor = conn.cursor()
            await wait_on_trio(
                cursor._execute_gen(statement, params),  # psycopg's own execute() generator
                conn.pgconn.socket,
            )
            return cursor.fetchone()

        return await self._on_loop(first_row)

    async def fetch_json(self, statement: bytes, params: list[Any]) -> tuple[bytes, int] | None:
        """The gateway's statements: one row of (JSON text, row count), as (bytes, int).

        Runs through libpq directly (``athena.db.libpq``) when every parameter is text, an
        integer or NULL — the gateway's own statements — else through ``fetch_one``. Same
        errors, deadline and cancellation as ``fetch_one``.
        """
        if tracing.TRACER is not None:
            with tracing.statement_span(self.name, statement):
                return await self._fetch_json(statement, params)
        return await self._fetch_json(statement, params)

    async def _fetch_json(self, statement: bytes, params: list[Any]) -> tuple[bytes, int] | None:
        texts = text_params(params)
        if texts is None:
            row = await self._fetch_one(statement, params)
            if row is None:
                return None
            data, count = row
            return (data.encode() if isinstance(data, str) else bytes(data)), int(count)
        query = numbered(statement)

        async def first_row(conn: psycopg.Connection) -> tuple[bytes | None, ...] | None:
            prepared = self._prepared.get(conn)
            if prepared is None:
                prepared = self._prepared[conn] = PreparedNames()
            return await first_row_text(conn, prepared, query, texts)

        values = await self._on_loop(first_row)
        if values is None:
            return None
        return values[0] or b"null", int(values[1] or 0)

    async def fetch_row_text(
        self, statement: bytes, params: list[bytes | None]
    ) -> tuple[bytes | None, ...] | None:
        """The first row of ``statement`` (``$n`` placeholders, text parameters) as bytes,
        through libpq as ``fetch_json`` runs the gateway's statements (``/rest/v1`` reads of a
        cached shape). Same errors, deadline and cancellation as ``fetch_one``."""
        if tracing.TRACER is not None:
            with tracing.statement_span(self.name, statement):
                return await self._fetch_row_text(statement, params)
        return await self._fetch_row_text(statement, params)

    async def _fetch_row_text(
        self, statement: bytes, params: list[bytes | None]
    ) -> tuple[bytes | None, ...] | None:
        async def first_row(conn: psycopg.Connection) -> tuple[bytes | None, ...] | None:
            prepared = self._prepared.get(conn)
            if prepared is None:
                prepared = self._prepared[conn] = PreparedNames()
            return await first_row_text(conn, prepared, statement, params)

        return await self._on_loop(first_row)

    async def _on_loop(self, use: Callable[[psycopg.Connection], Awaitable[T]]) -> T:
        """``await use(conn)`` with a pooled connection, under the pool's deadline; a connection
        interrupted mid-statement is cancelled server-side and replaced."""
        deadline = self.deadline_s
        with trio.move_on_after(deadline if deadline is not None else math.inf) as scope:
            conn = await self._acquire()
            try:
                result = await use(conn)
            except BaseException as exc:
                self._give_back(conn, exc)
                if isinstance(exc, psycopg.OperationalError) and _is_connection_failure(exc):
                    raise DatabaseUnavailable(self.name) from exc
                raise
            self._put_back(conn)
            return result
        assert scope.cancelled_caught
        raise StatementDeadlineExceeded(self.name)

    async def _acquire(self) -> psycopg.Connection:
        """A pooled connection, waited for on the event loop; ``DatabaseUnavailable`` after
        ``pool_timeout_s``.

        Callers park until a connection comes back. While the pool may still grow (or has no
        connection at all: the database may be down) one helper thread at a time asks psycopg's
        own ``getconn`` for one, which is what makes the pool open another connection, retrying
        every RETRY_MIN_S…RETRY_MAX_S while callers wait, and hands what it gets straight back
        to the parked callers. So a database that comes back is noticed within RETRY_MAX_S
        plus one connect.
        """
        if self.pool.closed:  # the client was removed: no point waiting for the pool
            raise DatabaseUnavailable(self.name)
        give_up = trio.current_time() + self.pool_timeout_s
        # A newcomer does not jump the queue: with callers parked it parks too, so under
        # sustained load nobody waits out the pool timeout while others keep barging in.
        woken = len(self._returned) == 0
        while True:
            stats = self.pool.get_stats()
            if woken and stats.get("pool_available", 0) > 0:
                try:
                    # With an idle connection getconn returns at once; if a pool thread took
                    # it in between, this gives up within a millisecond.
                    conn = self.pool.getconn(timeout=0.001)
                except PoolTimeout:
                    pass
                else:
                    if not _closed_by_server(conn):
                        return conn
                    # The server went away (restart, outage): this one and, most likely, every
                    # other idle one are dead. The pool discards them and opens fresh ones.
                    self.pool.putconn(conn)
                    self._discard_dead_idle()
                    continue
            if stats.get("pool_size", 0) < self.pool.max_size:
                self._ask_pool_to_grow()
            # Woken when a connection comes back; the timeout also notices ones the pool
            # itself replaced (after a broken one was discarded).
            with trio.move_on_at(min(give_up, trio.current_time() + 0.05)):
                await self._returned.park()
            woken = True
            if trio.current_time() >= give_up:
                raise DatabaseUnavailable(self.name)

    def _discard_dead_idle(self) -> None:
        """Have the pool test its idle connections (off the loop, one round at a time)."""
        if self._checking.locked():
            return
        self._checking.acquire()

        def check() -> None:
            try:
                self.pool.check()
            except Exception:  # closed meanwhile: nothing to check
                pass
            finally:
                self._checking.release()

        threading.Thread(target=check, daemon=True).start()

    def _ask_pool_to_grow(self) -> None:
        if self._growing.locked():
            return
        self._growing.acquire()
        token = trio.lowlevel.current_trio_token()

        def wait_for_a_new_connection() -> None:
            # Each getconn that finds no connection starts one connect attempt; one that failed
            # is tried again after a short wait, growing to RETRY_MAX_S, for as long as a caller
            # may still be waiting (pool_timeout_s).
            give_up = time.monotonic() + self.pool_timeout_s
            delay = RETRY_MIN_S
            try:
                while True:
                    try:
                        conn = self.pool.getconn(timeout=delay)
                        break
                    except PoolTimeout:
                        if time.monotonic() >= give_up or self.pool.closed:
                            return  # parked callers time out on their own
                        delay = min(delay * 2, RETRY_MAX_S)
                    except Exception:  # closed: parked callers time out on their own
                        return
            finally:
                self._growing.release()
            self._put_back_from_thread(conn, token, used=False)

        threading.Thread(target=wait_for_a_new_connection, daemon=True).start()

    def _put_back(self, conn: psycopg.Connection) -> None:
        self._return(conn)
        self._returned.unpark()

    def _return(self, conn: psycopg.Connection, *, used: bool = True) -> None:
        if used and self.single_use:
            conn.close()  # the pool discards a closed connection and opens another
        self.pool.putconn(conn)

    def _give_back(self, conn: psycopg.Connection, exc: BaseException) -> None:
        """Return ``conn`` after a failure; one interrupted mid-statement is stopped and closed."""
        if conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
            # Cancelled (deadline, client gone, shutdown) while the server works: stop the
            # statement server-side off the loop, then hand the connection back; the pool
            # closes a connection returned mid-exchange and opens a fresh one.
            token = trio.lowlevel.current_trio_token()
            threading.Thread(
                target=self._stop_idle_then_return, args=(conn, token), daemon=True
            ).start()
            return
        self._put_back(conn)

    # A cancelled statement is cancelled, and if it is still running after CANCEL_GRACE_S (SQL
    # can catch query_canceled and go on) its backend is terminated from a separate
    # connection; the connection then goes back to the pool, which replaces a dead one. So the
    # pool is whole again well within a second of the deadline.

    def _stop_then_return(
        self, conn: psycopg.Connection, lease: _Lease, token: trio.lowlevel.TrioToken
    ) -> None:
        """Stop the statement a worker thread is running on ``conn``."""
        _cancel_quietly(conn)
        if lease.finished.wait(CANCEL_GRACE_S) or not lease.claim():
            return  # the worker finished and returned the connection itself
        self._terminate_backend(conn.info.backend_pid)
        lease.finished.wait(5.0)  # the worker sees its connection die at once
        self._put_back_from_thread(conn, token)

    def _stop_idle_then_return(
        self, conn: psycopg.Connection, token: trio.lowlevel.TrioToken
    ) -> None:
        """Stop the statement on ``conn``, which nobody reads (the event-loop path)."""
        _cancel_quietly(conn)
        if not _answers_within(conn, CANCEL_GRACE_S):
            self._terminate_backend(conn.info.backend_pid)
        self._put_back_from_thread(conn, token)

    def _terminate_backend(self, pid: int) -> None:
        """``pg_terminate_backend`` from a connection of its own: the pool may be exhausted by
        the very statements being stopped. The backend is still ours — its connection is held
        by us until this returns — so the pid cannot name anyone else's session."""
        kwargs = dict(self.pool.kwargs)
        kwargs["connect_timeout"] = 2
        try:
            with psycopg.connect(self.pool.conninfo, **kwargs) as admin:
                # Waits (up to 1 s) until the backend is gone, so the pool replaces it at once.
                admin.execute("SELECT pg_catalog.pg_terminate_backend(%s, 1000)", (pid,))
        except Exception:  # the server is down or gone: its backends are gone with it
            log.warning("could not terminate backend %s of %s", pid, self.name, exc_info=True)

    def _put_back_from_thread(
        self, conn: psycopg.Connection, token: trio.lowlevel.TrioToken, *, used: bool = True
    ) -> None:
        self._return(conn, used=used)
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(self._returned.unpark)


async def wait_on_trio(gen: Any, fileno: int) -> Any:
    """Drive a psycopg generator, waiting on ``fileno`` with trio instead of blocking.

    The trio counterpart of ``psycopg.waiting.wait_async``: the generator yields what it waits
    for (read, write or both) and is sent what became ready.
    """
    from psycopg.waiting import READY_R, READY_W, WAIT_R, WAIT_W

    try:
        state = next(gen)
        while True:
            if state & WAIT_W:
                # A socket asked for writing is nearly always writable already.
                ready = _ready_now(fileno, state)
                if not ready:
                    await trio.lowlevel.wait_writable(fileno)
                    ready = READY_W
                state = gen.send(ready)
            elif state & WAIT_R:
                await trio.lowlevel.wait_readable(fileno)
                state = gen.send(READY_R)
            else:
                raise psycopg.InternalError(f"bad wait state {state!r}")
    except StopIteration as done:
        return done.value
    except OSError as exc:
        raise psycopg.OperationalError("connection socket closed") from exc


def _ready_now(fileno: int, state: Any) -> Any:
    from psycopg.waiting import READY_NONE, READY_R, READY_W, WAIT_R

    poller = select.poll()
    poller.register(fileno, select.POLLOUT | (select.POLLIN if state & WAIT_R else 0))
    ready = READY_NONE
    for _, events in poller.poll(0):
        if events & select.POLLIN:
            ready |= READY_R
        if events & select.POLLOUT:
            ready |= READY_W
    return ready


# While callers wait for a database that is down, a connect is tried again after RETRY_MIN_S,
# doubling up to RETRY_MAX_S: a database that comes back is in use within about RETRY_MAX_S (a
# refused connect on a down server costs a millisecond, so the retries cost nothing).
RETRY_MIN_S = 0.05
RETRY_MAX_S = 0.25


def _closed_by_server(conn: psycopg.Connection) -> bool:
    """Whether an idle connection was closed by the server (shutdown, restart, terminate).

    An idle connection has nothing to read; when its socket is readable the server has sent
    its goodbye (or closed the socket). One poll, no round trip: cheap enough for every borrow.
    """
    pgconn = conn.pgconn
    try:
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN)
        if not poller.poll(0):
            return False
        pgconn.consume_input()  # a FATAL goodbye or EOF marks the connection BAD
    except (OSError, psycopg.Error):
        return True
    return pgconn.status != psycopg.pq.ConnStatus.OK


# How long a cancelled statement has to end by itself before its backend is terminated: a
# cancel normally takes effect within milliseconds; SQL that catches query_canceled never ends.
CANCEL_GRACE_S = 0.1


class _Lease:
    """Who returns a connection whose call was cancelled: the worker thread when it finishes,
    unless the stopper claimed the connection first (to terminate its backend)."""

    __slots__ = ("_lock", "claimed", "finished")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.claimed = False
        self.finished = threading.Event()

    def finish(self) -> bool:
        """The worker is done; True when it should return the connection itself."""
        with self._lock:
            self.finished.set()
            return not self.claimed

    def claim(self) -> bool:
        """The stopper takes the connection over; False when the worker returned it already."""
        with self._lock:
            if self.finished.is_set():
                return False
            self.claimed = True
            return True


def _answers_within(conn: psycopg.Connection, timeout: float) -> bool:
    """Whether the server sends something (the cancelled statement's error) within ``timeout``."""
    try:
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    except (OSError, psycopg.Error):
        return True  # no socket any more: nothing left to terminate


def _cancel_quietly(conn: psycopg.Connection) -> None:
    try:
        conn.cancel_safe(timeout=2.0)
    except Exception:  # best effort: the statement timeout bounds it anyway
        pass


_CONNECTION_SQLSTATES = {"08000", "08003", "08006", "08001", "08004", "57P01", "57P02", "57P03"}


def _is_connection_failure(exc: psycopg.OperationalError) -> bool:
    state = getattr(exc, "sqlstate", None)
    return state is None or state in _CONNECTION_SQLSTATES
