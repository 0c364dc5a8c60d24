"""Canary secrets in channel URLs and SMTP credentials never leave the environment variables that hold them.

The book has a JSON webhook (a token in the query, a password in the user part, a path segment),
an SMTP channel (the password the server accepts, later another one for a server that is down) and a
file channel. The runs deliver, fail against a 500 and closed ports, retry, and fail outright; then
every place marginwatch writes to is searched for every canary: CLI output and errors (in process
and in a real `--debug` process), Python log records, Prefect's flow- and task-run logs, artifacts,
events and flow-run parameters, every row of every warehouse table, the warehouse file's bytes,
every file the runs left in their folder (file channel, Data Docs, backups, reports, lock), and the
delivery errors the flows returned.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows.daily import daily
from marginwatch import notify
from marginwatch.config import EMBEDDED_BOOK
from tests.integration.conftest import SMTP_PASSWORD, Mailbox, Webhook, rows
from tests.integration.test_cli import marginwatch

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.usefixtures("prefect_harness")]
D = dt.date.fromisoformat
HOOK_TOKEN, HOOK_PASSWORD, HOOK_PATH = "canary-token-0b5e7d", "canary-hookpass-4c21", "canary-path-93af"
UNREACHABLE_PASSWORD = "canary-unreached-5e8b"
CANARIES = [HOOK_TOKEN, HOOK_PASSWORD, HOOK_PATH, SMTP_PASSWORD, UNREACHABLE_PASSWORD]
CHANNELS = """
[[channels]]
name = "risk-desk"
url_env = "MW_REL_HOOK"
min_level = "margin_call"
[[channels]]
name = "treasury-mail"
url_env = "MW_REL_MAIL"
[[channels]]
name = "audit-file"
file = "alerts.log"
"""


def evening(day: str) -> dt.datetime:
    return dt.datetime.combine(D(day), dt.time(22, 0), tzinfo=dt.UTC)


def hook_url(port: int) -> str:
    return f"json://risk-bot:{HOOK_PASSWORD}@127.0.0.1:{port}/{HOOK_PATH}/alerts?token={HOOK_TOKEN}&cto=1&rto=1"


def mail_url(port: int, password: str) -> str:
    return (
        f"mailto://risk-bot:{password}@127.0.0.1:{port}"
        "?from=marginwatch@example.com&to=treasury@example.com&mode=insecure"
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_book(folder: Path) -> Path:
    """The default loans with the three channels, sending alerts of the last five sessions."""
    text = EMBEDDED_BOOK.read_text().replace("alert_lookback_sessions = 260", "alert_lookback_sessions = 5")
    head, loans = text[: text.index("[[channels]]")], text[text.index("[[loans]]") :]
    path = folder / "book.toml"
    path.write_text(head + CHANNELS + "\n" + loans)
    return path


def test_canary_secrets_never_reach_logs_warehouse_artifacts_reports_or_errors(
    tmp_path: Path,
    webhook: Webhook,
    mailbox: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    caplog.set_level(logging.INFO)  # what `--debug` shows, and more
    # One attempt per delivery and round: Apprise throttles e-mail for seconds between attempts.
    monkeypatch.setattr(notify, "BACKOFF_SECONDS", ())
    emitted = record_emitted_events(monkeypatch)
    book, warehouse = write_book(tmp_path), tmp_path / "w.duckdb"
    started = dt.datetime.now(dt.UTC)
    places: dict[str, list[str]] = {"cli output and errors": [], "delivery errors and exceptions": []}

    def run_cli(*args: object) -> int:
        code, out, err = cli("--config", book, "--warehouse", warehouse, *args)
        places["cli output and errors"] += [out, err]
        return code

    # Every channel healthy: the webhook and the mailbox (which checks the password) get the margin call.
    monkeypatch.setenv("MW_REL_HOOK", hook_url(webhook.port))
    monkeypatch.setenv("MW_REL_MAIL", mail_url(mailbox.port, SMTP_PASSWORD))
    first = daily(str(book), str(warehouse), "synthetic", D("2026-03-23"), evening("2026-03-23"))
    assert first.undelivered == [] and webhook.received and mailbox.messages

    # The webhook answers 500: its deliveries stay pending, then fail again on retry.
    webhook.fail_with = 500
    second = daily(str(book), str(warehouse), "synthetic", D("2026-03-24"), evening("2026-03-24"))
    assert second.undelivered and all("500" in str(d.error) for d in second.undelivered), second.undelivered
    places["delivery errors and exceptions"] += [str(d.error) for d in first.deliveries + second.deliveries]
    assert run_cli("alerts", "retry") == 7

    # Nobody listens on either channel's port: a run fails outright and its notice cannot be delivered.
    monkeypatch.setenv("MW_REL_HOOK", hook_url(closed_port()))
    monkeypatch.setenv("MW_REL_MAIL", mail_url(closed_port(), UNREACHABLE_PASSWORD))
    assert run_cli("run", "--source", "csv:absent", "--as-of", "2026-03-25") == 2
    errors = rows(warehouse, "SELECT channel, last_error FROM meta.alert_outbox WHERE status = 'pending'")
    assert {channel for channel, _ in errors} == {"risk-desk", "treasury-mail"}
    assert all("Connection error" in error for _, error in errors), errors
    for listing in (("alerts",), ("alerts", "--pending", "--format", "json"), ("status",), ("dq",)):
        assert run_cli(*listing) == 0
    assert run_cli("sql", "SELECT * FROM meta.alert_outbox", "--format", "csv") == 0

    # A real process with --debug (its error comes with a traceback): the webhook still down, the mail back.
    env = {"MW_REL_HOOK": hook_url(closed_port()), "MW_REL_MAIL": mail_url(mailbox.port, SMTP_PASSWORD)}
    debug = marginwatch(
        "--debug", "--config", str(book), "--warehouse", str(warehouse), "alerts", "retry", cwd=tmp_path, env=env
    )
    assert debug.returncode == 7 and "Traceback" in debug.stderr, debug.stderr
    places["a real --debug process's output"] = [debug.stdout, debug.stderr]

    run_ids = [run_id for (run_id,) in rows(warehouse, "SELECT run_id FROM meta.runs")]
    places |= prefect_records(run_ids, started) | {"events emitted by the flows": emitted}
    places["python log records"] = [caplog.text]
    places |= warehouse_places(warehouse) | folder_places(tmp_path)

    assert len(places) >= 12 and [place for place, texts in places.items() if not "".join(texts)] == []
    leaks = {(place, canary) for place, texts in places.items() for canary in CANARIES if canary in "\n".join(texts)}
    assert leaks == set()


def record_emitted_events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record, as JSON, every Prefect event the flows emit (the alerts' events)."""
    import prefect.events

    emitted: list[str] = []
    original = prefect.events.emit_event

    def recording(*args: Any, **kwargs: Any) -> Any:
        emitted.append(json.dumps([args, kwargs], default=str))
        return original(*args, **kwargs)

    monkeypatch.setattr(prefect.events, "emit_event", recording)
    return emitted


def prefect_records(run_ids: list[str], since: dt.datetime) -> dict[str, list[str]]:
    """Return what Prefect's API keeps of the runs: logs, artifacts, flow-run parameters, events."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.events.filters import EventFilter, EventOccurredFilter

    ids = [uuid.UUID(run_id) for run_id in run_ids]

    async def read() -> dict[str, list[str]]:
        async with get_client() as client:
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
            )
            flow_runs = [await client.read_flow_run(i) for i in ids]
            page = await client.read_events(EventFilter(occurred=EventOccurredFilter(since=since)), limit=50)
            events = list(page.events)
            while page.next_page and len(events) < 5000:
                page = await client.read_events_page(page.next_page)
                events += page.events
        return {
            "prefect flow- and task-run logs": [log.message for log in logs],
            "prefect artifacts": [f"{a.key} {a.description} {a.data}" for a in artifacts],
            "prefect flow-run names and parameters": [
                f"{r.name} {json.dumps(r.parameters, default=str)}" for r in flow_runs
            ],
            "prefect events": [e.model_dump_json() for e in events],
        }

    return asyncio.run(read())


def warehouse_places(warehouse: Path) -> dict[str, list[str]]:
    """Return every row of every table, one place per table."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = [f"{s}.{t}" for s, t in con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()]
        return {f"warehouse table {t}": [repr(con.execute(f"SELECT * FROM {t}").fetchall()) or "-"] for t in tables}


def folder_places(folder: Path) -> dict[str, list[str]]:
    """Return the bytes of every file the runs left in the test's folder, one place per top-level entry.

    Backups are warehouses too: their rows are searched as well as their bytes.
    """
    groups: dict[str, list[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.stat().st_size):  # not the empty lock
        texts = groups.setdefault(f"files: {path.relative_to(folder).parts[0]}", [])
        texts.append(path.read_bytes().decode("latin-1"))
        if path.suffix == ".duckdb" and path.parent != folder:
            texts += [text for place in warehouse_places(path).values() for text in place]
    return groups
