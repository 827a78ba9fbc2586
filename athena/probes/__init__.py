"""Supervised background work that watches the deployment, and what it found, from memory.

- ``cluster``: the mirrors of ``ATHENA_CLUSTER_MIRRORS`` probed (one prober per deployment).
- ``pool_health``: every worker checks its own pools with ``SELECT 1``.
- ``registry``: the API and router registries, cached per worker with a TTL.
- ``statistics``: the request log folded into the client statistics tables (one rollup per
  deployment) and the 24-hour aggregates ``/metrics`` shows (every instance). The admin
  routes read those tables through ``athena.services.statistics``.
- ``tasks``: ``athena_background_task_up``, the state of every supervised task.

Started by ``athena.runtime.Runtime._start_capabilities``.
"""
