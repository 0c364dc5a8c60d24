"""The expectation suites run for real through GX: every check passes on a good frame, fails on a minimal break.

Each suite has one module-scoped good frame built through the real check-column functions in
`transforms.quality`; every breaking case mutates that good input once, re-derives the check columns
and validates again. The coverage tests fail when a suite gains a check without a breaking case here.
"""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pytest

from expectations.gate import REASON_SCHEMA, SuiteOutcome, validate, validate_in_parts
from expectations.suites import BARS, FX_RATES, LOAN_LTV, Check, bar_checks, fx_checks, ltv_checks
from marginwatch import calendar
from marginwatch.sources.base import RAW_BAR_SCHEMA
from transforms.ltv import LTV_SCHEMA
from transforms.quality import add_bar_checks, add_fx_checks, add_ltv_checks, apply_verdict, previous_bars
from transforms.staging import fx_pair_expr

D = dt.date
MOVE_BOUND = 0.40

# ARM over five consecutive NASDAQ sessions, Mon 2026-01-05 .. Fri 2026-01-09 (Thu 2026-01-01 is a holiday).
BAR_DATES = [D(2026, 1, 5), D(2026, 1, 6), D(2026, 1, 7), D(2026, 1, 8), D(2026, 1, 9)]
NEWEST = BAR_DATES[-1]
SATURDAY = D(2026, 1, 3)  # between the staged 2026-01-02 and the batch
# Staged history before the batch: Wed 2025-12-31 and Fri 2026-01-02 (the sessions just before 2026-01-05).
HISTORY = pl.DataFrame(
    {"symbol": ["ARM", "ARM"], "session_date": [D(2025, 12, 31), D(2026, 1, 2)], "close": [99.0, 100.0]}
)
# USDJPY on six consecutive weekdays, Mon 2026-01-05 .. Mon 2026-01-12 (the weekend in between is no gap).
FX_DATES = [D(2026, 1, 5), D(2026, 1, 6), D(2026, 1, 7), D(2026, 1, 8), D(2026, 1, 9), D(2026, 1, 12)]

MID = 2  # the row most breaking cases mutate: the middle of the batch


# ---------------------------------------------------------------- builders


def raw_bars(symbol: str, dates: list[dt.date], ohlcv: list[tuple[float, float, float, float, float]]) -> pl.DataFrame:
    """Return raw bars (RAW_BAR_SCHEMA) with adj_close = close, no dividends and no splits."""
    rows = [(symbol, day, o, h, low, c, c, v, 0.0, 0.0) for day, (o, h, low, c, v) in zip(dates, ohlcv, strict=True)]
    return pl.DataFrame(rows, schema=RAW_BAR_SCHEMA, orient="row")


def good_raw_bars() -> pl.DataFrame:
    """ARM bars whose close climbs 1 a day from 101, with open = previous close, high = close + 1, low = open - 1."""
    ohlcv = [(100.0 + i, 102.0 + i, 99.0 + i, 101.0 + i, 1_000_000.0 + 100_000.0 * i) for i in range(5)]
    return raw_bars("ARM", BAR_DATES, ohlcv)


def all_sessions() -> pl.Series:
    """Return every NASDAQ session of the calendar, as the validate-incoming task passes them."""
    return calendar.sessions_between(calendar.FIRST_DAY, calendar.LAST_DAY)


def check_bars(bars: pl.DataFrame) -> pl.DataFrame:
    """Return `bars` with check columns, anchored on HISTORY, as the validate-incoming task builds them."""
    return add_bar_checks(bars, previous_bars(HISTORY, bars), all_sessions(), NEWEST, MOVE_BOUND)


def good_raw_fx() -> pl.DataFrame:
    """USDJPY (`JPY=X`) bars around 157 yen per dollar, high/low bounding open and close."""
    closes = [157.0, 157.4, 156.9, 157.2, 157.8, 158.1]
    opens = [156.8, *closes[:-1]]
    rows = [
        ("JPY=X", day, o, max(o, c) + 0.3, min(o, c) - 0.3, c, c, 0.0, 0.0, 0.0)
        for day, o, c in zip(FX_DATES, opens, closes, strict=True)
    ]
    return pl.DataFrame(rows, schema=RAW_BAR_SCHEMA, orient="row")


def check_fx(fx: pl.DataFrame) -> pl.DataFrame:
    """Return FX bars with pair, rate = close and check columns, as the validate-incoming task builds them."""
    base, quote = fx_pair_expr(pl.col("symbol"))
    return add_fx_checks(fx.with_columns(pair=base + quote, rate=pl.col("close")))


LEVELS = {"warning_ltv": 0.4, "margin_call_ltv": 0.5, "liquidation_ltv": 0.6, "cure_target_ltv": 0.3}


MULTI_SYMBOL_NULLS = ("price", "fx", "margin_call_price", "liquidation_price", "cure_shares")


def ltv_row(
    loan_id: str, as_of: dt.date, shares: float, price: float, fx: float, balance: float, currency: str = "USD"
) -> dict[str, Any]:
    """Return one single-symbol LTV row (no haircut) whose numbers are worked out from its inputs."""
    collateral = shares * price * fx
    ltv = balance / collateral
    status = "liquidation" if ltv >= 0.6 else "margin_call" if ltv >= 0.5 else "warning" if ltv >= 0.4 else "ok"
    return {
        "loan_id": loan_id,
        "as_of_date": as_of,
        "price_date": as_of,
        "fx_date": as_of,
        "currency": currency,
        "collateral_value": collateral,
        "loan_balance": balance,
        "ltv": ltv,
        "status": status,
        "price": price,
        "fx": fx,
        "margin_call_price": balance / (shares * fx * 0.5),
        "liquidation_price": balance / (shares * fx * 0.6),
        "distance_to_margin_call": 1 - ltv / 0.5,
        "cure_cash": max(0.0, balance - 0.3 * collateral),
        "cure_shares": max(0.0, (balance / 0.3 - collateral) / (price * fx)),
        "sessions_since_price": 0,
        "is_stale": False,
        "is_unconfirmed": False,
        **LEVELS,
        "source": "synthetic",
    }


def good_ltv() -> pl.DataFrame:
    """LTV rows: a USD loan on three dates (ok, warning, margin call), a JPY loan on USD shares (liquidation)
    and a loan on several symbols (ok, no trigger prices)."""
    rows = [
        ltv_row("L1", BAR_DATES[0], 1000.0, 100.0, 1.0, 30_000.0),  # 0.30 ok
        ltv_row("L1", BAR_DATES[1], 1000.0, 100.0, 1.0, 45_000.0),  # 0.45 warning
        ltv_row("L1", BAR_DATES[2], 1000.0, 100.0, 1.0, 55_000.0),  # 0.55 margin call
        ltv_row("L2", BAR_DATES[0], 400.0, 101.0, 157.2, 4_000_000.0, "JPY"),  # 0.6299 liquidation
        # multi-symbol collateral: no single price, fx or trigger prices (their checks see nulls)
        {**ltv_row("L3", BAR_DATES[0], 1.0, 80_000.0, 1.0, 20_000.0), **dict.fromkeys(MULTI_SYMBOL_NULLS)},
    ]
    return pl.DataFrame(rows, schema=LTV_SCHEMA)


# ---------------------------------------------------------------- mutation helpers


def set_cell(frame: pl.DataFrame, row: int, **values: Any) -> pl.DataFrame:
    """Return `frame` with the given columns set to literal values on one row."""
    at_row = pl.int_range(pl.len()) == row
    return frame.with_columns(
        pl.when(at_row).then(pl.lit(value, frame.schema[column])).otherwise(pl.col(column)).alias(column)
        for column, value in values.items()
    )


def scale_cell(frame: pl.DataFrame, row: int, column: str, factor: float) -> pl.DataFrame:
    """Return `frame` with one cell multiplied by `factor`."""
    return set_cell(frame, row, **{column: frame[column][row] * factor})


def append_copy(frame: pl.DataFrame, row: int, **values: Any) -> pl.DataFrame:
    """Return `frame` with a copy of one row (optionally changed) appended at the end."""
    return pl.concat([frame, set_cell(frame.slice(row, 1), 0, **values)])


def drop_row(frame: pl.DataFrame, row: int) -> pl.DataFrame:
    """Return `frame` without one row."""
    return frame.with_row_index("_i").filter(pl.col("_i") != row).drop("_i")


@dataclass(frozen=True)
class Break:
    """A minimal mutation of a suite's good input, the checked-frame row it must fail on, and the
    other checks the same mutation unavoidably fails too (so no check fires by accident)."""

    mutate: Callable[[pl.DataFrame], pl.DataFrame]
    row: int
    why: str
    also: tuple[str, ...] = ()


# Good bar row MID (2026-01-07): open 102, high 104, low 101, close 103, volume 1 200 000.
BAR_BREAKS: dict[str, Break] = {
    "session_date_not_null": Break(
        lambda b: set_cell(b, MID, session_date=None),
        MID,
        "null session date",
        also=("nasdaq_session", "no_missing_session"),  # 2026-01-08 now follows 2026-01-06
    ),
    "open_not_null": Break(
        lambda b: set_cell(b, MID, open=None), MID, "null open", also=("high_at_least_open", "open_at_least_low")
    ),
    "high_not_null": Break(
        lambda b: set_cell(b, MID, high=None), MID, "null high", also=("high_at_least_open", "high_at_least_close")
    ),
    "low_not_null": Break(
        lambda b: set_cell(b, MID, low=None), MID, "null low", also=("open_at_least_low", "close_at_least_low")
    ),
    "close_not_null": Break(
        lambda b: set_cell(b, MID, close=None), MID, "null close", also=("high_at_least_close", "close_at_least_low")
    ),
    "open_positive": Break(
        lambda b: set_cell(b, MID, open=0.0, low=0.0), MID, "zero open (and low)", also=("low_positive",)
    ),
    "high_positive": Break(
        lambda b: set_cell(b, MID, high=-104.0),
        MID,
        "negative high",
        also=("high_at_least_open", "high_at_least_close"),
    ),
    "low_positive": Break(lambda b: set_cell(b, MID, low=0.0), MID, "zero low"),
    "close_positive": Break(
        lambda b: set_cell(b, MID, close=-103.0),
        MID,
        "negative close",
        also=("close_at_least_low", "move_within_bound"),
    ),
    "high_at_least_open": Break(lambda b: set_cell(b, MID, open=104.5), MID, "open above the high"),
    "high_at_least_close": Break(lambda b: set_cell(b, MID, close=104.5), MID, "close above the high"),
    "open_at_least_low": Break(lambda b: set_cell(b, MID, open=100.5), MID, "open below the low"),
    "close_at_least_low": Break(lambda b: set_cell(b, MID, close=100.5), MID, "close below the low"),
    "volume_not_negative": Break(lambda b: set_cell(b, MID, volume=-5.0), MID, "negative volume"),
    "volume_integral": Break(lambda b: set_cell(b, MID, volume=1_200_000.5), MID, "fractional volume"),
    "unique_symbol_session": Break(
        lambda b: append_copy(b, MID, volume=7.0),
        5,
        "duplicated (symbol, session_date)",
        also=("no_missing_session",),  # the copy is 0 sessions after the original
    ),
    "nasdaq_session": Break(
        lambda b: append_copy(b, 0, session_date=SATURDAY, volume=7.0), 5, "a Saturday bar (2026-01-03)"
    ),
    "no_missing_session": Break(lambda b: drop_row(b, MID), MID, "2026-01-07 missing: 01-08 is 2 sessions on"),
    "fresh": Break(lambda b: drop_row(b, 4), 0, "newest bar 2026-01-08, expected 2026-01-09"),
    "move_within_bound": Break(lambda b: set_cell(b, MID, close=163.2, high=164.0), MID, "a 60% close jump"),
    "not_a_repeat": Break(
        lambda b: set_cell(b, MID, open=101.0, high=103.0, low=100.0, close=102.0, volume=1_100_000.0),
        MID,
        "exact repeat of the previous bar's OHLCV",
    ),
}

# Good FX rows 1 (2026-01-06): open 157.0, high 157.7, low 156.7, close 157.4; MID (2026-01-07): close 156.9.
FX_BREAKS: dict[str, Break] = {
    "session_date_not_null": Break(
        lambda f: set_cell(f, MID, session_date=None), MID, "null session date", also=("no_missing_weekday",)
    ),
    "rate_not_null": Break(lambda f: set_cell(f, MID, close=None), MID, "null rate"),
    "rate_positive": Break(
        lambda f: set_cell(f, MID, close=-156.9, low=-157.0), MID, "negative rate", also=("rate_in_plausible_band",)
    ),
    "rate_in_plausible_band": Break(lambda f: set_cell(f, MID, close=5000.0, high=5000.0), MID, "5000 yen per dollar"),
    "unique_pair_session": Break(lambda f: append_copy(f, MID), 6, "duplicated (pair, session_date)"),
    "high_low_bound_open_close": Break(lambda f: set_cell(f, 1, high=157.2), 1, "high below the close"),
    "weekday": Break(lambda f: append_copy(f, 4, session_date=D(2026, 1, 10)), 6, "a Saturday FX row"),
    "no_missing_weekday": Break(lambda f: drop_row(f, MID), MID, "2026-01-07 missing: 01-08 is 2 weekdays on"),
}

# Good LTV row 1: L1 on 2026-01-06, ltv 0.45 (warning); row 2: ltv 0.55 (margin call); row 3: L2 (liquidation).
LTV_BREAKS: dict[str, Break] = {
    "ltv_not_null": Break(
        lambda t: set_cell(t, 1, ltv=None),
        1,
        "null ltv",
        also=("status_matches_levels",),  # null ltv grades 'ok'
    ),
    "collateral_value_positive": Break(lambda t: set_cell(t, 1, collateral_value=0.0), 1, "zero collateral"),
    "ltv_is_balance_over_collateral": Break(
        lambda t: scale_cell(t, 1, "ltv", 1 + 1e-6),
        1,
        "ltv off by 1e-6 relative",
        also=("margin_call_price_consistent", "liquidation_price_consistent"),  # triggers are checked against ltv
    ),
    "status_matches_levels": Break(lambda t: set_cell(t, MID, status="ok"), MID, "'ok' at ltv 0.55"),
    "margin_call_price_consistent": Break(
        lambda t: scale_cell(t, 1, "margin_call_price", 1.01), 1, "margin call price off by 1%"
    ),
    "liquidation_price_consistent": Break(
        lambda t: scale_cell(t, 1, "liquidation_price", 1.01), 1, "liquidation price off by 1%"
    ),
    "unique_loan_as_of": Break(lambda t: append_copy(t, 1), 5, "duplicated (loan_id, as_of_date)"),
    "price_not_stale": Break(lambda t: set_cell(t, 3, is_stale=True, sessions_since_price=4), 3, "stale price"),
}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bars_input() -> pl.DataFrame:
    return good_raw_bars()


@pytest.fixture(scope="module")
def good_bar_outcome(bars_input: pl.DataFrame) -> SuiteOutcome:
    return validate(BARS, check_bars(bars_input), "test-good-bars")


@pytest.fixture(scope="module")
def fx_input() -> pl.DataFrame:
    return good_raw_fx()


@pytest.fixture(scope="module")
def good_fx_outcome(fx_input: pl.DataFrame) -> SuiteOutcome:
    return validate(FX_RATES, check_fx(fx_input), "test-good-fx")


@pytest.fixture(scope="module")
def ltv_input() -> pl.DataFrame:
    return good_ltv()


@pytest.fixture(scope="module")
def good_ltv_outcome(ltv_input: pl.DataFrame) -> SuiteOutcome:
    return validate(LOAN_LTV, add_ltv_checks(ltv_input), "test-good-ltv")


# ---------------------------------------------------------------- assertions


def assert_all_pass(outcome: SuiteOutcome, checks: list[Check]) -> None:
    results = outcome.results
    assert sorted(results["check_name"].to_list()) == sorted(c.name for c in checks)
    failed = results.filter(~pl.col("success"))
    assert failed.is_empty(), failed.select("check_name", "observed_value").rows()
    assert (results["unexpected_count"].fill_null(0) == 0).all()
    assert outcome.row_reasons.is_empty()
    assert not outcome.table_blocked


def assert_breaks(outcome: SuiteOutcome, check: Check, case: Break) -> None:
    row = case.row
    failed = outcome.results.filter(~pl.col("success"))["check_name"].to_list()
    assert set(failed) == {check.name, *case.also}, f"{case.why}: failed {failed}"
    result = outcome.results.filter(pl.col("check_name") == check.name).row(0, named=True)
    assert result["success"] is False, result
    assert result["severity"] == ("blocking" if check.blocking else "warning")
    assert result["unexpected_count"] >= 1
    assert not outcome.table_blocked  # every check here names its failing rows
    reasons = outcome.row_reasons.filter(pl.col("_row") == row)
    assert reasons.height == 1, f"row {row} not among failing rows {outcome.row_reasons.rows()}"
    assert check.name in reasons["reasons"][0].split("; ")
    # no warning break here also fails a blocking check on the same row, so the row is blocked iff the check blocks
    assert reasons["is_blocked"][0] is check.blocking
    assert (row in outcome.blocked_rows["_row"].to_list()) is check.blocking


# ---------------------------------------------------------------- coverage


@pytest.mark.parametrize(
    ("checks", "breaks"),
    [(bar_checks, BAR_BREAKS), (fx_checks, FX_BREAKS), (ltv_checks, LTV_BREAKS)],
    ids=[BARS, FX_RATES, LOAN_LTV],
)
def test_every_check_has_a_breaking_case(checks: Callable[[], list[Check]], breaks: dict[str, Break]) -> None:
    names = [check.name for check in checks()]
    assert len(names) == len(set(names)), "check names must be unique within a suite"
    assert set(breaks) == set(names)


# ---------------------------------------------------------------- good frames pass


def test_good_bars_pass_every_check(bars_input: pl.DataFrame, good_bar_outcome: SuiteOutcome) -> None:
    checked = check_bars(bars_input)
    assert checked["sessions_since_previous"].to_list() == [1, 1, 1, 1, 1]  # the first is anchored on 2026-01-02
    assert not checked["is_unconfirmed"].any()
    assert_all_pass(good_bar_outcome, bar_checks())


def test_good_fx_passes_every_check(fx_input: pl.DataFrame, good_fx_outcome: SuiteOutcome) -> None:
    checked = check_fx(fx_input)
    assert checked["weekdays_since_previous"].to_list() == [None, 1, 1, 1, 1, 1]  # Fri -> Mon is one weekday
    assert_all_pass(good_fx_outcome, fx_checks())


def test_good_ltv_passes_every_check(ltv_input: pl.DataFrame, good_ltv_outcome: SuiteOutcome) -> None:
    assert ltv_input["status"].to_list() == ["ok", "warning", "margin_call", "liquidation", "ok"]
    assert ltv_input["ltv"][MID] == 0.55
    assert_all_pass(good_ltv_outcome, ltv_checks())


# ---------------------------------------------------------------- every check breaks


@pytest.mark.parametrize("check", bar_checks(), ids=lambda c: c.name)
def test_bar_check_breaks(check: Check, bars_input: pl.DataFrame) -> None:
    case = BAR_BREAKS[check.name]
    outcome = validate(BARS, check_bars(case.mutate(bars_input)), f"test-break-{check.name}")
    assert_breaks(outcome, check, case)


@pytest.mark.parametrize("check", fx_checks(), ids=lambda c: c.name)
def test_fx_check_breaks(check: Check, fx_input: pl.DataFrame) -> None:
    case = FX_BREAKS[check.name]
    outcome = validate(FX_RATES, check_fx(case.mutate(fx_input)), f"test-break-{check.name}")
    assert_breaks(outcome, check, case)


@pytest.mark.parametrize("check", ltv_checks(), ids=lambda c: c.name)
def test_ltv_check_breaks(check: Check, ltv_input: pl.DataFrame) -> None:
    case = LTV_BREAKS[check.name]
    outcome = validate(LOAN_LTV, add_ltv_checks(case.mutate(ltv_input)), f"test-break-{check.name}")
    assert_breaks(outcome, check, case)


# ---------------------------------------------------------------- transforms.quality, literal expectations


def closes_frame(closes: list[float], splits: list[float] | None = None) -> pl.DataFrame:
    """Return ARM bars on consecutive sessions from 2026-01-05 with open = low = high = close."""
    sessions = calendar.sessions_between(D(2026, 1, 5), D(2026, 2, 27)).to_list()[: len(closes)]
    frame = raw_bars("ARM", sessions, [(c, c, c, c, 1000.0) for c in closes])
    if splits is not None:
        frame = frame.with_columns(stock_splits=pl.Series(splits))
    return frame


NO_PREVIOUS = pl.DataFrame(schema={"symbol": pl.String, "session_date": pl.Date, "close": pl.Float64})


def checked_closes(frame: pl.DataFrame, previous: pl.DataFrame = NO_PREVIOUS) -> pl.DataFrame:
    """Return `frame` through add_bar_checks, expecting its own newest session."""
    return add_bar_checks(frame, previous, all_sessions(), frame["session_date"].max(), MOVE_BOUND)


def flags(frame: pl.DataFrame, previous: pl.DataFrame = NO_PREVIOUS) -> list[tuple[bool, bool, bool]]:
    """Return (is_large_move, is_reversion, is_unconfirmed) per row."""
    return checked_closes(frame, previous).select("is_large_move", "is_reversion", "is_unconfirmed").rows()


def test_large_move_held_by_next_session_is_confirmed() -> None:
    checked = checked_closes(closes_frame([100.0, 147.9, 148.5]))
    assert checked["close_move"][1] == pytest.approx(0.479)
    assert checked["is_large_move"].to_list() == [False, True, False]
    assert checked["is_confirmed_by_next"].to_list() == [False, True, False]  # 100 -> 147.9 is not held
    assert checked["is_unconfirmed"].to_list() == [False, False, False]


def test_bad_tick_is_unconfirmed_and_the_return_is_a_reversion() -> None:
    # 100 -> 1000 (a 10x bad tick) -> 100.5 (back to the old level) -> 101
    assert flags(closes_frame([100.0, 1000.0, 100.5, 101.0])) == [
        (False, False, False),
        (True, False, True),  # the tick: large, not held by the next session
        (True, True, False),  # the return: a -90% move, but it undoes the tick
        (False, False, False),
    ]


def test_return_after_a_staged_spike_is_a_reversion() -> None:
    # The spike is already staged: previous_bars keeps the last two staged bars, so the first incoming bar is judged.
    history = pl.DataFrame(
        {
            "symbol": ["ARM"] * 3,
            "session_date": [D(2025, 12, 31), D(2026, 1, 2), D(2025, 12, 30)],
            "close": [100.0, 1000.0, 99.0],
        }
    )
    incoming = closes_frame([100.5, 101.0])
    previous = previous_bars(history, incoming)
    assert previous.sort("session_date").rows() == [("ARM", D(2025, 12, 31), 100.0), ("ARM", D(2026, 1, 2), 1000.0)]
    assert flags(incoming, previous) == [(True, True, False), (False, False, False)]


def test_move_explained_by_a_split_is_not_large() -> None:
    split = checked_closes(closes_frame([100.0, 50.2], splits=[0.0, 2.0]))
    assert split["close_move"][1] == pytest.approx(-0.498)
    assert split["is_large_move"].to_list() == [False, False]
    assert split["is_unconfirmed"].to_list() == [False, False]
    # the same halving without a split in the batch is a large, unconfirmed move
    assert flags(closes_frame([100.0, 50.2])) == [(False, False, False), (True, False, True)]


def test_apply_verdict_holds_back_the_symbol_and_quarantines_only_failing_rows() -> None:
    incoming = pl.DataFrame(
        {
            "symbol": ["ARM", "ARM", "ARM", "NVDA", "NVDA"],
            "session_date": [BAR_DATES[0], BAR_DATES[1], BAR_DATES[2], BAR_DATES[0], BAR_DATES[1]],
            "close": [101.0, -102.0, 103.0, 140.0, 141.0],
        }
    )
    reasons = pl.DataFrame(
        [(1, "close_positive; close_at_least_low", True), (2, "move_within_bound", False), (4, "fresh", False)],
        schema=REASON_SCHEMA,
        orient="row",
    )
    accepted, quarantined, blocked = apply_verdict(incoming, reasons, "symbol")
    assert blocked == ["ARM"]
    # only the blocking row is quarantined: ARM's clean row 0 and warned row 2 are held back, not quarantined
    assert quarantined.columns == ["symbol", "session_date", "close", "reasons"]
    assert quarantined.rows() == [("ARM", BAR_DATES[1], -102.0, "close_positive; close_at_least_low")]
    assert accepted.columns == ["symbol", "session_date", "close", "warnings"]
    assert accepted.rows() == [("NVDA", BAR_DATES[0], 140.0, None), ("NVDA", BAR_DATES[1], 141.0, "fresh")]


def test_apply_verdict_keeps_the_incoming_order_of_a_large_batch() -> None:
    # Staging breaks ties between duplicate bars of one fetch by their order, so the split must keep it.
    rng = np.random.default_rng(7)
    rows = 300_000
    incoming = pl.DataFrame(
        {
            "symbol": [f"S{i:03d}" for i in rng.integers(0, 400, rows)],
            "close": rng.random(rows),
        }
    )
    failing = np.sort(rng.choice(rows, 2_000, replace=False))
    reasons = pl.DataFrame(
        [(int(row), "close_positive" if row % 7 == 0 else "fresh", bool(row % 7 == 0)) for row in failing],
        schema=REASON_SCHEMA,
        orient="row",
    )
    accepted, quarantined, blocked = apply_verdict(incoming, reasons, "symbol")
    numbered = incoming.with_row_index("_row")
    assert blocked and len(blocked) < 400
    kept = numbered.filter(~pl.col("symbol").is_in(blocked))
    assert accepted.select("symbol", "close").equals(kept.select("symbol", "close"))
    held = numbered.filter(pl.col("_row").is_in(failing[failing % 7 == 0].tolist()))
    assert quarantined.select("symbol", "close").equals(held.select("symbol", "close"))


def test_apply_verdict_with_only_warnings_accepts_everything() -> None:
    incoming = pl.DataFrame({"pair": ["USDJPY", "USDJPY"], "rate": [157.0, 157.4]})
    reasons = pl.DataFrame([(0, "weekday", False)], schema=REASON_SCHEMA, orient="row")
    accepted, quarantined, blocked = apply_verdict(incoming, reasons, "pair")
    assert blocked == []
    assert quarantined.is_empty()
    assert accepted.rows() == [("USDJPY", 157.0, "weekday"), ("USDJPY", 157.4, None)]


def test_fx_band_and_default_spread() -> None:
    fx = pl.DataFrame(
        {
            "pair": ["USDJPY", "USDJPY", "USDJPY", "USDSEK", "USDSEK", "USDSEK"],
            "session_date": [D(2026, 1, 5), D(2026, 1, 6), D(2026, 1, 7)] * 2,
            "open": [50.0, 400.0, 400.5, 10.5, 10.6, 32.0],
            "high": [50.0, 400.0, 400.5, 10.5, 10.6, 32.0],
            "low": [50.0, 400.0, 400.5, 10.5, 10.6, 32.0],
            "rate": [50.0, 400.0, 400.5, 10.5, 10.6, 32.0],
        }
    )
    # USDJPY has a band [50, 400], bounds included; USDSEK has none: within 3x of its median 10.6
    assert add_fx_checks(fx)["is_in_band"].to_list() == [True, True, False, True, True, False]


def test_apply_verdict_on_a_real_outcome(bars_input: pl.DataFrame) -> None:
    # NVDA's good bars beside ARM's with one blocking break (negative close): ARM is held back entirely.
    nvda = bars_input.with_columns(symbol=pl.lit("NVDA"))
    batch = pl.concat([set_cell(bars_input, MID, close=-103.0), nvda])
    checked = check_bars(batch)
    outcome = validate(BARS, checked, "test-verdict")
    accepted, quarantined, blocked = apply_verdict(checked, outcome.row_reasons, "symbol")
    assert blocked == ["ARM"]
    assert quarantined["session_date"].to_list() == [BAR_DATES[MID]]
    assert accepted["symbol"].to_list() == ["NVDA"] * 5


def test_fx_gap_between_the_warehouse_and_the_batch_is_seen() -> None:
    import datetime as dt

    import polars as pl

    from transforms.quality import add_fx_checks

    batch = pl.DataFrame(
        {
            "pair": "USDJPY",
            "session_date": [dt.date(2026, 1, 8), dt.date(2026, 1, 9)],
            "rate": [150.0, 151.0],
            "open": [150.0, 151.0],
            "high": [151.0, 152.0],
            "low": [149.0, 150.0],
        }
    )
    staged = pl.DataFrame({"pair": ["USDJPY", "USDJPY"], "session_date": [dt.date(2026, 1, 5), dt.date(2026, 1, 6)]})
    checked = add_fx_checks(batch, staged)
    # Tue 01-06 staged, then Thu 01-08: Wed 01-07 is missing; without the warehouse the gap is invisible.
    assert checked["weekdays_since_previous"].to_list() == [2, 1]
    assert add_fx_checks(batch)["weekdays_since_previous"].to_list() == [None, 1]
    assert checked.height == 2 and checked["session_date"].to_list() == batch["session_date"].to_list()


def test_validating_in_parts_gives_the_whole_frames_results_and_failing_rows() -> None:
    # Two failures on different loans, one a duplicated key: parts of at most 2 rows hold one loan each.
    broken = append_copy(set_cell(good_ltv(), 1, ltv=0.9), 3)  # L1 status contradicts LTV; L2 twice on a date
    checked = add_ltv_checks(broken)
    whole = validate(LOAN_LTV, checked, "test-whole")
    parts = validate_in_parts(LOAN_LTV, checked, "test-parts", "loan_id", max_rows=2)
    assert parts.row_reasons.to_dicts() == whole.row_reasons.to_dicts()
    assert sorted(parts.row_reasons["_row"].to_list()) == [1, 3, 5]
    compared = ["check_name", "success", "unexpected_count", "element_count"]
    assert parts.results.select(compared).to_dicts() == whole.results.select(compared).to_dicts()
    assert parts.table_blocked == whole.table_blocked


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="only glibc keeps freed memory to trim")
def test_freed_memory_is_handed_back_after_each_validation(
    bars_input: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After GX runs a suite, glibc is asked to return what pandas freed (a backfill's peak depends on it)."""
    import expectations.gate as gate

    assert gate._malloc_trim is not None
    calls: list[int] = []
    monkeypatch.setattr(gate, "_malloc_trim", lambda pad: calls.append(pad) or 1)
    validate(BARS, check_bars(bars_input), "trim")
    assert calls == [0]


BREAKS_BY_SUITE = [(BARS, bar_checks, BAR_BREAKS), (FX_RATES, fx_checks, FX_BREAKS), (LOAN_LTV, ltv_checks, LTV_BREAKS)]


@pytest.mark.parametrize(("suite", "checks", "breaks"), BREAKS_BY_SUITE, ids=[BARS, FX_RATES, LOAN_LTV])
def test_configurations_read_once_give_gx_own_results(
    suite: str,
    checks: Callable[[], list[Check]],
    breaks: dict[str, Break],
    bars_input: pl.DataFrame,
    fx_input: pl.DataFrame,
    ltv_input: pl.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every breaking case validates to the same results and failing rows as with GX reading each time."""
    import contextlib

    import expectations.gate as gate

    good, derive = {
        BARS: (bars_input, check_bars),
        FX_RATES: (fx_input, check_fx),
        LOAN_LTV: (ltv_input, add_ltv_checks),
    }[suite]
    frames = [derive(breaks[check.name].mutate(good)) for check in checks()]
    once = [validate(suite, frame, "test-once") for frame in frames]
    monkeypatch.setattr(gate, "_one_configuration_each", contextlib.nullcontext)  # GX's own reading
    plain = [validate(suite, frame, "test-plain") for frame in frames]
    for check, a, b in zip(checks(), once, plain, strict=True):
        assert a.results.to_dicts() == b.results.to_dicts(), check.name
        assert a.row_reasons.to_dicts() == b.row_reasons.to_dicts(), check.name
        assert a.table_blocked == b.table_blocked


def test_a_configuration_is_kept_only_inside_a_validation() -> None:
    import great_expectations.expectations as gxe

    from expectations.gate import _one_configuration_each, gx_context

    gx_context()
    first, second = (check.build(gxe) for check in ltv_checks()[:2])
    assert first.configuration is not first.configuration  # outside: built afresh on every reading, as GX does
    with _one_configuration_each():
        kept = first.configuration
        assert first.configuration is kept and second.configuration is not kept
    assert first.configuration is not kept
    assert first.configuration.to_json_dict() == kept.to_json_dict()
