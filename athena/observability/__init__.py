"""What the gateway tells operators about itself.

- ``metrics``: the Prometheus registry and the gateway's metrics.
- ``metrics_share``: with ``--workers N``, every worker's metrics snapshot, so that a scrape
  of any worker answers for all of them.
- ``request_log``: the request log — a bounded channel to a background writer that inserts in
  batches, so the hot path never waits on the log table.

The supervised background tasks that watch the deployment (pool health, cluster probing, and
the statistics rollups that fold the request log) live beside it in ``athena.probes``.
"""
