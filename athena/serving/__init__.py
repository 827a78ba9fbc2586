"""Sockets and processes: everything below the request → response layer.

- ``parent``: ``athena serve`` — prepares the catalog and the listening socket, then runs one
  worker in-process or spawns ``--workers N`` worker processes and forwards signals to them.
- ``worker``: one worker process — the root trio nursery holding the runtime and the server.
- ``balance``: even shares of connections between the workers sharing one socket.
- ``hypercorn_adapter``: hypercorn's HTTP/1.1, HTTP/2 and WebSocket machinery around a
  listener Athena chooses.
- ``lane_http``: the plain-HTTP/1.1 lane — simple requests for the hot routes are read and
  answered straight on the socket; anything else goes to hypercorn with the bytes already read.
- ``streams``: stream wrappers and writes that give up on a peer that stopped reading.

What a request means is decided one layer up, in ``athena.http``.
"""
