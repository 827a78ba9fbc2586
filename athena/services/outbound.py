"""The one gate for every URL that reaches the gateway through a request or the API.

A caller who can make the gateway fetch a URL of their choosing can reach what the gateway can
reach and they cannot: cloud metadata services on link-local addresses, admin ports on loopback,
the private network behind the load balancer. So every such URL (custom Supabase upstreams,
webhook targets, a direct database URI's host) goes through ``OutboundPolicy.check`` first:

- the scheme is ``https`` (``http`` too when ``ATHENA_OUTBOUND_ALLOW_HTTP`` is set — tests and
  operators with an internal receiver), no user-info in the URL, a host is required;
- the host is resolved *here*, and every address it resolves to must be globally routable, or
  inside an operator-named network of ``ATHENA_OUTBOUND_ALLOW_CIDRS`` (e.g. ``127.0.0.0/8``);
- the request is then sent to the address that was checked (``OutboundTarget``), with the
  original name in ``Host`` and as the TLS server name, so a second DNS answer (rebinding) can
  never swap in another address between the check and the connection;
- redirects are never followed: a 3xx from the upstream is an answer, not an instruction.

URLs from the operator's own configuration (cluster mirrors, the Supabase Management API) are
trusted and do not pass through here.

Usage::

    policy = runtime.outbound_policy  # or OutboundPolicy.from_settings(settings)
    response = await send_checked(client, "POST", url, policy, content=body)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from athena.errors import ApiError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidrs(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR strings → networks; a bare address is a /32 (/128). Raises ValueError on a bad one."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


@dataclass(frozen=True)
class OutboundTarget:
    """A URL that passed the policy, pinned to the address that was checked."""

    url: httpx.URL
    address: IPAddress

    @property
    def pinned_url(self) -> httpx.URL:
        """The URL with its host replaced by the checked address (what the socket connects to)."""
        return self.url.copy_with(host=str(self.address))

    @property
    def host_header(self) -> str:
        default = 443 if self.url.scheme == "https" else 80
        port = self.url.port
        return self.url.host if port in (None, default) else f"{self.url.host}:{port}"

    @property
    def extensions(self) -> dict[str, Any]:
        # TLS must still verify the certificate against the name, not the address.
        return {"sni_hostname": self.url.host} if self.url.scheme == "https" else {}


def is_credential_text(value: str) -> bool:
    """Whether ``value`` can be sent as a credential in a header: visible ASCII only.

    httpx encodes header values as ASCII (anything else is a UnicodeEncodeError: a 500) and
    passes control characters through; no real key or token has either.
    """
    return value.isascii() and value.isprintable() and " " not in value


def refused(reason: str) -> ApiError:
    return ApiError("outbound_url_refused", f"outbound URL refused: {reason}")


@dataclass(frozen=True)
class OutboundPolicy:
    """Which outbound URLs the gateway may call on a caller's behalf."""

    allow_http: bool = False
    allow_cidrs: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> OutboundPolicy:
        return cls(
            allow_http=bool(getattr(settings, "outbound_allow_http", False)),
            allow_cidrs=parse_cidrs(getattr(settings, "outbound_allow_cidrs", ()) or ()),
        )

    def address_allowed(self, address: IPAddress) -> bool:
        """Globally routable, or inside a network the operator named."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback, not "global IPv6"
        if any(address in net for net in self.allow_cidrs if net.version == address.version):
            return True
        return address.is_global and not address.is_multicast

    def parse(self, raw: str) -> httpx.URL:
        """Check the URL's shape (scheme, host, no credentials); no DNS yet."""
        try:
            url = httpx.URL(raw)
            host = url.host  # decoded from IDNA here: a bad "xn--" label raises (a ValueError)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise refused("not a valid URL") from None
        schemes = ("https", "http") if self.allow_http else ("https",)
        if url.scheme not in schemes:
            raise refused(f"the scheme must be {' or '.join(schemes)}")
        if not host:
            raise refused("the URL has no host")
        if url.userinfo:
            raise refused("credentials in the URL are not allowed")
        return url.copy_with(fragment=None)

    async def check(self, raw: str) -> OutboundTarget:
        """Parse, resolve and check ``raw``; raises ApiError ``outbound_url_refused``."""
        url = self.parse(raw)
        port = url.port or (443 if url.scheme == "https" else 80)
        return OutboundTarget(url=url, address=await self.check_host(url.host, port))

    async def check_host(self, host: str, port: int) -> IPAddress:
        """Resolve ``host`` and check every address it resolves to; the first, to connect to
        (not the name: a second DNS answer must not swap in another address). Also what a
        direct database URI's host goes through (``direct_uri.py``)."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
            except (OSError, UnicodeError):  # IDNA refuses an empty or 64+ character label
                raise refused("the host name does not resolve") from None
            addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
        if not addresses:
            raise refused("the host name does not resolve")
        # Every answer must pass: a name resolving to one public and one private address
        # would otherwise be a coin toss the caller can retry until it lands inside.
        for address in addresses:
            if not self.address_allowed(address):
                raise refused("the host resolves to a loopback, private or link-local address")
        return addresses[0]


async def send_checked(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    policy: OutboundPolicy,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Check ``url`` against ``policy`` and send the request to the checked address.

    Never follows redirects. Transport errors propagate as httpx exceptions for the caller to map.
    """
    target = await policy.check(url)
    merged = {**(headers or {}), "Host": target.host_header}
    request = client.build_request(
        method, target.pinned_url, headers=merged, extensions=target.extensions, **kwargs
    )
    return await client.send(request, follow_redirects=False)
