"""The task runner a flow uses: threads in this process, or a Dask cluster (local or given by address)."""

from __future__ import annotations

from typing import Any

from marginwatch.config import Settings


def task_runner_for(settings: Settings) -> Any:
    """Return the task runner the settings ask for."""
    if settings.task_runner != "dask" and not settings.dask_address:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=4)
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,
        },
    )
