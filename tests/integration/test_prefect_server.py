"""A real Prefect server on 127.0.0.1: `marginwatch serve` registers the schedule and runs a deployment."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml

from marginwatch.serving import DAILY_CRON, TIMEZONE

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
            return response.read().strip() == b"true"
    except OSError:
        return False


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """Start `prefect server start` on 127.0.0.1 in a temporary Prefect home; yield its API URL and env."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: healthy(api), 180, "the Prefect server")
        yield api, {**env, "PREFECT_API_URL": api}
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


async def read_deployments(api: str) -> list:  # type: ignore[type-arg]
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api) as client:
        return list(await client.read_deployments())


def test_serve_registers_the_schedule_and_a_triggered_run_fills_the_warehouse(
    prefect_server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    api, env = prefect_server
    log = (tmp_path / "serve.log").open("w")
    serving = subprocess.Popen(
        [str(BIN / "marginwatch"), "serve", "--source", "synthetic"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: len(asyncio.run(read_deployments(api))) == 2, 120, "the two deployments")
        deployments = {d.name: d for d in asyncio.run(read_deployments(api))}
        daily = deployments["daily"]
        schedule = daily.schedules[0].schedule
        assert (schedule.cron, schedule.timezone) == (DAILY_CRON, TIMEZONE) == ("30 17 * * 1-5", "America/New_York")
        assert daily.parameters == {
            "config": None,
            "warehouse": str(tmp_path / "marginwatch.duckdb"),
            "source": "synthetic",
        }
        assert deployments["backfill"].schedules == []

        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api}):
            run = run_deployment(
                "marginwatch-scheduled/daily",
                parameters={"now": dt.datetime(2026, 3, 24, 22, 0, tzinfo=dt.UTC).isoformat()},
                timeout=300,
            )
        assert run.state is not None and run.state.is_completed(), (run.state, (tmp_path / "serve.log").read_text())
        with duckdb.connect(str(tmp_path / "marginwatch.duckdb"), read_only=True) as con:
            latest = con.execute("SELECT max(as_of_date), count(DISTINCT loan_id) FROM marts.loan_ltv_daily").fetchall()
            runs = con.execute("SELECT flow, status FROM meta.runs").fetchall()
        assert latest == [(dt.date(2026, 3, 24), 2)]
        assert runs == [("daily", "succeeded")]
    finally:
        serving.terminate()
        serving.wait(timeout=60)
        log.close()


def test_prefect_yaml_declares_the_same_deployments() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert by_name["daily"]["entrypoint"] == "flows/scheduled.py:scheduled_daily"
    assert by_name["daily"]["schedules"] == [{"cron": DAILY_CRON, "timezone": TIMEZONE}]
    assert by_name["backfill"]["entrypoint"] == "flows/scheduled.py:scheduled_backfill"
    for deployment in by_name.values():
        module, _, function = deployment["entrypoint"].partition(":")
        assert (REPO / module).is_file()
        assert f"def {function}(" in (REPO / module).read_text()


def test_serve_without_a_reachable_api_says_how_to_start_one(tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api", "PREFECT_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(BIN / "marginwatch"), "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "is unreachable" in result.stderr and "prefect server start" in result.stderr
