"""Soak: a synthetic year of daily runs with faults drawn at random converges on a clean backfill.

250 consecutive NASDAQ sessions from the default book's accrual start (2025-11-11 .. 2026-11-09:
the ARM crash through warning into margin call in February-April 2026 and the recovery after) are
run one `daily` run each, with Yahoo replayed. A seeded random generator draws which runs go wrong:
a Yahoo fault (the run fails with its typed error and touches no business table), an outage of the
alert webhook (deliveries stay pending for a later run), or a SIGKILL at a named crash point (the
real CLI in a child process). As in real operation nothing reruns a failed day: the next day's
scheduled run catches up every session missed since the last published one. No run seeds the
warehouse: the first daily run fetches the look-back the risk figures need, as a backfill does.
At the end the warehouse holds what one clean backfill of the same window writes, and the webhook
got every alert, a repeat only where a kill fell between sending an alert and recording it.

Ordinary runs call the flow in this process (one costs about two seconds); only the kills start a
process. The figures are printed (`pytest -s`) and written to `soak-figures.json` in the test's folder.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows.backfill import backfill
from flows.daily import daily
from flows.run import RunSummary
from marginwatch import calendar
from marginwatch.config import EMBEDDED_BOOK
from marginwatch.errors import SourceUnavailable
from marginwatch.faults import POINTS
from tests.integration.conftest import Webhook, rows
from tests.reliability.conftest import REPLAY_SCRIPT, _user_env, changed_tables, table_checksums
from tests.reliability.runner import CONTENT
from tests.reliability.test_crash import INVARIANTS
from tests.reliability.test_source_faults import FAILED, RUN_LOG
from tests.reliability.yahoo_replay import FAULT_ENV, Fault, replay_get

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.usefixtures("prefect_harness")]

SEED = 20260311  # the schedule's random generator: the same seed draws the same year of faults
RUNS = 250  # consecutive daily runs: one synthetic year
FIRST_SESSION = dt.date(2025, 11, 11)  # the default book's accrual start, its first LTV day
KILLS = 12  # each starts a process (10-20 s with imports); the other runs stay in this one
OUTAGES = 12
SOURCE_FAULTS = 20
SOURCE_KINDS = tuple(sorted(FAILED))  # each fails the run with exit 4 and leaves every business table as it was
FAULT_SYMBOLS = ("ARM", "JPY=X")  # the pledged stock and the yen loan's FX rate
OUTAGE_KINDS = ("http-500", "down")  # the webhook answers 500, or nothing listens on its port
SENT_NOT_RECORDED = "deliver:one-sent"  # a kill here repeats one alert: delivery is at least once
CHANNEL, HOOK_ENV = "soak-hook", "MW_SOAK_HOOK"
PENDING = "SELECT count(*) FROM meta.alert_outbox WHERE status = 'pending'"
# After a run that published: the sessions with LTV, the latest of them, and the deliveries still pending.
PUBLISHED = f"SELECT count(DISTINCT as_of_date), max(as_of_date), ({PENDING}) FROM marts.loan_ltv_daily"
# What the soak and the clean backfill must agree on: runner.CONTENT, except the `run_failed`
# notices (and their deliveries). Those record that a daily run failed on a given day: the run log,
# not the book's state, and a clean backfill has no failed run to notice. They are checked apart.
BUSINESS = CONTENT | {
    "marts.alerts": CONTENT["marts.alerts"] + " WHERE kind <> 'run_failed'",
    "meta.alert_outbox": CONTENT["meta.alert_outbox"] + " WHERE alert_key NOT LIKE '%/run_failed/%'",
}


@dataclass(frozen=True)
class Action:
    """What happens to one day's run: `kind` is run, source, outage or kill."""

    kind: str = "run"
    detail: str = ""  # the Yahoo fault, the outage, or the crash point
    symbol: str = ""  # a Yahoo fault: the symbol it hits


class SoakWebhook(Webhook):
    """The test webhook, which can also go away (connection refused) and come back on the same port."""

    def go_down(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def come_back(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.server.RequestHandlerClass)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()


@contextmanager
def channel_outage(hook: SoakWebhook, kind: str) -> Iterator[None]:
    """Take the webhook out for the duration: answering 500, or not listening at all."""
    if kind == "down":
        hook.go_down()
    else:
        hook.fail_with = 500
    try:
        yield
    finally:
        if kind == "down":
            hook.come_back()
        hook.fail_with = None


@pytest.fixture
def hooks() -> Iterator[tuple[SoakWebhook, SoakWebhook]]:
    """Two webhooks: the soak's, and the clean backfill's."""
    soak, clean = SoakWebhook(), SoakWebhook()
    yield soak, clean
    soak.close()
    clean.close()


def soak_book(folder: Path) -> Path:
    """Write the default book's loans with the webhook as the only channel (warning and above).

    Every alert of the synthetic year is delivered whatever today's date: the lookback counts back
    from the wall clock's latest session, and the killed runs go through the CLI, which takes no clock.
    """
    text = EMBEDDED_BOOK.read_text(encoding="utf-8")
    assert "alert_lookback_sessions = 260" in text and '[[channels]]\nname = "demo-file"' in text
    head = text.replace("alert_lookback_sessions = 260", "alert_lookback_sessions = 10000")
    head = head.partition('[[channels]]\nname = "demo-file"')[0]
    channel = f'[[channels]]\nname = "{CHANNEL}"\nurl_env = "{HOOK_ENV}"\nmin_level = "warning"\n\n'
    path = folder / "book.toml"
    path.write_text(head + channel + text[text.index("[[loans]]") :], encoding="utf-8")
    return path


def draw_schedule(rng: random.Random, days: list[dt.date], alert_days: set[dt.date]) -> list[Action]:
    """Return one action per day: mostly plain runs, and the faults drawn at random.

    The first run installs (it starts the warehouse) and the last finds everything up again, so
    both are plain. Outages and kills while delivering fall on days that raise alerts, where there
    is something to deliver; the one point where at-least-once delivery shows is always drawn.
    """
    slots = range(1, len(days) - 1)
    alerting = [i for i in slots if days[i] in alert_days]
    plan: dict[int, Action] = {}

    def free(pool: list[int] | range) -> list[int]:
        return [i for i in pool if i not in plan]

    others = [p for p in POINTS if p != SENT_NOT_RECORDED]
    for point in [SENT_NOT_RECORDED, *rng.sample(others, KILLS - 1)]:
        plan[rng.choice(free(alerting if point.startswith("deliver:") else slots))] = Action("kill", point)
    for _ in range(OUTAGES):
        plan[rng.choice(free(alerting))] = Action("outage", rng.choice(OUTAGE_KINDS))
    for _ in range(SOURCE_FAULTS):
        plan[rng.choice(free(slots))] = Action("source", rng.choice(SOURCE_KINDS), rng.choice(FAULT_SYMBOLS))
    return [plan.get(i, Action()) for i in range(len(days))]


def killed_run(book: Path, warehouse: Path, day: dt.date, point: str, api: str) -> subprocess.CompletedProcess[str]:
    """Run `marginwatch run` for `day` in a child process (Yahoo replayed) that kills itself at `point`."""
    env = _user_env(warehouse.parent, api) | {FAULT_ENV: Fault().to_env(), "MARGINWATCH_CRASH_AT": point}
    command = [sys.executable, str(REPLAY_SCRIPT), "--config", str(book), "--warehouse", str(warehouse)]
    command += ["run", "--as-of", day.isoformat(), "--source", "yfinance"]
    return subprocess.run(command, cwd=warehouse.parent, env=env, capture_output=True, text=True, timeout=300)


def business(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Return the business content of every table, sorted."""
    with duckdb.connect(str(path), read_only=True) as con:
        return {name: sorted(con.execute(sql).fetchall(), key=repr) for name, sql in BUSINESS.items()}


def differences(soak: dict[str, list[tuple[Any, ...]]], clean: dict[str, list[tuple[Any, ...]]]) -> dict[str, str]:
    """Return, per table that differs, its row counts and a few rows found on one side only."""
    found = {}
    for name in clean:
        if soak[name] != clean[name]:
            only_soak = [r for r in soak[name] if r not in clean[name]]
            only_clean = [r for r in clean[name] if r not in soak[name]]
            found[name] = (
                f"{len(soak[name])} rows after the soak, {len(clean[name])} after a clean backfill; "
                f"only after the soak: {only_soak[:3]}; only after the backfill: {only_clean[:3]}"
            )
    return found


def broken_invariants(warehouse: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Return the crash suite's invariants that do not hold, with the rows breaking them."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        found = {name: con.execute(sql).fetchall() for name, sql in INVARIANTS.items()}
    return {name: bad for name, bad in found.items() if bad}


def speed_up_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave out, in this process only, what costs time but is not what the soak checks.

    - Data Docs: GX keeps every validation of the process, so the pages rebuilt after each run grow
      with the runs made in it (0.3 s after the first, 2-4 s by the 35th); the killed runs build them.
    - The report's PNG chart (0.6-1.5 s a run); the page itself is still written and recorded.
    - The waits between retries: of a fetch task after a transient Yahoo failure (2 s and 5 s) and
      between the attempts of one delivery (0.5 s and 1.5 s). The retries themselves happen; later
      runs retrying what stays pending is what is tested.
    """
    from prefect import Task

    import expectations.docs
    import flows.tasks
    import marginwatch.notify
    import marginwatch.report_chart

    monkeypatch.setattr(expectations.docs, "build_data_docs", lambda directory: directory / "index.html")
    monkeypatch.setattr(marginwatch.report_chart, "render_chart", lambda *args, **kwargs: b"")
    monkeypatch.setattr(marginwatch.notify, "BACKOFF_SECONDS", (0.0, 0.0))
    for name, value in list(vars(flows.tasks).items()):
        if isinstance(value, Task) and value.retries:
            monkeypatch.setattr(flows.tasks, name, value.with_options(retry_delay_seconds=0))


@contextmanager
def quiet_prefect() -> Iterator[None]:
    """Skip Prefect's per-run heartbeat thread (joining it costs up to a second a run) and its failure logs."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@dataclass
class Soak:
    """The soak's warehouse and webhook, one method per kind of day, and what the days left to check."""

    book: Path
    warehouse: Path
    hook: SoakWebhook
    api: str
    monkeypatch: pytest.MonkeyPatch
    notices: list[str] = field(default_factory=list)  # the failure notice each failed run must leave
    resent: list[str] = field(default_factory=list)  # the alert each kill between sending and recording repeats
    unacknowledged: int = 0  # deliveries the webhook refused during outages
    caught_up: int = 0  # runs that computed sessions missed by earlier runs
    seconds: dict[str, float] = field(default_factory=dict)  # time spent per kind of day

    def day(self, index: int, day: dt.date, action: Action) -> None:
        """Run one day as `action` says, checking what that run must leave."""
        began = time.monotonic()
        where = f"run {index + 1} ({day}, {action.kind} {action.detail} {action.symbol})".rstrip()
        getattr(self, action.kind)(index, day, action, where)
        self.seconds[action.kind] = self.seconds.get(action.kind, 0.0) + time.monotonic() - began

    def kill(self, index: int, day: dt.date, action: Action, where: str) -> None:
        """The real CLI killed at the point: the warehouse stays sound, and the next day's run catches up."""
        keys_before = len(self.hook.keys())
        killed = killed_run(self.book, self.warehouse, day, action.detail, self.api)
        assert killed.returncode == -signal.SIGKILL, f"{where}: never reached: {killed.stderr[-800:]}"
        assert broken_invariants(self.warehouse) == {}, where
        if action.detail == SENT_NOT_RECORDED:
            sent = self.hook.keys()[keys_before:]
            assert len(sent) == 1, f"{where}: sent {sent}"
            self.resent.append(sent[0])

    def source(self, index: int, day: dt.date, action: Action, where: str) -> None:
        """Yahoo misbehaves: the run fails with its typed error and adds only its record and failure notice."""
        from yfinance.data import YfData

        self.monkeypatch.setattr(YfData, "get", replay_get(Fault(action.detail, action.symbol)))
        before = table_checksums(self.warehouse)
        with pytest.raises(SourceUnavailable) as failure:
            daily(str(self.book), str(self.warehouse), "yfinance", day)
        assert failure.value.symbol == action.symbol, where
        assert changed_tables(before, table_checksums(self.warehouse)) <= set(RUN_LOG), where
        self.notices.append(f"*/{day}/run_failed/daily")

    def outage(self, index: int, day: dt.date, action: Action, where: str) -> None:
        """The webhook is out: the run publishes, and every delivery it attempts stays pending."""
        with channel_outage(self.hook, action.detail):
            summary = self.published(index, day, where)
        assert summary.deliveries and summary.undelivered == summary.deliveries, where
        self.unacknowledged += len(summary.undelivered)

    def run(self, index: int, day: dt.date, action: Action, where: str) -> None:
        """A plain run: it publishes and delivers everything pending, its own alerts and earlier ones."""
        assert self.published(index, day, where).undelivered == [], where

    def published(self, index: int, day: dt.date, where: str) -> RunSummary:
        """Run the day with Yahoo answering; it catches up every session missed since the last one published."""
        from yfinance.data import YfData

        self.monkeypatch.setattr(YfData, "get", replay_get(Fault()))
        summary = daily(str(self.book), str(self.warehouse), "yfinance", day)
        assert summary.as_of_end == day, where
        assert rows(self.warehouse, PUBLISHED) == [(index + 1, day, len(summary.undelivered))], where
        self.caught_up += summary.as_of_start < day
        return summary


@pytest.mark.timeout(1800)
def test_a_year_of_daily_runs_with_random_faults_equals_a_clean_backfill_and_alerts_every_key_once(
    tmp_path: Path, api_url: str, hooks: tuple[SoakWebhook, SoakWebhook], monkeypatch: pytest.MonkeyPatch
) -> None:
    from yfinance.data import YfData

    started = time.monotonic()
    hook, clean_hook = hooks
    speed_up_in_process(monkeypatch)
    book = soak_book(tmp_path)
    days: list[dt.date] = calendar.sessions_between(FIRST_SESSION, FIRST_SESSION + dt.timedelta(days=400)).to_list()
    days = days[:RUNS]
    assert len(days) == RUNS

    # The clean backfill of the window, in a fresh warehouse with its own webhook: what the soak must reach.
    (tmp_path / "clean").mkdir()
    clean_warehouse = tmp_path / "clean" / "w.duckdb"
    monkeypatch.setenv(HOOK_ENV, clean_hook.url())
    monkeypatch.setattr(YfData, "get", replay_get(Fault()))
    with quiet_prefect():
        clean_run = backfill(str(book), str(clean_warehouse), days[0], days[-1], "yfinance")
    backfill_seconds = time.monotonic() - started
    assert clean_run.undelivered == []
    clean = business(clean_warehouse)
    routed = f"SELECT a.as_of_date FROM marts.alerts a JOIN meta.alert_outbox o USING (alert_key) WHERE o.channel = '{CHANNEL}'"
    alert_days = {day for (day,) in rows(clean_warehouse, routed)}
    assert sorted(clean_hook.keys()) == sorted(key for key, _, _ in clean["meta.alert_outbox"])

    # The year, one daily run per session, as the seeded schedule says.
    schedule = draw_schedule(random.Random(SEED), days, alert_days)
    monkeypatch.setenv(HOOK_ENV, hook.url())
    soak = Soak(book, tmp_path / "w.duckdb", hook, api_url, monkeypatch)
    with quiet_prefect():
        for index, (day, action) in enumerate(zip(days, schedule, strict=True)):
            if index and index % 25 == 0:
                print(f"soak: {index} runs in {time.monotonic() - started:.0f} s", flush=True)
            soak.day(index, day, action)
    wall_seconds = time.monotonic() - started

    # The warehouse holds what the clean backfill wrote, plus one failure notice per failed run.
    assert not list((tmp_path / "w-backups").glob("*.partial")), "a half-copied backup was left behind"
    content = business(soak.warehouse)
    assert differences(content, clean) == {}
    notices = rows(soak.warehouse, "SELECT alert_key FROM marts.alerts WHERE kind = 'run_failed' ORDER BY 1")
    assert notices == [(key,) for key in sorted(soak.notices)]
    assert rows(soak.warehouse, PENDING) == [(0,)]

    # The webhook got every alert routed to it, and a repeat only where a kill fell between sending and recording.
    received = Counter(hook.keys())
    outbox = f"SELECT alert_key FROM meta.alert_outbox WHERE channel = '{CHANNEL}'"
    assert set(received) == {key for (key,) in rows(soak.warehouse, outbox)}
    assert {key: n for key, n in received.items() if n > 1} == dict.fromkeys(soak.resent, 2)
    assert set(received) - set(soak.notices) == set(clean_hook.keys())

    retried = "SELECT count(*), coalesce(sum(attempts - 1), 0) FROM meta.alert_outbox WHERE attempts > 1"
    ((deliveries_retried, retry_rounds),) = rows(soak.warehouse, retried)
    kinds = Counter(a.kind for a in schedule)
    figures = {
        "seed": SEED,
        "runs": RUNS,
        "sessions": [days[0].isoformat(), days[-1].isoformat()],
        "plain_runs": kinds["run"],
        "source_faults": kinds["source"],
        "source_faults_by_kind": dict(sorted(Counter(a.detail for a in schedule if a.kind == "source").items())),
        "channel_outages": kinds["outage"],
        "channel_outages_by_kind": dict(sorted(Counter(a.detail for a in schedule if a.kind == "outage").items())),
        "kills": kinds["kill"],
        "kill_points": [a.detail for a in schedule if a.kind == "kill"],
        "runs_catching_up_missed_sessions": soak.caught_up,
        "alerts": len(content["marts.alerts"]),
        "failure_notices": len(soak.notices),
        "messages_received": received.total(),
        "deliveries_refused_in_outages": soak.unacknowledged,
        "deliveries_retried_by_later_runs": deliveries_retried,
        "failed_attempts_recorded": retry_rounds,
        "duplicates": len(soak.resent),
        "duplicate_keys": soak.resent,
        "duplicate_reason": f"each is the alert a run killed at {SENT_NOT_RECORDED} had sent but not recorded",
        "wall_seconds": round(wall_seconds, 1),
        "clean_backfill_seconds": round(backfill_seconds, 1),
        "seconds_by_kind_of_day": {kind: round(s, 1) for kind, s in sorted(soak.seconds.items())},
        "mean_seconds_by_kind_of_day": {kind: round(s / kinds[kind], 2) for kind, s in sorted(soak.seconds.items())},
        "schedule": {days[i].isoformat(): asdict(a) for i, a in enumerate(schedule) if a.kind != "run"},
    }
    (tmp_path / "soak-figures.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print("\nsoak figures:", json.dumps({k: v for k, v in figures.items() if k != "schedule"}, indent=2))
