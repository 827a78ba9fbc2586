"""``athena_background_task_up{task}``: whether each supervised task is running right now.

Restarts are counted by the supervisor itself (``athena_background_task_restarts_total``); this
gauge adds the current state, so an alert can tell a task in backoff from one that recovered.
A lease task waiting for its lease (``standby``) counts as up: another instance runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from athena.observability.metrics import gauge

if TYPE_CHECKING:
    from athena.runtime import Runtime


def attach(rt: Runtime) -> None:
    """Start-up (``Runtime._start_capabilities``): the task-state gauge."""

    def collect() -> list[Any]:
        rows = [
            ([t.name], 1 if t.state in ("running", "standby") else 0)
            for t in rt.supervisor.tasks.values()
        ]
        return [gauge("athena_background_task_up", "1 if the task is running", ["task"], rows)]

    rt.metrics.add_collector(collect)
