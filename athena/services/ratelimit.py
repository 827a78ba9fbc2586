"""Per-key and per-IP rate limits (``ATHENA_RATE_LIMIT_PER_KEY`` / ``_PER_IP``, requests/s),
shared by every worker and every instance that uses the same catalog.

The model is a token bucket per identity: it holds up to ``ATHENA_RATE_LIMIT_BURST`` tokens and
refills at the configured rate; a request takes one token or gets 429 ``rate_limited``.

Consistency: the bucket lives in the catalog (``athena.rate_limit_buckets``) and is the only
authority on tokens. A process never admits a request without a token the catalog granted it,
so the deployment as a whole never admits more than ``burst + rate x t`` in any ``t`` — with 2
workers or 2 instances exactly as with one. To keep the catalog off the hot path, a process
*leases* tokens in small batches (``rate x ATHENA_RATE_LIMIT_LEASE_MS``, at least one): most
requests take a token from the local lease with no I/O, one in a batch waits for one catalog
round trip (single flight per identity). Unused leased tokens go back to the bucket when the
lease expires (two lease periods), so a process that stopped sending does not starve another.
When the catalog says the bucket is empty, the process refuses locally until a token is due
back, so a flood costs the catalog about one statement per token, not one per request.
We chose leases over "local buckets reconciled every few hundred ms" because reconciliation
lets every process spend the same remaining budget before it hears from the others (N x the
limit in the worst window); leasing cannot over-admit, and its only error is under-admission by
tokens that sit unused in a lease for at most two lease periods.

If the catalog cannot be reached (or answers slower than ``_CATALOG_TIMEOUT_S``), limits fall
back to per-process buckets for ``_FALLBACK_S`` seconds: rate limiting is abuse protection, and a
catalog outage must not turn into refusing every request (keys still fail closed in the guard).

The key bucket is identified by the key's public id as presented — before it is verified — so
floods of invalid keys are limited too.

A 429 carries ``Retry-After`` (whole seconds until a token is back) and the IETF draft
(draft-ietf-httpapi-ratelimit-headers) fields ``RateLimit-Limit`` (the bucket's capacity),
``RateLimit-Remaining`` (tokens left: 0), ``RateLimit-Reset`` (seconds until a token is back)
and ``RateLimit-Policy`` (``<burst>;w=<seconds to refill the whole bucket>``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import psycopg
import trio

from athena.auth.guard import presented_key
from athena.config import Settings
from athena.context import CallContext
from athena.db.database import Database, DatabaseUnavailable, StatementDeadlineExceeded
from athena.errors import ApiError
from athena.supervisor import LEASE_RATE_LIMIT_PRUNE, BackgroundTask

if TYPE_CHECKING:
    from athena.runtime import Runtime

log = logging.getLogger("athena.ratelimit")

# Buckets idle this long are forgotten, so memory stays bounded under spoofed identities.
_IDLE_SECONDS = 300.0
_MAX_BUCKETS = 100_000
# A lease request slower than this counts as a catalog failure: the request must not hang on it.
_CATALOG_TIMEOUT_S = 0.5
# After a catalog failure, per-process buckets serve this long before the catalog is tried again.
_FALLBACK_S = 5.0
# The prune task deletes catalog buckets idle for longer than this (and than a full refill).
_PRUNE_IDLE_S = 600.0
_PRUNE_EVERY_S = 60.0

_TAKE_SQL = "SELECT granted, tokens_left FROM athena.rate_limit_take(%s, %s, %s, %s, %s)"


@dataclass(frozen=True)
class Verdict:
    """A bucket's answer: ``wait`` 0 → admitted; else seconds until a token is back."""

    wait: float
    remaining: float


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class TokenBuckets:
    """Per-process buckets: the fallback while the catalog is unreachable."""

    rate: float  # tokens per second; <= 0 disables
    burst: int
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _last_sweep: float = field(default_factory=time.monotonic)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, identity: str, now: float | None = None) -> float:
        """Take a token for ``identity``; return 0 if allowed, else seconds until one is back."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(identity)
        if bucket is None:
            self._sweep(now)
            bucket = self._buckets[identity] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(
                float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate
            )
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def verdict(self, identity: str) -> Verdict:
        wait = self.take(identity)
        bucket = self._buckets.get(identity)
        return Verdict(wait, bucket.tokens if bucket else 0.0)

    def _sweep(self, now: float) -> None:
        if len(self._buckets) < _MAX_BUCKETS and now - self._last_sweep < _IDLE_SECONDS:
            return
        self._last_sweep = now
        stale = [k for k, b in self._buckets.items() if now - b.updated > _IDLE_SECONDS]
        for key in stale:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_BUCKETS:
            self._buckets.clear()  # under attack: start over rather than grow without bound


@dataclass
class _Lease:
    """Tokens this process holds for one identity, and what the catalog last said."""

    stock: int = 0
    expires: float = 0.0  # after this the stock goes back to the catalog at the next lease
    closed_until: float = 0.0  # the catalog said empty: refuse locally until then
    left: float = 0.0  # tokens the catalog bucket held after the last lease
    used: float = 0.0
    pending: trio.Event | None = None  # a lease request in flight that others wait for


@dataclass
class SharedBuckets:
    """Token buckets kept in the catalog, leased to this process a few tokens at a time."""

    catalog: Database
    scope: str  # bucket name prefix: "http:key", "ws:ip", …
    rate: float
    burst: int
    lease_s: float = 0.1
    _leases: dict[str, _Lease] = field(default_factory=dict)
    _local: TokenBuckets | None = None
    _fallback_until: float = 0.0
    _last_sweep: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._local = TokenBuckets(self.rate, self.burst)
        # A batch covers one lease period at the full rate; never more than the bucket holds.
        self.want = max(1, min(self.burst, math.ceil(max(self.rate, 0.0) * self.lease_s)))
        # When refused, ask again no sooner than this: fewer catalog calls under a flood, yet
        # short enough that the bucket cannot fill up (and waste refill) in between, and what
        # accrued fits in one batch.
        rate = max(self.rate, 1e-9)  # rate 0 = disabled; never asked, but keep it finite
        self.poll_floor = min(self.lease_s / 2, max(0.0, self.burst - 1) / (2 * rate))

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def take(self, identity: str) -> Verdict:
        """A token for ``identity`` (waiting for the catalog only when the lease is spent)."""
        while True:
            now = time.monotonic()
            lease = self._leases.get(identity)
            if lease is None:
                self._sweep(now)
                lease = self._leases[identity] = _Lease()
            lease.used = now
            if lease.stock >= 1 and now < lease.expires:
                lease.stock -= 1
                return Verdict(0.0, lease.left + lease.stock)
            if now < lease.closed_until:
                return Verdict(lease.closed_until - now, 0.0)
            if now < self._fallback_until:
                assert self._local is not None
                return self._local.verdict(identity)
            if lease.pending is not None:
                await lease.pending.wait()
                continue
            await self._lease_more(identity, lease, now)

    async def _lease_more(self, identity: str, lease: _Lease, now: float) -> None:
        lease.pending = trio.Event()
        give_back, lease.stock = lease.stock, 0
        params = (f"{self.scope}:{identity}", self.rate, float(self.burst), self.want, give_back)
        try:
            row = None
            with trio.move_on_after(_CATALOG_TIMEOUT_S):
                row = await self.catalog.fetch_one(_TAKE_SQL, params)
            if row is None:
                raise TimeoutError
        except (DatabaseUnavailable, StatementDeadlineExceeded, psycopg.Error, TimeoutError) as exc:
            if now >= self._fallback_until:
                log.warning(
                    "rate limits: catalog unavailable (%s); per-process limits for %.0f s",
                    type(exc).__name__,
                    _FALLBACK_S,
                )
            self._fallback_until = time.monotonic() + _FALLBACK_S
            return
        finally:
            event, lease.pending = lease.pending, None
            event.set()
        granted, left = int(row[0]), float(row[1])
        done = time.monotonic()
        lease.stock, lease.left, lease.expires = granted, left, done + 2 * self.lease_s
        if granted == 0:
            lease.closed_until = done + max((1.0 - left) / self.rate, self.poll_floor, 1e-3)

    def _sweep(self, now: float) -> None:
        if len(self._leases) < _MAX_BUCKETS and now - self._last_sweep < _IDLE_SECONDS:
            return
        self._last_sweep = now
        stale = [
            k for k, v in self._leases.items() if now - v.used > _IDLE_SECONDS and not v.pending
        ]
        for key in stale:
            del self._leases[key]
        if len(self._leases) >= _MAX_BUCKETS:
            self._leases = {k: v for k, v in self._leases.items() if v.pending}


def refusal(buckets: TokenBuckets | SharedBuckets, verdict: Verdict, what: str) -> ApiError:
    """429 ``rate_limited`` with Retry-After and the RateLimit-* fields."""
    retry = max(1, math.ceil(verdict.wait))
    window = max(1, math.ceil(buckets.burst / buckets.rate))
    headers = {
        "Retry-After": str(retry),
        "RateLimit-Limit": str(buckets.burst),
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": str(retry),
        "RateLimit-Policy": f"{buckets.burst};w={window}",
    }
    return ApiError(
        "rate_limited",
        f"too many requests for this {what}; retry in {retry} s",
        headers=headers,
        data={"retry_after_seconds": retry, "limit": what},
    )


def check(buckets: TokenBuckets, identity: str, what: str) -> None:
    """Raise 429 ``rate_limited`` when ``identity`` is out of tokens (per-process buckets)."""
    if not buckets.enabled:
        return
    verdict = buckets.verdict(identity)
    if verdict.wait > 0:
        raise refusal(buckets, verdict, what)


@dataclass
class RateLimits:
    """The per-client-address and per-presented-key buckets, checked together."""

    per_ip: SharedBuckets | TokenBuckets
    per_key: SharedBuckets | TokenBuckets

    @classmethod
    def from_settings(
        cls, settings: Settings, catalog: Database | None = None, scope: str = "http"
    ) -> RateLimits:
        """Shared buckets on ``catalog`` (``ATHENA_RATE_LIMIT_SHARED``), else per process."""
        burst = settings.rate_limit_burst
        if catalog is None or not settings.rate_limit_shared:
            return cls(
                TokenBuckets(settings.rate_limit_per_ip, burst),
                TokenBuckets(settings.rate_limit_per_key, burst),
            )
        lease_s = settings.rate_limit_lease_ms / 1000
        return cls(
            SharedBuckets(catalog, f"{scope}:ip", settings.rate_limit_per_ip, burst, lease_s),
            SharedBuckets(catalog, f"{scope}:key", settings.rate_limit_per_key, burst, lease_s),
        )

    @property
    def enabled(self) -> bool:
        return self.per_ip.enabled or self.per_key.enabled

    async def check(self, ctx: CallContext) -> None:
        """Raise 429 ``rate_limited`` when either bucket of this call is empty."""
        if self.per_ip.enabled and ctx.remote_addr:
            await _take(self.per_ip, ctx.remote_addr, "client address")
        if self.per_key.enabled:
            key = presented_key(ctx, admin=True)
            if key:
                # The public id part of an Athena key (or the start of any other token) names
                # the bucket; the secret never becomes a dictionary key or a catalog row.
                await _take(self.per_key, key.partition(".")[0][:32], "API key")


async def _take(buckets: SharedBuckets | TokenBuckets, identity: str, what: str) -> None:
    if isinstance(buckets, SharedBuckets):
        verdict = await buckets.take(identity)
    else:
        verdict = buckets.verdict(identity)
    if verdict.wait > 0:
        raise refusal(buckets, verdict, what)


# -- catalog housekeeping ------------------------------------------------------------------


async def prune_buckets(rt: Runtime) -> None:
    """Background task (once per deployment): delete buckets nobody used for a long time.

    A bucket idle for longer than a full refill is full, exactly as a new one, so deleting it
    changes no decision; it only keeps spoofed identities from growing the table forever.
    """
    settings = rt.settings
    rates = [r for r in (settings.rate_limit_per_ip, settings.rate_limit_per_key) if r > 0]
    idle = max([_PRUNE_IDLE_S, *(2 * settings.rate_limit_burst / r for r in rates)])
    while True:
        await rt.catalog.run(partial(_prune, idle_s=idle))
        await trio.sleep(_PRUNE_EVERY_S)


def _prune(conn: psycopg.Connection, idle_s: float) -> None:
    conn.execute(
        "DELETE FROM athena.rate_limit_buckets"
        " WHERE refreshed_at < clock_timestamp() - make_interval(secs => %s)",
        (idle_s,),
    )


def attach(rt: Runtime) -> None:
    """Start-up (``Runtime._start_capabilities``): prune the shared buckets, when there are any."""
    settings = rt.settings
    if settings.rate_limit_shared and (settings.rate_limit_per_ip or settings.rate_limit_per_key):
        rt.background.append(
            BackgroundTask("rate_limit_prune", partial(prune_buckets, rt), LEASE_RATE_LIMIT_PRUNE)
        )
