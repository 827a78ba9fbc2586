"""Per-key and per-IP token buckets (``ATHENA_RATE_LIMIT_PER_KEY`` / ``_PER_IP``, requests/s).

A bucket holds up to ``ATHENA_RATE_LIMIT_BURST`` tokens and refills at the configured rate;
a request takes one token or gets 429 ``rate_limited`` with ``Retry-After`` (whole seconds until
a token is back). The key bucket is identified by the key's public id as presented — before it is
verified — so floods of invalid keys are limited too without touching the catalog.

Limits are per process: with N workers or instances the effective limit is N times the setting,
which the README says. A shared limiter would put a catalog round trip on every request.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from athena.auth.guard import presented_key
from athena.config import Settings
from athena.context import CallContext
from athena.errors import ApiError

# Buckets idle this long are forgotten, so memory stays bounded under spoofed identities.
_IDLE_SECONDS = 300.0
_MAX_BUCKETS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class TokenBuckets:
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

    def _sweep(self, now: float) -> None:
        if len(self._buckets) < _MAX_BUCKETS and now - self._last_sweep < _IDLE_SECONDS:
            return
        self._last_sweep = now
        stale = [k for k, b in self._buckets.items() if now - b.updated > _IDLE_SECONDS]
        for key in stale:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_BUCKETS:
            self._buckets.clear()  # under attack: start over rather than grow without bound


def check(buckets: TokenBuckets, identity: str, what: str) -> None:
    """Raise 429 ``rate_limited`` when ``identity`` is out of tokens."""
    if not buckets.enabled:
        return
    wait = buckets.take(identity)
    if wait > 0:
        retry = max(1, math.ceil(wait))
        raise ApiError(
            "rate_limited",
            f"too many requests for this {what}; retry in {retry} s",
            headers={"Retry-After": str(retry)},
            data={"retry_after_seconds": retry, "limit": what},
        )


@dataclass
class RateLimits:
    """The per-client-address and per-presented-key buckets, checked together."""

    per_ip: TokenBuckets
    per_key: TokenBuckets

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        burst = settings.rate_limit_burst
        return cls(
            TokenBuckets(settings.rate_limit_per_ip, burst),
            TokenBuckets(settings.rate_limit_per_key, burst),
        )

    def check(self, ctx: CallContext) -> None:
        """Raise 429 ``rate_limited`` when either bucket of this call is empty."""
        if self.per_ip.enabled and ctx.remote_addr:
            check(self.per_ip, ctx.remote_addr, "client address")
        if self.per_key.enabled:
            key = presented_key(ctx, admin=True)
            if key:
                # The public id part of an Athena key (or the start of any other token) names
                # the bucket; the secret never becomes a dictionary key.
                check(self.per_key, key.partition(".")[0][:32], "API key")
