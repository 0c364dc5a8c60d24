"""Child-process runs of the CLI against the test harness's Prefect API, and the content a rerun must reproduce."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb

# What a table holds, run ids, timestamps and per-run logs aside: the state a rerun must reproduce.
CONTENT = {
    "staging.prices": "SELECT * EXCLUDE (run_id, fetched_at) FROM staging.prices",
    "staging.fx_rates": "SELECT * EXCLUDE (run_id, fetched_at) FROM staging.fx_rates",
    "raw.market_bars": "SELECT DISTINCT * EXCLUDE (run_id, fetched_at) FROM raw.market_bars",
    "marts.loan_ltv_daily": "SELECT * EXCLUDE (run_id) FROM marts.loan_ltv_daily",
    "marts.loan_ltv_latest": "SELECT * EXCLUDE (run_id) FROM marts.loan_ltv_latest",
    "marts.margin_call_days": "SELECT * EXCLUDE (run_id) FROM marts.margin_call_days",
    "marts.open_breaches": "SELECT * FROM marts.open_breaches",
    "marts.loan_stress_daily": "SELECT * EXCLUDE (run_id) FROM marts.loan_stress_daily",
    "marts.loan_risk_daily": "SELECT * EXCLUDE (run_id) FROM marts.loan_risk_daily",
    "marts.alerts": "SELECT * EXCLUDE (run_id, created_at) FROM marts.alerts",
    "meta.alert_outbox": "SELECT alert_key, channel, status FROM meta.alert_outbox",
    "meta.schema_version": "SELECT version, name FROM meta.schema_version",
}


def cli(
    args: tuple[str, ...], cwd: Path, crash_at: str | None = None, warehouse: str = "w.duckdb"
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process against the harness's Prefect API, optionally crashing at a point."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINWATCH_")}
    env |= {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_HOME": str(cwd / ".prefect")}
    if crash_at:
        env["MARGINWATCH_CRASH_AT"] = crash_at
    command = [sys.executable, "-m", "marginwatch", "--warehouse", warehouse, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def content(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Return the business content of every table, sorted."""
    with duckdb.connect(str(path), read_only=True) as con:
        return {name: sorted(con.execute(sql).fetchall(), key=repr) for name, sql in CONTENT.items()}
