"""Alerts reach people: a real JSON webhook and SMTP server on 127.0.0.1, faults, exactly-once."""

from __future__ import annotations

import datetime as dt
import socket
import sys
import uuid
from pathlib import Path

import polars as pl
import pytest

import flows.alerting
from flows.backfill import backfill
from flows.daily import daily
from marginwatch import cli
from marginwatch.config import EMBEDDED_BOOK, Book, load_book
from tests.integration.conftest import SMTP_PASSWORD, Mailbox, Webhook, rows

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
D = dt.date.fromisoformat
CANARY = "canary-token-9b1e"


def evening(day: str) -> dt.datetime:
    """22:00 UTC on `day`: after that session's close."""
    return dt.datetime.combine(D(day), dt.time(22, 0), tzinfo=dt.UTC)


def book_with(tmp_path: Path, channels: str, lookback: int = 5) -> Book:
    """The default book, its demo file channel replaced by `channels`, delivering `lookback` sessions back."""
    text = EMBEDDED_BOOK.read_text().replace("alert_lookback_sessions = 260", f"alert_lookback_sessions = {lookback}")
    head, _, _ = text.partition('[[channels]]\nname = "demo-file"')
    loans = text[text.index("[[loans]]") :]
    path = tmp_path / "book.toml"
    path.write_text(head + channels + "\n" + loans)
    return load_book(path)


WEBHOOK_ONLY = '[[channels]]\nname = "risk-desk"\nurl_env = "MW_TEST_HOOK"\nmin_level = "margin_call"\n'
BOTH = WEBHOOK_ONLY + '[[channels]]\nname = "treasury-mail"\nurl_env = "MW_TEST_MAIL"\nmin_level = "warning"\n'


def test_margin_call_reaches_webhook_and_email_with_the_numbers_to_act_on(
    tmp_path: Path, webhook: Webhook, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MW_TEST_HOOK", webhook.url(f"&token={CANARY}"))
    monkeypatch.setenv("MW_TEST_MAIL", mailbox.url())
    warehouse = tmp_path / "w.duckdb"
    summary = daily(book_with(tmp_path, BOTH), str(warehouse), "synthetic", D("2026-03-24"), evening("2026-03-24"))
    assert summary.undelivered == []
    # Webhook (margin call and above): the USD loan's call on 03-23 and reminder on 03-24, the yen loan's call.
    assert sorted(webhook.keys()) == [
        "sbg-arm-jpy/2026-03-24/level/margin_call",
        "sbg-arm-usd/2026-03-23/level/margin_call",
        "sbg-arm-usd/2026-03-24/reminder/margin_call",
    ]
    call = next(m for m in webhook.received if "sbg-arm-usd/2026-03-23/level" in m["message"])
    assert call["title"] == "MARGIN CALL sbg-arm-usd: LTV 50.5%"
    for label in (
        "As of: 2026-03-23 (price of 2026-03-23)",
        "Margin-call price: ",
        "Liquidation price: ",
        "Distance to margin call: -1.0%",
        "Cure cash: ",
        " USD",
        "Cure shares: ",
        "Cure deadline: 2026-03-26 (3 sessions left; breach since 2026-03-23)",
        "SYNTHETIC DATA",
    ):
        assert label in call["message"], label
    # Email (warning and above, inside the five-session window): plain text and compact HTML.
    subjects = sorted(str(m["Subject"]) for m in mailbox.messages)
    assert subjects == [
        "MARGIN CALL sbg-arm-jpy: LTV 50.5%",
        "MARGIN CALL sbg-arm-usd: LTV 50.5%",
        "MARGIN CALL sbg-arm-usd: cure by 2026-03-26 (2 left)",
        "WARNING sbg-arm-jpy: LTV 41.5%",
    ]
    mail = next(m for m in mailbox.messages if str(m["Subject"]) == "MARGIN CALL sbg-arm-usd: LTV 50.5%")
    plain, rich = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None and "Cure deadline" in plain.get_content()
    assert rich is not None and "<table>" in rich.get_content()
    every_value = " ".join(
        str(r)
        for t in ("marts.alerts", "meta.alert_outbox", "meta.runs")
        for r in rows(warehouse, f"SELECT * FROM {t}")
    )
    assert CANARY not in every_value and SMTP_PASSWORD not in every_value


def test_the_daily_report_rides_along_with_email_that_asks_for_it(
    tmp_path: Path, webhook: Webhook, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MW_TEST_HOOK", webhook.url())
    monkeypatch.setenv("MW_TEST_MAIL", mailbox.url())
    channels = BOTH.replace('min_level = "warning"\n', 'min_level = "warning"\nattach_report = true\n')
    warehouse = tmp_path / "w.duckdb"
    summary = daily(book_with(tmp_path, channels), str(warehouse), "synthetic", D("2026-03-24"), evening("2026-03-24"))
    assert summary.report == tmp_path / "w-reports" / "report-2026-03-24.html"
    assert rows(warehouse, "SELECT report_path FROM meta.runs") == [(str(summary.report),)]
    assert len(mailbox.messages) == 4
    for mail in mailbox.messages:
        (attachment,) = list(mail.iter_attachments())
        assert attachment.get_filename() == "report-2026-03-24.html"
        assert attachment.get_payload(decode=True) == summary.report.read_bytes()  # the page declares UTF-8 itself
    assert webhook.received and not any(message.get("attachments") for message in webhook.received)  # it did not ask


def test_webhook_down_for_two_runs_then_back_gets_each_alert_exactly_once(
    tmp_path: Path, webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MW_TEST_HOOK", webhook.url(f"&token={CANARY}"))
    book, warehouse = book_with(tmp_path, WEBHOOK_ONLY), tmp_path / "w.duckdb"
    webhook.fail_with = 500
    first = daily(book, str(warehouse), "synthetic", D("2026-03-23"), evening("2026-03-23"))
    assert [d.alert_key for d in first.undelivered] == ["sbg-arm-usd/2026-03-23/level/margin_call"]
    assert CANARY not in (first.undelivered[0].error or "") and "500" in (first.undelivered[0].error or "")
    webhook.fail_with, webhook.hang_seconds = None, 3.0  # now it hangs past the 1 s read timeout
    second = daily(book, str(warehouse), "synthetic", D("2026-03-24"), evening("2026-03-24"))
    assert len(second.undelivered) == 3
    # `attempts` counts delivery rounds (up to three tries with backoff each), one per run.
    pending = rows(warehouse, "SELECT alert_key, attempts FROM meta.alert_outbox WHERE status = 'pending' ORDER BY 1")
    assert pending == [
        ("sbg-arm-jpy/2026-03-24/level/margin_call", 1),
        ("sbg-arm-usd/2026-03-23/level/margin_call", 2),
        ("sbg-arm-usd/2026-03-24/reminder/margin_call", 1),
    ]
    assert webhook.received == []
    webhook.hang_seconds = 0.0
    third = daily(book, str(warehouse), "synthetic", D("2026-03-25"), evening("2026-03-25"))
    assert third.undelivered == []
    assert sorted(webhook.keys()) == [
        "sbg-arm-jpy/2026-03-24/level/margin_call",
        "sbg-arm-jpy/2026-03-25/reminder/margin_call",
        "sbg-arm-usd/2026-03-23/level/margin_call",
        "sbg-arm-usd/2026-03-24/reminder/margin_call",
        "sbg-arm-usd/2026-03-25/reminder/margin_call",
    ]
    assert rows(warehouse, "SELECT count(*) FROM meta.alert_outbox WHERE status = 'pending'") == [(0,)]
    # Rerunning a day and backfilling alerted days create nothing and send nothing again.
    daily(book, str(warehouse), "synthetic", D("2026-03-25"), evening("2026-03-25"))
    backfill(book, str(warehouse), D("2026-03-02"), D("2026-03-25"), "synthetic", evening("2026-03-25"))
    assert len(webhook.received) == 5
    assert rows(warehouse, "SELECT count(*), count(DISTINCT alert_key) FROM marts.alerts") == [(7, 7)]


def test_crash_between_commit_and_delivery_loses_nothing(
    tmp_path: Path, webhook: Webhook, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MW_TEST_HOOK", webhook.url())
    book, warehouse = book_with(tmp_path, WEBHOOK_ONLY), tmp_path / "w.duckdb"

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("process died after commit")

    with monkeypatch.context() as patch:
        patch.setattr(flows.alerting, "deliver_alerts", crash)
        with pytest.raises(RuntimeError, match="died after commit"):
            daily(book, str(warehouse), "synthetic", D("2026-03-23"), evening("2026-03-23"))
    assert rows(warehouse, "SELECT alert_key, status FROM meta.alert_outbox") == [
        ("sbg-arm-usd/2026-03-23/level/margin_call", "pending")
    ]
    assert webhook.received == []
    monkeypatch.setattr(
        sys,
        "argv",
        ["marginwatch", "--config", str(tmp_path / "book.toml"), "--warehouse", str(warehouse), "alerts", "retry"],
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code in (0, None)
    assert "alerts delivered: 1 of 1" in capsys.readouterr().out
    assert webhook.keys() == ["sbg-arm-usd/2026-03-23/level/margin_call"]


def test_alerts_become_prefect_events_and_the_run_gets_a_summary_artifact(
    tmp_path: Path, webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import prefect.events
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    emitted: list[tuple[str, str]] = []
    original = prefect.events.emit_event

    def recording(event: str, resource: dict[str, str], **kwargs: object):  # type: ignore[no-untyped-def]
        emitted.append((event, resource["prefect.resource.id"]))
        return original(event=event, resource=resource, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(prefect.events, "emit_event", recording)
    monkeypatch.setenv("MW_TEST_HOOK", webhook.url())
    summary = daily(
        book_with(tmp_path, WEBHOOK_ONLY),
        str(tmp_path / "w.duckdb"),
        "synthetic",
        D("2026-03-23"),
        evening("2026-03-23"),
    )
    assert ("marginwatch.alert.level", "marginwatch.loan.sbg-arm-usd") in emitted
    assert len(emitted) == summary.alerts.filter(pl.col("as_of_date") >= summary.deliver_from).height  # type: ignore[union-attr]

    async def artifact_markdown() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["marginwatch-run-summary"]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(summary.run_id)]),
                )
            )
            return str(found[-1].data)

    markdown = asyncio.run(artifact_markdown())
    assert "| sbg-arm-usd | 50.52% | margin_call |" in markdown
    assert "MARGIN CALL sbg-arm-usd: LTV 50.5%" in markdown


def test_unreachable_channel_exits_7_without_revealing_its_url(tmp_path: Path) -> None:
    from tests.integration.test_cli import marginwatch

    book_with(tmp_path, WEBHOOK_ONLY, lookback=1000)  # the CLI's clock is today's: reach back to March
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    env = {"MW_TEST_HOOK": f"json://127.0.0.1:{closed}/hook?token={CANARY}&cto=1&rto=1"}
    result = marginwatch("--config", "book.toml", "run", "--as-of", "2026-03-23", cwd=tmp_path, env=env)
    assert result.returncode == 7, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("marginwatch: error: 1 alert deliveries not acknowledged by risk-desk")
    assert CANARY not in result.stderr + result.stdout
    assert rows(tmp_path / "marginwatch.duckdb", "SELECT status FROM meta.alert_outbox") == [("pending",)]
    listed = marginwatch("--config", "book.toml", "alerts", "--pending", "--format", "csv", cwd=tmp_path, env=env)
    assert listed.returncode == 0 and "sbg-arm-usd/2026-03-23/level/margin_call" in listed.stdout
    assert CANARY not in listed.stdout


@pytest.mark.parametrize("command", ["run", "serve"])
def test_channel_without_its_environment_variable_is_a_config_error(tmp_path: Path, command: str) -> None:
    from tests.integration.test_cli import marginwatch

    book_with(tmp_path, WEBHOOK_ONLY)
    result = marginwatch("--config", "book.toml", command, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "marginwatch: error: channel 'risk-desk': environment variable MW_TEST_HOOK is not set"
    )
    assert not (tmp_path / "marginwatch.duckdb").exists()
