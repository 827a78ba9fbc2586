"""Supervised background work that watches the deployment, and what it found, from memory.

- ``cluster``: the mirrors of ``ATHENA_CLUSTER_MIRRORS`` probed (one prober per deployment).
- ``pool_health``: every worker checks its own pools with ``SELECT 1``.
- ``registry``: the API and router registries, cached per worker with a TTL.
- ``tasks``: ``athena_background_task_up``, the state of every supervised task.

Started by ``athena.runtime.Runtime._start_capabilities``. The statistics rollups are a
service (``athena.services.statistics``): they serve ``/statistics`` as well.
"""
