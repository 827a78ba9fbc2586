"""IP allow and deny lists: CIDR networks that a caller's address is checked against.

The address is the socket's peer (``CallContext.remote_addr``); ``X-Forwarded-For`` is not
trusted, since any client can send it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ENTRIES = 1000


def parse_cidrs(value: Any) -> list[str]:
    """A list (or comma string) of CIDRs as normalised text; ``ValueError`` names a bad one.

    A bare address is a one-address network. Each entry must look like an address (a dot or a
    colon), so a stray number is not silently read as one.
    """
    if value is None:
        return []
    if isinstance(value, str):
        value = [part for part in value.split(",")]
    if not isinstance(value, list):
        raise ValueError("must be a list of CIDR networks")
    if len(value) > MAX_ENTRIES:
        raise ValueError(f"may hold at most {MAX_ENTRIES} networks")
    out: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str):
            raise ValueError("must be a list of CIDR networks (strings)")
        text = item.strip()
        if not text:
            continue
        try:
            if "." not in text and ":" not in text:
                raise ValueError
            out[str(ipaddress.ip_network(text, strict=False))] = None
        except ValueError:
            raise ValueError(f"'{text[:60]}' is not a CIDR network") from None
    return list(out)


def networks(texts: Iterable[str]) -> tuple[Network, ...]:
    """Catalog text (already valid) → network objects."""
    return tuple(ipaddress.ip_network(t, strict=False) for t in texts)


def address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The caller's address, IPv4-mapped IPv6 unwrapped; ``None`` if there is none."""
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def listed(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None, nets: Sequence[Network]
) -> bool:
    return addr is not None and any(addr in net for net in nets)
