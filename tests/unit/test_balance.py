"""athena.serving.balance: workers sharing a listening socket keep even shares of connections.

Two ``BalancedListener``s on one socket in one process stand in for two workers: each has its
own slot on a real shared board (a memfd), exactly as worker processes do.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
import trio

from athena.serving import balance


@pytest.fixture
def boards() -> Iterator[tuple[balance.Board, balance.Board]]:
    fd = balance.create_board(2)
    assert fd is not None
    first, second = balance.Board(fd, 0, 2), balance.Board(fd, 1, 2)
    os.close(fd)  # the maps keep the memory
    first.beat()  # both workers live and accepting
    second.beat()
    yield first, second
    first.close()
    second.close()


def test_a_worker_is_ahead_only_of_a_live_accepting_worker_holding_fewer(
    boards: tuple[balance.Board, balance.Board],
) -> None:
    first, second = boards
    first.add(3)
    second.add(2)
    assert first.ahead() and not second.ahead()
    second.add(1)
    assert not first.ahead() and not second.ahead(), "equal shares: nobody yields"
    first.add(1)
    second.retire()
    assert not first.ahead(), "a worker that stopped accepting is not waited for"


def test_a_worker_that_stopped_beating_is_treated_as_gone(
    boards: tuple[balance.Board, balance.Board],
) -> None:
    first, second = boards
    first.add(5)
    assert first.ahead()
    # its last beat, rewound past the liveness window
    second._words[1 * 2] = int(time.monotonic() * 1000) - 10_000
    assert not first.ahead()


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


async def test_new_connections_go_to_the_worker_holding_fewer(
    boards: tuple[balance.Board, balance.Board],
) -> None:
    first, second = boards
    shared = _listening_socket()
    port = shared.getsockname()[1]
    listeners = [
        balance.BalancedListener(socket.socket(fileno=os.dup(shared.fileno())), board)
        for board in boards
    ]
    first.add(10)  # the first worker already holds ten connections
    accepted: list[list[trio.abc.Stream]] = [[], []]
    all_in = trio.Event()

    async def accept_forever(index: int) -> None:
        while True:
            accepted[index].append(await listeners[index].accept())
            if len(accepted[0]) + len(accepted[1]) == 20:
                all_in.set()

    clients = []
    async with trio.open_nursery() as nursery:
        for index in (0, 1):
            nursery.start_soon(accept_forever, index)
        for _ in range(20):
            clients.append(await trio.open_tcp_stream("127.0.0.1", port))
        with trio.fail_after(5):
            await all_in.wait()
        nursery.cancel_scope.cancel()
    # 10 + 5 and 0 + 15: the shares end even; the busier worker took only what evened them
    assert (len(accepted[0]), len(accepted[1])) == (5, 15)
    assert (first.held, second.held) == (15, 15)
    for stream in accepted[1]:
        await stream.aclose()
    assert second.held == 0, "a closed connection leaves the board"
    for stream in [*accepted[0], *clients]:
        await stream.aclose()
    for listener in listeners:
        await listener.aclose()
    shared.close()


async def test_a_busy_neighbour_delays_a_connection_only_briefly(
    boards: tuple[balance.Board, balance.Board],
) -> None:
    """The second worker beats but never accepts: the first takes the connection anyway."""
    first, _idle_neighbour = boards
    first.add(4)
    sock = _listening_socket()
    listener = balance.BalancedListener(sock, first)
    client = await trio.open_tcp_stream(*sock.getsockname())
    started = trio.current_time()
    with trio.fail_after(2):
        stream = await listener.accept()
    waited = trio.current_time() - started
    assert balance.DEFER_SECONDS * 0.8 <= waited < balance.DEFER_SECONDS + 0.5
    assert first.held == 5
    await stream.aclose()
    await client.aclose()
    await listener.aclose()
