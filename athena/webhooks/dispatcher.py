"""Delivering webhooks: one sender per webhook across all instances, in order, at least once.

Each instance runs ``run_dispatcher`` (supervised). It leases webhooks whose oldest pending
delivery is due — ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)`` on
``lease_owner``/``lease_until`` — and sends that webhook's pending deliveries one after the
other, oldest first, renewing the lease as it goes. Only the lease holder sends, so a webhook's
deliveries arrive in order; a lease not renewed for ``ATHENA_WEBHOOK_LEASE_SECONDS`` (its holder
died) is taken over by another instance, which may resend what the dead one sent but had not
recorded yet: at least once, never twice except after a crash.

A delivery is a POST with httpx (``ATHENA_WEBHOOK_TIMEOUT_S``) to the webhook's URL, checked by
the outbound guard at every attempt, carrying::

    X-Athena-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook's secret>
    X-Athena-Delivery:  <delivery id>
    X-Athena-Event:     <event name>

2xx is delivered. 5xx, 408, 429, timeouts and connection errors are retried after a capped
exponential backoff with jitter (``ATHENA_WEBHOOK_RETRY_BASE_S`` · 2^(try-1), at most
``ATHENA_WEBHOOK_RETRY_MAX_S``, times a random factor in [0.5, 1]); the webhook's later
deliveries wait behind it, which is what keeps them in order. After
``ATHENA_WEBHOOK_MAX_ATTEMPTS`` tries, or at once on another 4xx or a refused URL, the delivery
is ``dead``: listed, redeliverable, and no longer blocking the ones after it. Every attempt is
logged with its time, status, latency and the start of the response.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import trio

from athena import __version__
from athena.errors import ApiError
from athena.services.outbound import send_checked

if TYPE_CHECKING:
    from athena.runtime import Runtime
    from athena.webhooks.book import WebhookBook

log = logging.getLogger("athena.webhooks.dispatcher")

RESPONSE_EXCERPT = 512
SEND_BATCH = 50
# Webhooks one instance sends to at once (each one's deliveries go one after the other).
PARALLEL_WEBHOOKS = 8
_RETRYABLE = {408, 429}


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Attempt:
    delivery_id: int
    attempt: int
    at: datetime
    status: int | None
    latency_ms: float
    excerpt: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        if self.ok:
            return False
        if self.status is None:
            return self.error != "refused"
        return self.status >= 500 or self.status in _RETRYABLE


@dataclass
class Delivery:
    id: int
    event: str
    payload: str
    tries: int
    attempts: int
    next_attempt_at: datetime


class Dispatcher:
    def __init__(self, rt: Runtime, book: WebhookBook) -> None:
        self.rt = rt
        self.book = book
        s = rt.settings
        self.owner = f"{book.instance_id}"
        self.lease_seconds = float(s.webhook_lease_seconds)
        self.timeout = float(s.webhook_timeout_s)
        self.retry_base = float(s.webhook_retry_base_s)
        self.retry_max = float(s.webhook_retry_max_s)
        self.max_attempts = int(s.webhook_max_attempts)
        self.poll = float(s.webhook_poll_seconds)
        self.busy: set[int] = set()
        self.client: httpx.AsyncClient | None = None

    def backoff(self, tries: int) -> float:
        return min(self.retry_max, self.retry_base * 2 ** max(0, tries - 1)) * random.uniform(
            0.5, 1.0
        )

    # -- sending ---------------------------------------------------------------------------

    async def post(self, url: str, secret: str, delivery_id: int, event: str, body: str) -> Attempt:
        assert self.client is not None
        data = body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"Athena-Webhooks/{__version__}",
            "X-Athena-Signature": signature(secret, data),
            "X-Athena-Delivery": str(delivery_id),
            "X-Athena-Event": event,
        }
        at = datetime.now(UTC)
        started = time.perf_counter()
        status: int | None = None
        excerpt: str | None = None
        error: str | None = None
        try:
            with trio.fail_after(self.timeout):
                response = await send_checked(
                    self.client, "POST", url, self.book.policy, headers=headers, content=data
                )
            status = response.status_code
            excerpt = response.text[:RESPONSE_EXCERPT]
        except ApiError as exc:  # the outbound guard refused the URL (now)
            error = "refused"
            excerpt = exc.message[:RESPONSE_EXCERPT]
        except (trio.TooSlowError, httpx.TimeoutException):
            error = f"timed out after {self.timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:RESPONSE_EXCERPT]
        latency = (time.perf_counter() - started) * 1000
        return Attempt(delivery_id, 0, at, status, latency, excerpt, error)

    # -- leases ----------------------------------------------------------------------------

    def _claim(self, conn: psycopg.Connection, limit: int) -> list[tuple[int, str, str]]:
        with conn.transaction():
            return conn.execute(  # type: ignore[return-value]
                """UPDATE athena.webhooks w
                      SET lease_owner = %(me)s,
                          lease_until = now() + make_interval(secs => %(lease)s)
                    WHERE w.id IN (
                        SELECT c.id FROM athena.webhooks c
                         WHERE c.enabled
                           AND NOT (c.id = ANY(%(busy)s))
                           AND (c.lease_until IS NULL OR c.lease_until < now()
                                OR c.lease_owner = %(me)s)
                           AND (SELECT d.next_attempt_at FROM athena.webhook_deliveries d
                                 WHERE d.webhook_id = c.id AND d.state = 'pending'
                                 ORDER BY d.id LIMIT 1) <= now()
                         ORDER BY c.id LIMIT %(limit)s
                           FOR UPDATE SKIP LOCKED)
                RETURNING w.id, w.url, w.secret""",
                {"me": self.owner, "lease": self.lease_seconds, "busy": list(self.busy),
                 "limit": limit},
            ).fetchall()  # fmt: skip

    def _pending(self, conn: psycopg.Connection, webhook_id: int) -> list[Delivery]:
        rows = conn.execute(
            """SELECT id, event, payload, tries, attempts, next_attempt_at
                 FROM athena.webhook_deliveries
                WHERE webhook_id = %s AND state = 'pending' ORDER BY id LIMIT %s""",
            (webhook_id, SEND_BATCH),
        ).fetchall()
        return [Delivery(*r) for r in rows]

    def _record(
        self, conn: psycopg.Connection, webhook_id: int, attempts: list[Attempt],
        outcomes: list[tuple[int, str, int, float | None]], release: bool,
    ) -> bool:  # fmt: skip
        """Write the attempts and the deliveries' new states, renew (or release) the lease;
        False when the lease was lost (someone else sends now)."""
        with conn.transaction():
            with conn.cursor() as cur:
                if attempts:
                    cur.executemany(
                        """INSERT INTO athena.webhook_attempts
                               (delivery_id, attempt, at, status, latency_ms, response_excerpt,
                                error)
                           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                        [(a.delivery_id, a.attempt, a.at, a.status, a.latency_ms, a.excerpt,
                          a.error) for a in attempts],
                    )  # fmt: skip
                if outcomes:
                    cur.executemany(
                        """UPDATE athena.webhook_deliveries
                              SET state = %s, tries = tries + 1, attempts = attempts + 1,
                                  next_attempt_at = now() + make_interval(secs => coalesce(%s, 0)),
                                  delivered_at = CASE WHEN %s = 'delivered' THEN now() END,
                                  last_status = %s, last_error = %s
                            WHERE id = %s""",
                        [(state, delay, state, a.status, a.error, delivery_id)
                         for (delivery_id, state, _, delay), a in zip(outcomes, attempts, strict=True)],
                    )  # fmt: skip
            row = conn.execute(
                """UPDATE athena.webhooks
                      SET lease_until = CASE WHEN %(release)s THEN NULL
                                        ELSE now() + make_interval(secs => %(lease)s) END,
                          lease_owner = CASE WHEN %(release)s THEN NULL ELSE lease_owner END
                    WHERE id = %(id)s AND lease_owner = %(me)s RETURNING id""",
                {"release": release, "lease": self.lease_seconds, "id": webhook_id,
                 "me": self.owner},
            ).fetchone()  # fmt: skip
            return row is not None

    # -- one webhook -----------------------------------------------------------------------

    async def send_webhook(self, webhook_id: int, url: str, secret: str) -> None:
        """Send a leased webhook's due deliveries, oldest first, until none is due."""
        catalog = self.rt.catalog
        try:
            while True:
                batch = await catalog.run(lambda c: self._pending(c, webhook_id))
                attempts: list[Attempt] = []
                outcomes: list[tuple[int, str, int, float | None]] = []
                blocked = False
                renewed_at = time.monotonic()
                for d in batch:
                    if d.next_attempt_at > datetime.now(UTC):
                        blocked = True  # the oldest waits for its retry: the rest wait too
                        break
                    attempt = await self.post(url, secret, d.id, d.event, d.payload)
                    attempt.attempt = d.attempts + 1
                    attempts.append(attempt)
                    tries = d.tries + 1
                    if attempt.ok:
                        outcomes.append((d.id, "delivered", tries, None))
                    elif attempt.retryable and tries < self.max_attempts:
                        outcomes.append((d.id, "pending", tries, self.backoff(tries)))
                        blocked = True
                        break
                    else:
                        outcomes.append((d.id, "dead", tries, None))
                    if time.monotonic() - renewed_at > self.lease_seconds / 3:
                        break  # record (and renew the lease) before going on
                done = blocked or (len(batch) < SEND_BATCH and len(outcomes) == len(batch))
                kept = await catalog.run(
                    lambda c, a=attempts, o=outcomes, d=done: self._record(
                        c, webhook_id, a, o, release=d
                    )
                )
                if not kept:
                    log.warning(
                        "lost the lease of webhook %s; another instance sends now", webhook_id
                    )
                    return
                if done or not batch:
                    if blocked:
                        self.book.dispatcher_wakeup.set()  # the retry may be due before the poll
                    return
        finally:
            self.busy.discard(webhook_id)

    async def run(self) -> None:
        """Supervised: lease due webhooks and send them, a few at once."""
        async with (
            httpx.AsyncClient(timeout=self.timeout) as client,
            trio.open_nursery() as nursery,
        ):
            self.client = client
            while True:
                self.book.dispatcher_wakeup = trio.Event()
                free = PARALLEL_WEBHOOKS - len(self.busy)
                claimed = []
                if free > 0:
                    try:
                        claimed = await self.rt.catalog.run(lambda c, n=free: self._claim(c, n))
                    except Exception:
                        log.warning("claiming webhook deliveries failed", exc_info=True)
                for webhook_id, url, secret in claimed:
                    self.busy.add(webhook_id)
                    nursery.start_soon(self._guarded, webhook_id, url, secret)
                with trio.move_on_after(self.next_wait()):
                    await self.book.dispatcher_wakeup.wait()

    def next_wait(self) -> float:
        # Short after a retry was scheduled (a test's backoff is tens of milliseconds),
        # else the poll period: other instances' events arrive through the catalog.
        return min(self.poll, max(0.02, self.retry_base / 2))

    async def _guarded(self, webhook_id: int, url: str, secret: str) -> None:
        try:
            await self.send_webhook(webhook_id, url, secret)
        except Exception:
            self.busy.discard(webhook_id)
            log.warning("sending webhook %s failed", webhook_id, exc_info=True)
        finally:
            self.book.dispatcher_wakeup.set()

    # -- test and redeliver ------------------------------------------------------------------

    async def send_test(self, webhook_id: int) -> dict[str, Any] | None:
        """POST a ``webhook.test`` event now (outside the queue) and log it as a delivery."""
        from athena.webhooks.events import TEST_EVENT, other_event_body

        found = await self.book.secret_and_url(webhook_id)
        if found is None:
            return None
        secret, url = found
        uid = str(uuid.uuid4())
        body = other_event_body(
            event_uuid=uid, event=TEST_EVENT,
            occurred_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"), webhook_id=webhook_id,
        )  # fmt: skip

        def insert(conn: psycopg.Connection) -> int:
            row = conn.execute(
                """INSERT INTO athena.webhook_deliveries
                       (webhook_id, event, event_uuid, payload, state)
                   VALUES (%s, %s, %s, %s, 'dead') RETURNING id""",
                (webhook_id, TEST_EVENT, uid, body),
            ).fetchone()  # 'dead' until it succeeds: the dispatcher never picks it up
            assert row is not None
            return int(row[0])

        delivery_id = await self.rt.catalog.run(insert)
        if self.client is None:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                self.client = client
                attempt = await self.post(url, secret, delivery_id, TEST_EVENT, body)
                self.client = None
        else:
            attempt = await self.post(url, secret, delivery_id, TEST_EVENT, body)
        attempt.attempt = 1
        state = "delivered" if attempt.ok else "dead"

        def record(conn: psycopg.Connection) -> None:
            with conn.transaction():
                conn.execute(
                    """INSERT INTO athena.webhook_attempts
                           (delivery_id, attempt, at, status, latency_ms, response_excerpt, error)
                       VALUES (%s, 1, %s, %s, %s, %s, %s)""",
                    (delivery_id, attempt.at, attempt.status, attempt.latency_ms, attempt.excerpt,
                     attempt.error),
                )  # fmt: skip
                conn.execute(
                    """UPDATE athena.webhook_deliveries
                          SET state = %s, tries = 1, attempts = 1, last_status = %s,
                              last_error = %s,
                              delivered_at = CASE WHEN %s = 'delivered' THEN now() END
                        WHERE id = %s""",
                    (state, attempt.status, attempt.error, state, delivery_id),
                )

        await self.rt.catalog.run(record)
        return await self.book.delivery(delivery_id)


async def redeliver(rt: Runtime, book: WebhookBook, delivery_id: int) -> dict[str, Any] | None:
    """Queue a delivery again (dead or delivered): a fresh round of tries, due now."""

    def requeue(conn: psycopg.Connection) -> bool:
        return (
            conn.execute(
                """UPDATE athena.webhook_deliveries
                  SET state = 'pending', tries = 0, next_attempt_at = now(), delivered_at = NULL
                WHERE id = %s AND event <> 'webhook.test' RETURNING id""",
                (delivery_id,),
            ).fetchone()
            is not None
        )

    found = await book.delivery(delivery_id)
    if found is None:
        return None
    if found["event"] == "webhook.test":
        raise ApiError(
            "invalid_request", "a test delivery is not redelivered; send another test instead"
        )
    await rt.catalog.run(requeue)
    book.dispatcher_wakeup.set()
    return await book.delivery(delivery_id)
