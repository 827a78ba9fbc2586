"""Webhooks: a write's event committed with the write, delivered at least once, in order.

- ``book``: ``WebhookBook`` — the webhooks in the catalog and the index the write path asks.
- ``outbox``: the event written in the write's own transaction, and the mover that carries it
  into the catalog's deliveries.
- ``dispatcher``: ``Dispatcher`` — one sender per webhook across every instance.
- ``events``: the trigger types and the event body.

Started by ``athena.runtime.Runtime._start_capabilities`` (``book.attach``), after the backup
jobs whose finished jobs raise ``backup.*`` events.
"""
