"""The outbound URL guard: what a caller-supplied URL may reach, checked against a real socket."""

from __future__ import annotations

import ipaddress

import httpx
import pytest
import trio

from athena.errors import ApiError
from athena.services.outbound import OutboundPolicy, parse_cidrs, send_checked

STRICT = OutboundPolicy()
LOOPBACK_OK = OutboundPolicy(allow_http=True, allow_cidrs=parse_cidrs(["127.0.0.0/8", "::1/128"]))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # the cloud metadata address
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "224.0.0.1",
    ],
)
def test_non_global_addresses_are_refused(address: str) -> None:
    assert not STRICT.address_allowed(ipaddress.ip_address(address))


def test_global_addresses_pass_and_the_allow_list_opens_a_network() -> None:
    assert STRICT.address_allowed(ipaddress.ip_address("93.184.216.34"))
    assert LOOPBACK_OK.address_allowed(ipaddress.ip_address("127.0.0.5"))
    assert not LOOPBACK_OK.address_allowed(ipaddress.ip_address("10.0.0.1"))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/", "scheme"),
        ("ftp://example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https://user:pw@example.com/", "credentials"),
        ("https:///nohost", "host"),
        ("not a url at all", ""),
    ],
)
def test_url_shapes_are_refused(url: str, why: str) -> None:
    with pytest.raises(ApiError) as caught:
        STRICT.parse(url)
    assert caught.value.code == "outbound_url_refused"
    assert caught.value.status == 400
    assert why in caught.value.message


def test_the_fragment_is_dropped_so_it_cannot_steer_the_path() -> None:
    url = STRICT.parse("https://example.com/rest/v1/#/../../latest/meta-data")
    assert url.fragment == ""
    assert url.path == "/rest/v1/"


async def test_names_resolving_to_loopback_are_refused_after_dns() -> None:
    with pytest.raises(ApiError) as caught:
        await OutboundPolicy(allow_http=True).check("http://localhost:9/latest/meta-data")
    assert "loopback" in caught.value.message


async def test_unresolvable_names_are_refused() -> None:
    with pytest.raises(ApiError) as caught:
        await STRICT.check("https://no-such-host.invalid/")
    assert "resolve" in caught.value.message


@pytest.mark.parametrize(
    "host",
    ["a" * 64 + ".example", "a..example", "xn--zz.example", "xn--zz", "example.xn--"],
)
async def test_names_idna_cannot_encode_are_refused_not_raised(host: str) -> None:
    # IDNA raises UnicodeError (a ValueError), not OSError, for these: they were 500s.
    with pytest.raises(ApiError) as caught:
        await STRICT.check(f"https://{host}/")
    assert caught.value.code == "outbound_url_refused"
    with pytest.raises(ApiError):
        await STRICT.check_host(host, 443)


async def _serve_once(listener: trio.SocketListener, seen: list[bytes]) -> None:
    stream = await listener.accept()
    async with stream:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(4096)
        seen.append(head)
        await stream.send_all(
            b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.1/\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\nok"
        )


async def test_a_checked_request_reaches_the_checked_address_with_its_name_and_no_redirect() -> (
    None
):
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve_once, listeners[0], seen)
        async with httpx.AsyncClient() as client:
            response = await send_checked(
                client, "GET", f"http://localhost:{port}/x#frag", LOOPBACK_OK
            )
    assert response.status_code == 302  # an answer, not followed to 10.0.0.1
    head = seen[0].decode()
    assert head.startswith("GET /x HTTP/1.1")
    assert f"host: localhost:{port}".lower() in head.lower()
