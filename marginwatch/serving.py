"""Register the deployments with a Prefect API and serve them: the daily run on its cron schedule."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from marginwatch.errors import InputError

DAILY_CRON = "30 17 * * 1-5"  # 17:30 New York on weekdays: after the 16:00 close (13:00 on half days)
TIMEZONE = "America/New_York"


def check_api(api_url: str, timeout: float = 5.0) -> None:
    """Raise InputError unless the Prefect API answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as response:
            if json.loads(response.read() or b"false") is not True:
                raise InputError(f"Prefect API at {api_url} is not healthy")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise InputError(
            f"Prefect API at {api_url} is unreachable ({exc}); start one with `prefect server start` "
            "or set PREFECT_API_URL"
        ) from None


def serve(config: Path | None, warehouse: Path, source: str | None, cron: str, timezone: str) -> None:
    """Serve the scheduled daily and the on-demand backfill deployments until interrupted."""
    from prefect import serve as prefect_serve
    from prefect.schedules import Cron

    from flows.scheduled import scheduled_backfill, scheduled_daily

    parameters = {
        "config": str(config.resolve()) if config else None,
        "warehouse": str(warehouse.resolve()),
        "source": source,
    }
    daily = scheduled_daily.to_deployment(
        name="daily",
        schedules=[Cron(cron, timezone=timezone)],
        parameters=parameters,
        description="LTV of every loan for today's NASDAQ session, after the close; skips holidays.",
        tags=["marginwatch"],
    )
    backfill = scheduled_backfill.to_deployment(
        name="backfill",
        parameters=parameters,
        description="LTV for a date range on demand (give start, optionally end).",
        tags=["marginwatch"],
    )
    prefect_serve(daily, backfill)  # type: ignore[arg-type]  # sync context: deployments, not coroutines
