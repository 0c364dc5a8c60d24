"""compute_loan_ltv on tiny literal frames: every expected number is worked out by hand."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from transforms.ltv import COLLATERAL_SCHEMA, LOAN_SCHEMA, LTV_SCHEMA, compute_loan_ltv

D = dt.date
REL = 1e-12
NEW_YEAR = D(2025, 1, 1)  # default accrual start

# NASDAQ sessions used by every test: Mon 2025-03-03 .. Fri 2025-03-07, Mon 2025-03-10 .. Wed 2025-03-12,
# plus Thu 2025-02-06 (used by the accrual test). Weekends are not sessions.
SESSIONS = [
    D(2025, 2, 6),
    D(2025, 3, 3),
    D(2025, 3, 4),
    D(2025, 3, 5),
    D(2025, 3, 6),
    D(2025, 3, 7),
    D(2025, 3, 10),
    D(2025, 3, 11),
    D(2025, 3, 12),
]

PRICE_COLUMNS = {"symbol": pl.String(), "session_date": pl.Date(), "close": pl.Float64(), "source": pl.String()}
FX_COLUMNS = {"pair": pl.String(), "session_date": pl.Date(), "rate": pl.Float64()}


def loan(
    loan_id: str = "L1",
    currency: str = "USD",
    principal: float = 500.0,
    annual_rate: float = 0.0,
    accrual_start: dt.date = NEW_YEAR,
    valuation_window: int = 1,
    warning: float = 0.4,
    margin_call: float = 0.5,
    liquidation: float = 0.6,
    cure_target: float = 0.3,
) -> dict:
    """One loan row (cure period 2 days; levels 40% / 50% / 60%, cure target 30% unless given)."""
    return {
        "loan_id": loan_id,
        "currency": currency,
        "principal": principal,
        "annual_rate": annual_rate,
        "accrual_start": accrual_start,
        "valuation_window": valuation_window,
        "cure_period_days": 2,
        "warning": warning,
        "margin_call": margin_call,
        "liquidation": liquidation,
        "cure_target": cure_target,
    }


def pledge(loan_id: str, symbol: str, shares: float, haircut: float = 0.0, currency: str = "USD") -> dict:
    """One collateral line."""
    return {
        "loan_id": loan_id,
        "symbol": symbol,
        "symbol_currency": currency,
        "shares": shares,
        "haircut": haircut,
    }


def run(
    loans: list[dict],
    collateral: list[dict],
    as_of: list[dt.date],
    prices: list[tuple],
    fx: list[tuple] | None = None,
    stale_after: int = 3,
) -> pl.DataFrame:
    """Build the literal frames, run compute_loan_ltv lazily and collect."""
    out = compute_loan_ltv(
        pl.DataFrame(loans, schema=LOAN_SCHEMA).lazy(),
        pl.DataFrame(collateral, schema=COLLATERAL_SCHEMA).lazy(),
        pl.DataFrame({"session_date": SESSIONS}, schema={"session_date": pl.Date()}).lazy(),
        pl.DataFrame({"as_of_date": as_of}, schema={"as_of_date": pl.Date()}).lazy(),
        pl.DataFrame(prices, schema=PRICE_COLUMNS, orient="row").lazy(),
        pl.DataFrame(fx or [], schema=FX_COLUMNS, orient="row").lazy(),
        stale_after=stale_after,
    )
    assert isinstance(out, pl.LazyFrame)
    return out.collect()


def row(frame: pl.DataFrame, loan_id: str, as_of: dt.date) -> dict:
    """The single output row of a loan on an as-of date."""
    rows = frame.filter((pl.col("loan_id") == loan_id) & (pl.col("as_of_date") == as_of)).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


def test_haircut_reduces_collateral_value_and_raises_trigger_prices() -> None:
    out = run(
        [loan(principal=300.0)],
        [pledge("L1", "ARM", 10.0, haircut=0.2)],
        [D(2025, 3, 3)],
        [("ARM", D(2025, 3, 3), 100.0, "yahoo")],
    )
    r = row(out, "L1", D(2025, 3, 3))
    assert r["collateral_value"] == pytest.approx(800.0, rel=REL)  # 10 * 100 * (1 - 0.2) = 800
    assert r["loan_balance"] == pytest.approx(300.0, rel=REL)  # zero rate
    assert r["ltv"] == pytest.approx(0.375, rel=REL)  # 300 / 800
    assert r["status"] == "ok"  # 0.375 < 0.4
    assert r["price"] == pytest.approx(100.0, rel=REL)
    assert r["fx"] == 1.0
    assert r["fx_date"] is None
    assert r["price_date"] == D(2025, 3, 3)
    assert r["margin_call_price"] == pytest.approx(75.0, rel=REL)  # 300 / (10 * 0.8 * 1 * 0.5) = 300 / 4
    assert r["liquidation_price"] == pytest.approx(62.5, rel=REL)  # 300 / (10 * 0.8 * 1 * 0.6) = 300 / 4.8
    assert r["distance_to_margin_call"] == pytest.approx(0.25, rel=REL)  # 1 - 0.375 / 0.5
    assert r["cure_cash"] == pytest.approx(60.0, rel=REL)  # 300 - 0.3 * 800 = 300 - 240
    assert r["cure_shares"] == pytest.approx(2.5, rel=REL)  # (300 / 0.3 - 800) / (100 * 0.8) = 200 / 80
    assert r["sessions_since_price"] == 0
    assert r["is_stale"] is False
    assert r["source"] == "yahoo"
    assert (r["warning_ltv"], r["margin_call_ltv"], r["liquidation_ltv"], r["cure_target_ltv"]) == (0.4, 0.5, 0.6, 0.3)


def test_fx_converts_usd_collateral_into_yen_loan_and_carries_missing_fx_bar_forward() -> None:
    out = run(
        [loan(currency="JPY", principal=54_000.0)],
        [pledge("L1", "ARM", 10.0, currency="USD")],
        [D(2025, 3, 3), D(2025, 3, 4)],
        [("ARM", D(2025, 3, 3), 100.0, "yahoo"), ("ARM", D(2025, 3, 4), 80.0, "yahoo")],
        # yen per dollar; no FX bar on 2025-03-04, a bar for another pair must be ignored
        [("USDJPY", D(2025, 3, 3), 150.0), ("EURJPY", D(2025, 3, 4), 999.0)],
    )
    first = row(out, "L1", D(2025, 3, 3))
    assert first["currency"] == "JPY"
    assert first["fx"] == pytest.approx(150.0, rel=REL)
    assert first["fx_date"] == D(2025, 3, 3)
    assert first["collateral_value"] == pytest.approx(150_000.0, rel=REL)  # 10 * 100 * 1 * 150
    assert first["ltv"] == pytest.approx(0.36, rel=REL)  # 54_000 / 150_000
    assert first["status"] == "ok"
    assert first["margin_call_price"] == pytest.approx(72.0, rel=REL)  # 54_000 / (10 * 1 * 150 * 0.5) = 54_000 / 750
    assert first["liquidation_price"] == pytest.approx(60.0, rel=REL)  # 54_000 / (10 * 150 * 0.6) = 54_000 / 900
    assert first["distance_to_margin_call"] == pytest.approx(0.28, rel=REL)  # 1 - 0.36 / 0.5
    assert first["cure_cash"] == pytest.approx(9_000.0, rel=REL)  # 54_000 - 0.3 * 150_000 = 54_000 - 45_000
    assert first["cure_shares"] == pytest.approx(
        2.0, rel=REL
    )  # (54_000 / 0.3 - 150_000) / (100 * 150) = 30_000 / 15_000
    assert first["sessions_since_price"] == 0

    carried = row(out, "L1", D(2025, 3, 4))
    assert carried["price"] == pytest.approx(80.0, rel=REL)
    assert carried["price_date"] == D(2025, 3, 4)
    assert carried["fx"] == pytest.approx(150.0, rel=REL)  # last USDJPY bar carried forward
    assert carried["fx_date"] == D(2025, 3, 3)
    assert carried["collateral_value"] == pytest.approx(120_000.0, rel=REL)  # 10 * 80 * 150
    assert carried["ltv"] == pytest.approx(0.45, rel=REL)  # 54_000 / 120_000
    assert carried["status"] == "warning"  # 0.4 <= 0.45 < 0.5
    assert carried["margin_call_price"] == pytest.approx(72.0, rel=REL)  # same balance, same fx
    assert carried["cure_shares"] == pytest.approx(5.0, rel=REL)  # (180_000 - 120_000) / (80 * 150) = 60_000 / 12_000
    assert carried["sessions_since_price"] == 1  # fx one session behind (03-03 -> 03-04), price current
    assert carried["is_stale"] is False


def test_interest_accrues_act_360_and_is_zero_before_accrual_start() -> None:
    out = run(
        [
            loan("ACCRUING", principal=1_000_000.0, annual_rate=0.05, accrual_start=D(2025, 1, 1)),
            loan("NOT_YET", principal=1_000_000.0, annual_rate=0.05, accrual_start=D(2025, 3, 1)),
            loan("SAME_DAY", principal=1_000_000.0, annual_rate=0.05, accrual_start=D(2025, 2, 6)),
        ],
        [pledge(name, "ARM", 1_000.0) for name in ("ACCRUING", "NOT_YET", "SAME_DAY")],
        [D(2025, 2, 6)],
        [("ARM", D(2025, 2, 6), 4_000.0, "yahoo")],
    )
    accruing = row(out, "ACCRUING", D(2025, 2, 6))
    # 2025-01-01 -> 2025-02-06 = 31 + 5 = 36 days: 1_000_000 * (1 + 0.05 * 36 / 360) = 1_005_000
    assert accruing["loan_balance"] == pytest.approx(1_005_000.0, rel=REL)
    assert accruing["collateral_value"] == pytest.approx(4_000_000.0, rel=REL)  # 1_000 * 4_000
    assert accruing["ltv"] == pytest.approx(0.25125, rel=REL)  # 1_005_000 / 4_000_000
    assert accruing["margin_call_price"] == pytest.approx(2_010.0, rel=REL)  # 1_005_000 / (1_000 * 0.5)

    not_yet = row(out, "NOT_YET", D(2025, 2, 6))
    assert not_yet["loan_balance"] == pytest.approx(1_000_000.0, rel=REL)  # as-of before accrual start: principal
    assert not_yet["ltv"] == pytest.approx(0.25, rel=REL)  # 1_000_000 / 4_000_000

    same_day = row(out, "SAME_DAY", D(2025, 2, 6))
    assert same_day["loan_balance"] == pytest.approx(1_000_000.0, rel=REL)  # 0 days accrued


def test_avg_close_window_three_is_mean_of_last_three_closes_or_fewer() -> None:
    out = run(
        [loan("AVG3", principal=340.0, valuation_window=3), loan("LAST", principal=340.0, valuation_window=1)],
        [pledge("AVG3", "ARM", 10.0), pledge("LAST", "ARM", 10.0)],
        [D(2025, 3, 3), D(2025, 3, 4), D(2025, 3, 6), D(2025, 3, 7)],
        [
            ("ARM", D(2025, 3, 3), 90.0, "yahoo"),
            ("ARM", D(2025, 3, 4), 100.0, "yahoo"),
            ("ARM", D(2025, 3, 5), 110.0, "yahoo"),
            ("ARM", D(2025, 3, 6), 130.0, "yahoo"),
            ("MSFT", D(2025, 3, 6), 1_000.0, "yahoo"),  # another symbol must not enter ARM's window
        ],
    )
    only_one = row(out, "AVG3", D(2025, 3, 3))
    assert only_one["price"] == pytest.approx(90.0, rel=REL)  # a single bar so far
    only_two = row(out, "AVG3", D(2025, 3, 4))
    assert only_two["price"] == pytest.approx(95.0, rel=REL)  # (90 + 100) / 2
    full = row(out, "AVG3", D(2025, 3, 6))
    assert full["price"] == pytest.approx(340.0 / 3.0, rel=REL)  # (100 + 110 + 130) / 3 = 113.333...
    assert full["price_date"] == D(2025, 3, 6)
    assert full["collateral_value"] == pytest.approx(3_400.0 / 3.0, rel=REL)  # 10 * 340 / 3
    assert full["ltv"] == pytest.approx(0.3, rel=REL)  # 340 / (3_400 / 3)
    assert full["margin_call_price"] == pytest.approx(68.0, rel=REL)  # 340 / (10 * 0.5)
    # no bar on 03-07: the 03-06 average is carried forward
    carried = row(out, "AVG3", D(2025, 3, 7))
    assert carried["price"] == pytest.approx(340.0 / 3.0, rel=REL)  # (100 + 110 + 130) / 3
    assert carried["price_date"] == D(2025, 3, 6)
    assert carried["sessions_since_price"] == 1

    last = row(out, "LAST", D(2025, 3, 6))
    assert last["price"] == pytest.approx(130.0, rel=REL)  # window 1 = the close itself
    assert last["ltv"] == pytest.approx(340.0 / 1_300.0, rel=REL)  # 340 / (10 * 130)


def test_ltv_exactly_on_margin_call_level_is_margin_call_and_just_below_is_warning() -> None:
    below = math.nextafter(500.0, 0.0)  # 499.99999999999994
    out = run(
        [loan("ON", principal=500.0), loan("BELOW", principal=below), loan("CLEAR", principal=499.0)],
        [pledge("ON", "ARM", 10.0), pledge("BELOW", "ARM", 10.0), pledge("CLEAR", "ARM", 10.0)],
        [D(2025, 3, 3)],
        [("ARM", D(2025, 3, 3), 100.0, "yahoo")],
    )
    on = row(out, "ON", D(2025, 3, 3))
    assert on["collateral_value"] == 1_000.0  # 10 * 100, exact
    assert on["ltv"] == 0.5  # 500 / 1_000, exact in binary
    assert on["status"] == "margin_call"  # >= margin_call
    assert on["distance_to_margin_call"] == 0.0  # 1 - 0.5 / 0.5
    assert on["margin_call_price"] == pytest.approx(100.0, rel=REL)  # 500 / (10 * 0.5) = price itself

    just_below = row(out, "BELOW", D(2025, 3, 3))
    assert just_below["ltv"] < 0.5  # 0.49999999999999994
    assert just_below["status"] == "warning"

    clear = row(out, "CLEAR", D(2025, 3, 3))
    assert clear["ltv"] == pytest.approx(0.499, rel=REL)  # 499 / 1_000
    assert clear["status"] == "warning"
    assert clear["distance_to_margin_call"] == pytest.approx(0.002, rel=1e-9)  # 1 - 0.499 / 0.5


def test_multi_ticker_collateral_sums_lines_and_nulls_single_ticker_fields() -> None:
    out = run(
        [loan(principal=600.0)],
        [pledge("L1", "ARM", 10.0), pledge("L1", "MSFT", 5.0, haircut=0.5)],
        [D(2025, 3, 4)],
        [
            ("ARM", D(2025, 3, 4), 100.0, "yahoo"),
            ("MSFT", D(2025, 3, 3), 200.0, "csv"),  # no MSFT bar on 03-04: carried forward
        ],
    )
    r = row(out, "L1", D(2025, 3, 4))
    assert r["collateral_value"] == pytest.approx(1_500.0, rel=REL)  # 10 * 100 * 1 + 5 * 200 * (1 - 0.5) = 1_000 + 500
    assert r["loan_balance"] == pytest.approx(600.0, rel=REL)
    assert r["ltv"] == pytest.approx(0.4, rel=REL)  # 600 / 1_500
    assert r["status"] == "warning"
    assert r["distance_to_margin_call"] == pytest.approx(0.2, rel=REL)  # 1 - 0.4 / 0.5
    assert r["cure_cash"] == pytest.approx(150.0, rel=REL)  # 600 - 0.3 * 1_500 = 600 - 450
    for name in ("price", "fx", "margin_call_price", "liquidation_price", "cure_shares", "fx_date"):
        assert r[name] is None, name
    assert r["price_date"] == D(2025, 3, 3)  # the oldest line's bar
    assert r["sessions_since_price"] == 1  # MSFT one session behind
    assert r["is_stale"] is False
    assert r["source"] == "csv+yahoo"


def test_price_carried_forward_is_stale_after_more_than_stale_after_sessions() -> None:
    out = run(
        [loan("USD"), loan("JPY", currency="JPY", principal=75_000.0)],
        [pledge("USD", "ARM", 10.0), pledge("JPY", "ARM", 10.0, currency="USD")],
        [D(2025, 3, 6), D(2025, 3, 7), D(2025, 3, 10)],
        [
            ("ARM", D(2025, 3, 3), 100.0, "yahoo"),
            ("ARM", D(2025, 3, 10), 110.0, "yahoo"),
        ],
        [("USDJPY", D(2025, 3, 3), 150.0), ("USDJPY", D(2025, 3, 4), 150.0)],
        stale_after=3,
    )
    three = row(out, "USD", D(2025, 3, 6))
    assert three["price_date"] == D(2025, 3, 3)
    assert three["price"] == pytest.approx(100.0, rel=REL)  # carried forward
    assert three["sessions_since_price"] == 3  # 03-04, 03-05, 03-06
    assert three["is_stale"] is False  # 3 is not > 3
    four = row(out, "USD", D(2025, 3, 7))
    assert four["sessions_since_price"] == 4  # 03-04 .. 03-07
    assert four["is_stale"] is True
    fresh = row(out, "USD", D(2025, 3, 10))
    assert fresh["price_date"] == D(2025, 3, 10)
    assert fresh["sessions_since_price"] == 0
    assert fresh["is_stale"] is False

    # yen loan: price fresh on 03-10 but the last USDJPY bar is 03-04, four sessions behind (03-05, 03-06, 03-07, 03-10)
    fx_old = row(out, "JPY", D(2025, 3, 10))
    assert fx_old["fx_date"] == D(2025, 3, 4)
    assert fx_old["price_date"] == D(2025, 3, 10)
    assert fx_old["sessions_since_price"] == 4  # max(price 0, fx 4)
    assert fx_old["is_stale"] is True
    assert fx_old["collateral_value"] == pytest.approx(165_000.0, rel=REL)  # 10 * 110 * 150
    fx_ok = row(out, "JPY", D(2025, 3, 7))
    assert fx_ok["sessions_since_price"] == 4  # price 03-03 is 4 behind, fx 03-04 is 3 behind
    assert fx_ok["is_stale"] is True


def test_no_row_for_a_loan_day_without_any_price() -> None:
    out = run(
        [loan("ONE"), loan("TWO"), loan("YEN", currency="JPY")],
        [
            pledge("ONE", "ARM", 10.0),
            pledge("TWO", "ARM", 10.0),
            pledge("TWO", "NEWCO", 10.0),  # NEWCO's first bar is 03-05
            pledge("YEN", "ARM", 10.0),  # no USDJPY bar before 03-04
        ],
        [D(2025, 3, 3), D(2025, 3, 4), D(2025, 3, 5)],
        [
            ("ARM", D(2025, 3, 4), 100.0, "yahoo"),
            ("ARM", D(2025, 3, 5), 100.0, "yahoo"),
            ("NEWCO", D(2025, 3, 5), 50.0, "yahoo"),
        ],
        [("USDJPY", D(2025, 3, 5), 150.0)],
    )
    got = sorted(out.select("loan_id", "as_of_date").rows())
    assert got == [
        ("ONE", D(2025, 3, 4)),  # ARM's first bar is 03-04: nothing on 03-03
        ("ONE", D(2025, 3, 5)),
        ("TWO", D(2025, 3, 5)),  # a line without a price drops the whole loan-day
        ("YEN", D(2025, 3, 5)),  # no FX before 03-05
    ]
    assert row(out, "TWO", D(2025, 3, 5))["collateral_value"] == pytest.approx(1_500.0, rel=REL)  # 10*100 + 10*50


def test_status_is_ok_warning_margin_call_liquidation_for_increasing_ltv() -> None:
    days = [D(2025, 3, 3), D(2025, 3, 4), D(2025, 3, 5), D(2025, 3, 6)]
    out = run(
        [loan(principal=500.0)],
        [pledge("L1", "ARM", 10.0)],
        days,
        [
            ("ARM", days[0], 200.0, "yahoo"),
            ("ARM", days[1], 110.0, "yahoo"),
            ("ARM", days[2], 90.0, "yahoo"),
            ("ARM", days[3], 80.0, "yahoo"),
        ],
    )
    assert out["status"].to_list() == ["ok", "warning", "margin_call", "liquidation"]
    assert out["ltv"].to_list() == pytest.approx(
        [
            0.25,  # 500 / 2_000
            500.0 / 1_100.0,  # 0.4545...
            500.0 / 900.0,  # 0.5555...
            0.625,  # 500 / 800
        ],
        rel=REL,
    )
    assert out["cure_cash"].to_list() == pytest.approx(
        [
            0.0,  # max(0, 500 - 0.3 * 2_000 = -100)
            170.0,  # 500 - 0.3 * 1_100 = 500 - 330
            230.0,  # 500 - 0.3 * 900 = 500 - 270
            260.0,  # 500 - 0.3 * 800 = 500 - 240
        ],
        rel=REL,
    )
    assert out["cure_shares"].to_list() == pytest.approx(
        [
            0.0,  # max(0, (500 / 0.3 - 2_000) / 200) = max(0, -333.3 / 200)
            (5_000.0 / 3.0 - 1_100.0) / 110.0,  # (1_666.67 - 1_100) / 110 = 5.1515...
            (5_000.0 / 3.0 - 900.0) / 90.0,  # 766.67 / 90 = 8.5185...
            (5_000.0 / 3.0 - 800.0) / 80.0,  # 866.67 / 80 = 10.8333...
        ],
        rel=REL,
    )
    # trigger prices do not depend on the price: 500 / (10 * 0.5) = 100 and 500 / (10 * 0.6) = 83.33...
    assert out["margin_call_price"].to_list() == pytest.approx([100.0] * 4, rel=REL)
    assert out["liquidation_price"].to_list() == pytest.approx([500.0 / 6.0] * 4, rel=REL)


def test_output_matches_ltv_schema_with_one_row_per_loan_and_as_of_date() -> None:
    days = [D(2025, 3, 3), D(2025, 3, 4), D(2025, 3, 5)]
    out = run(
        [loan("B"), loan("A", currency="JPY", principal=60_000.0, valuation_window=3)],
        [pledge("A", "ARM", 10.0), pledge("B", "ARM", 5.0), pledge("B", "MSFT", 1.0, haircut=0.1)],
        days,
        [("ARM", d, 100.0, "yahoo") for d in days] + [("MSFT", d, 400.0, "yahoo") for d in days],
        [("USDJPY", d, 150.0) for d in days],
    )
    assert list(out.schema.items()) == list(LTV_SCHEMA.items())
    assert out.height == 6
    assert out.select("loan_id", "as_of_date").rows() == [(loan_id, d) for loan_id in ("A", "B") for d in days]
    assert out.select("loan_id", "as_of_date").is_duplicated().sum() == 0


def test_shares_follow_every_split_after_the_date_they_are_stated_at() -> None:
    from transforms.ltv import adjust_shares_for_splits

    collateral = pl.DataFrame(
        [
            {
                "loan_id": "a",
                "symbol": "ARM",
                "symbol_currency": "USD",
                "shares": 1000.0,
                "haircut": 0.0,
                "shares_as_of": dt.date(2025, 1, 2),
            },
            {
                "loan_id": "b",
                "symbol": "ARM",
                "symbol_currency": "USD",
                "shares": 1000.0,
                "haircut": 0.0,
                "shares_as_of": dt.date(2025, 7, 1),
            },
            {
                "loan_id": "b",
                "symbol": "NVDA",
                "symbol_currency": "USD",
                "shares": 10.0,
                "haircut": 0.0,
                "shares_as_of": dt.date(2025, 7, 1),
            },
        ],
        schema=COLLATERAL_SCHEMA,
    )
    splits = pl.DataFrame(
        {
            "symbol": ["ARM", "ARM", "NVDA", "ARM"],
            "session_date": [dt.date(2025, 3, 3), dt.date(2025, 9, 1), dt.date(2024, 6, 10), dt.date(2025, 9, 2)],
            "stock_splits": [2.0, 3.0, 10.0, 0.0],
        }
    )
    adjusted = adjust_shares_for_splits(collateral, splits).sort("loan_id", "symbol")
    # a: 1000 x 2 (March) x 3 (September) = 6000; b: stated in July, only September's 3-for-1 = 3000;
    # NVDA's split predates b's statement: unchanged; a 0.0 ratio is "no split".
    assert adjusted["shares"].to_list() == [6000.0, 3000.0, 10.0]
    assert adjusted.columns == collateral.columns


def test_split_adjusted_lines_keep_the_book_order() -> None:
    # A loan's collateral value is summed in the book's line order: the same bits in every run.
    from transforms.ltv import adjust_shares_for_splits

    rng = np.random.default_rng(11)
    lines = 60_000
    collateral = pl.DataFrame(
        {
            "loan_id": [f"L{i:05d}" for i in rng.integers(0, 20_000, lines)],
            "symbol": [f"S{i:03d}" for i in rng.integers(0, 500, lines)],
            "symbol_currency": "USD",
            "shares": rng.integers(1, 10_000, lines).astype(float),
            "haircut": 0.0,
            "shares_as_of": None,
        },
        schema=COLLATERAL_SCHEMA,
    ).unique(["loan_id", "symbol"], maintain_order=True)  # a line per loan and symbol, in no sorted order
    splits = pl.DataFrame(
        {"symbol": [f"S{i:03d}" for i in range(0, 500, 3)], "session_date": dt.date(2025, 3, 3), "stock_splits": 2.0}
    )
    adjusted = adjust_shares_for_splits(collateral, splits)
    assert adjusted.select("loan_id", "symbol").equals(collateral.select("loan_id", "symbol"))
    doubled = collateral["symbol"].str.slice(1).cast(pl.Int32) % 3 == 0
    expected = collateral.select(pl.when(doubled).then(pl.col("shares") * 2).otherwise(pl.col("shares")))
    assert adjusted["shares"].equals(expected.to_series())


def test_a_price_grid_built_a_few_keys_at_a_time_gives_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    symbols = ["AAA", "BBB", "CCC", "DDD", "EEE"]
    loans = [loan(f"L{i}", principal=100.0 + i, valuation_window=1 + i % 3) for i in range(7)]
    lines = [pledge(f"L{i}", symbols[(i + j) % 5], 1.0 + j) for i in range(7) for j in range(1 + i % 3)]
    # Bars with gaps (a symbol missing on some sessions) so carried-forward prices and lags differ by key.
    prices = [
        (symbol, day, 10.0 + k * 3 + d * 0.5, "yahoo")
        for k, symbol in enumerate(symbols)
        for d, day in enumerate(SESSIONS)
        if (k + d) % 4
    ]
    whole = run(loans, lines, SESSIONS[1:], prices)
    monkeypatch.setattr("transforms.ltv.GRID_KEYS", 2)
    assert run(loans, lines, SESSIONS[1:], prices).equals(whole)
    assert whole.height > 7 * 5 and whole["sessions_since_price"].max() >= 1


def test_a_loan_computed_alone_or_with_others_gives_the_same_bits() -> None:
    """A partition of one loan and a partition of many give a loan the same figures to the last bit.

    A one-row frame of loan terms joined to every row must not become a broadcast value: Polars
    divides by such a value through its reciprocal, which rounds differently.
    """
    days = [D(2025, 1, 1) + dt.timedelta(days=i) for i in range(200)]
    sessions = [day for day in days if day.weekday() < 5]

    def compute(loan_rows: list[dict], line_rows: list[dict]) -> pl.DataFrame:
        prices = [
            (symbol, day, 7.0 + k * 1.37 + d * 0.113, "yahoo")
            for k, symbol in enumerate("ABC")
            for d, day in enumerate(sessions)
        ]
        return compute_loan_ltv(
            pl.DataFrame(loan_rows, schema=LOAN_SCHEMA).lazy(),
            pl.DataFrame(line_rows, schema=COLLATERAL_SCHEMA).lazy(),
            pl.DataFrame({"session_date": sessions}, schema={"session_date": pl.Date()}).lazy(),
            pl.DataFrame({"as_of_date": sessions}, schema={"as_of_date": pl.Date()}).lazy(),
            pl.DataFrame(prices, schema=PRICE_COLUMNS, orient="row").lazy(),
            pl.DataFrame([], schema=FX_COLUMNS, orient="row").lazy(),
        ).collect()

    loans = [
        loan(f"L{i}", principal=1000.0 + 77.7 * i, annual_rate=0.031 + i / 997, cure_target=0.3 + i / 101)
        for i in range(4)
    ]
    lines = [pledge(f"L{i}", "ABC"[i % 3], 123.0 + i * 11.1, haircut=0.05 * i) for i in range(4)]
    together = compute(loans, lines)
    for one_loan, one_line in zip(loans, lines, strict=True):
        alone = compute([one_loan], [one_line])
        assert alone.height == len(sessions)
        assert alone.equals(together.filter(pl.col("loan_id") == one_loan["loan_id"]))
