"""Yahoo faults through yfinance's own request seam: each gives its typed exit code and one line; earlier data stays.

Every test starts from a warehouse seeded by a good replayed-Yahoo run of the default book through
2026-01-09, then asks for 2026-01-12 while the replay misbehaves. What a failed run writes, by design:
one `failed` row in `meta.runs` whose error is the line on stderr, and one `run_failed` notice in
`marts.alerts` queued in `meta.alert_outbox` for the book's channels (the default book's file channel
acknowledges it at once). Every other table keeps its exact rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from marginwatch.config import EMBEDDED_BOOK
from tests.integration.conftest import rows
from tests.reliability.conftest import (
    NEXT_SESSION,
    Checksums,
    added_rows,
    changed_tables,
    one_error_line,
    replayed_marginwatch,
    table_checksums,
)
from tests.reliability.yahoo_replay import FAULTS, Fault

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.usefixtures("prefect_harness")]
FETCHED = f"2025-12-26..{NEXT_SESSION}"  # the daily run refetches ten sessions before the one it computes
FAILED = {
    "dns": "network unreachable (DNS lookup failed)",
    "timeout": "timed out after 10s",
    "http-429": "Yahoo rate limit (HTTP 429)",
    "http-500": "Yahoo server error (HTTP 500)",
    "empty": f"no bars returned for {FETCHED}",
    "truncated": "invalid JSON from Yahoo (truncated or not JSON)",
    "nulls": f"no bars returned for {FETCHED}",
    "wrong-symbol": "Yahoo sent the chart of AMD instead",
}
RETRIED = {"http-429", "http-500"}  # twice more, after 2 s and 5 s; the other faults are final at once
RUN_LOG = ("meta.runs", "marts.alerts", "meta.alert_outbox")
RUNS = "SELECT flow, status, source, as_of_end, error FROM meta.runs"
NOTICES = (
    "SELECT a.alert_key, a.kind, a.detail, o.channel, o.status "
    "FROM marts.alerts a JOIN meta.alert_outbox o USING (alert_key)"
)


def test_every_listed_fault_has_an_expected_outcome() -> None:
    assert set(FAILED) | {"future-bar", "null-open"} == set(FAULTS)


def assert_only_the_failure_was_recorded(
    warehouse: Path, before: Checksums, runs: list[tuple[object, ...]], notices: list[tuple[object, ...]], line: str
) -> None:
    """The run log holds the failed run and its notice; every other table is exactly as before."""
    error = line.removeprefix("marginwatch: error: ")
    assert changed_tables(before, table_checksums(warehouse)) == set(RUN_LOG)
    assert added_rows(runs, rows(warehouse, RUNS)) == [("daily", "failed", "yfinance", NEXT_SESSION, error)]
    key = f"*/{NEXT_SESSION}/run_failed/daily"
    assert added_rows(notices, rows(warehouse, NOTICES)) == [(key, "run_failed", error, "demo-file", "delivered")]
    assert f"RUN FAILED marginwatch daily for {NEXT_SESSION}" in Path("marginwatch-alerts.log").read_text()


@pytest.mark.parametrize("fault", sorted(FAILED))
def test_source_fault_exits_4_with_one_line_and_leaves_earlier_data(
    fault: str, yahoo_seeded: Path, yahoo: Callable[[Fault], list[str]], cli: Callable[..., tuple[int, str, str]]
) -> None:
    before, runs, notices = table_checksums(yahoo_seeded), rows(yahoo_seeded, RUNS), rows(yahoo_seeded, NOTICES)
    requests = yahoo(Fault(fault))
    code, _, err = cli(
        "--config", EMBEDDED_BOOK, "--warehouse", yahoo_seeded, "run", "--source", "yfinance", "--as-of", NEXT_SESSION
    )
    line = one_error_line(err)
    assert (code, line) == (4, f"marginwatch: error: source unavailable for ARM: {FAILED[fault]}")
    # Three tries of the fetch task for a transient failure; within each, a rate limit is also backed off 4 times.
    assert requests.count("ARM") == {"http-429": 3 * 4}.get(fault, 3 if fault in RETRIED else 1)
    assert_only_the_failure_was_recorded(yahoo_seeded, before, runs, notices, line)


def test_bars_dated_after_the_run_are_dropped_before_the_gate(
    yahoo_seeded: Path, yahoo: Callable[[Fault], list[str]], cli: Callable[..., tuple[int, str, str]]
) -> None:
    yahoo(Fault("future-bar"))  # the good bars, then one dated the next day and one a year on
    code, _, err = cli(
        "--config", EMBEDDED_BOOK, "--warehouse", yahoo_seeded, "run", "--source", "yfinance", "--as-of", NEXT_SESSION
    )
    assert (code, err) == (0, "")
    newest = rows(
        yahoo_seeded,
        "SELECT (SELECT max(session_date) FROM raw.market_bars), (SELECT max(session_date) FROM staging.prices), "
        "(SELECT max(session_date) FROM staging.fx_rates), (SELECT max(as_of_date) FROM marts.loan_ltv_daily), "
        "(SELECT count(*) FROM raw.quarantined_bars)",
    )
    assert newest == [(NEXT_SESSION, NEXT_SESSION, NEXT_SESSION, NEXT_SESSION, 0)]
    assert rows(yahoo_seeded, RUNS)[-1][:2] == ("daily", "succeeded")


def test_a_bar_without_its_open_is_held_back_by_the_gate_with_exit_3(
    yahoo_seeded: Path, yahoo: Callable[[Fault], list[str]], cli: Callable[..., tuple[int, str, str]]
) -> None:
    before = table_checksums(yahoo_seeded)
    yahoo(Fault("null-open", day=str(NEXT_SESSION)))
    code, _, err = cli(
        "--config", EMBEDDED_BOOK, "--warehouse", yahoo_seeded, "run", "--source", "yfinance", "--as-of", NEXT_SESSION
    )
    line = one_error_line(err)
    assert code == 3
    assert line.startswith(
        "marginwatch: error: data-quality gate held back symbols ARM; loans sbg-arm-jpy, sbg-arm-usd: failed "
    )
    assert "bars.open_not_null (1 rows)" in line
    changed = changed_tables(before, table_checksums(yahoo_seeded))
    assert not changed & {"staging.prices", "marts.loan_ltv_daily"}
    quarantined = rows(yahoo_seeded, "SELECT symbol, session_date, open, reasons FROM raw.quarantined_bars")
    assert [(s, d, o) for s, d, o, _ in quarantined] == [("ARM", NEXT_SESSION, None)]
    assert rows(yahoo_seeded, RUNS)[-1][:2] == ("daily", "dq_failed")


@pytest.mark.parametrize("fault", ["dns", "wrong-symbol"])
def test_source_fault_in_a_real_process_prints_exactly_one_line(
    fault: str, yahoo_seeded: Path, api_url: str, tmp_path: Path
) -> None:
    before = table_checksums(yahoo_seeded)
    result = replayed_marginwatch(
        *("--config", str(EMBEDDED_BOOK), "--warehouse", str(yahoo_seeded), "run"),
        *("--source", "yfinance", "--as-of", str(NEXT_SESSION)),
        cwd=tmp_path,
        fault=Fault(fault),
        api=api_url,
    )
    assert result.returncode == 4, result.stderr
    assert result.stderr == f"marginwatch: error: source unavailable for ARM: {FAILED[fault]}\n"
    assert changed_tables(before, table_checksums(yahoo_seeded)) == set(RUN_LOG)
