"""Forward-looking risk: EWMA volatility, path probabilities, VaR, stress scenarios, on tiny literal frames."""

from __future__ import annotations

import datetime as dt
import math
from statistics import NormalDist

import numpy as np
import polars as pl
import pytest

from marginwatch import calendar
from transforms.paths import HORIZONS, NormalPaths, bootstrap_chunk, bootstrap_uniforms
from transforms.risk import RiskModel, collateral_values, compute_loan_risk
from transforms.stress import scenarios, stress_loans
from transforms.volatility import ewma_variance, return_grid

SESSIONS = calendar.sessions_between(dt.date(2022, 1, 3), dt.date(2025, 12, 31)).to_list()
CURE = pl.DataFrame(
    {"loan_id": ["a", "b"], "cure_period_days": [3, 2]}, schema={"loan_id": pl.String, "cure_period_days": pl.Int32}
)


def walk(loan: str, vol: float, seed: int, sessions: list[dt.date] = SESSIONS) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    value = 1e9 * np.exp(np.cumsum(rng.standard_normal(len(sessions)) * vol))
    return pl.DataFrame({"loan_id": loan, "session_date": sessions, "value": value, "foreign_value": 0.0})


def ltv_rows(values: pl.DataFrame, days: list[dt.date], balance: float = 4e8) -> pl.DataFrame:
    return (
        values.filter(pl.col("session_date").is_in(days))
        .rename({"session_date": "as_of_date"})
        .select(
            "loan_id",
            "as_of_date",
            currency=pl.lit("USD"),
            price=pl.lit(100.0),
            ltv=balance / pl.col("value"),
            warning_ltv=pl.lit(0.4),
            margin_call_ltv=pl.lit(0.5),
            liquidation_ltv=pl.lit(0.65),
        )
    )


def test_ewma_variance_is_the_normalised_riskmetrics_weighting_of_past_squares() -> None:
    returns = np.array([[np.nan, 0.01, -0.02, 0.03, 0.005]])
    variance, count = ewma_variance(returns, 0.94, 3, 2)
    weights = np.array([1.0, 0.94, 0.94**2])
    squares = np.array([0.005, 0.03, -0.02]) ** 2  # newest first
    assert variance[0, 4] == pytest.approx((weights * squares).sum() / weights.sum(), rel=1e-15)
    assert count[0].tolist() == [0, 1, 2, 3, 3]
    assert np.isnan(variance[0, 1])  # one return is below the minimum of two


def test_one_session_margin_call_chance_matches_the_normal_law() -> None:
    normal = NormalPaths.simulate(10_000, 0.94, 7, 0.99)
    # A fall of one daily sigma or more tomorrow has probability Phi(-1) = 15.87%.
    assert normal.hit_probability(1, np.array([-1.0]))[0] == pytest.approx(NormalDist().cdf(-1), abs=0.012)
    assert normal.return_quantile[1] == pytest.approx(NormalDist().inv_cdf(0.01), abs=0.08)


def test_hit_chances_grow_with_the_horizon_and_shrink_with_the_distance() -> None:
    normal = NormalPaths.simulate(10_000, 0.94, 7, 0.99)
    limits = np.array([-0.5, -1.0, -2.0, -4.0])
    by_horizon = np.array([normal.hit_probability(h, limits) for h in HORIZONS])
    assert (np.diff(by_horizon, axis=0) >= 0).all()
    assert (np.diff(by_horizon, axis=1) <= 0).all()


def test_a_bootstrap_from_normal_residuals_agrees_with_the_normal_simulation() -> None:
    rng = np.random.default_rng(3)
    pools = rng.standard_normal((2, 5_000))
    sizes = np.array([5_000, 5_000])
    limits = {"margin_call": np.array([-1.0, -3.0])}
    p, q = bootstrap_chunk(pools, sizes, bootstrap_uniforms(10_000, 11), limits, 0.94, 0.99)
    normal = NormalPaths.simulate(10_000, 0.94, 7, 0.99)
    for h in HORIZONS:
        assert p["margin_call"][h] == pytest.approx(normal.hit_probability(h, limits["margin_call"]), abs=0.03)
    assert q[10][0] == pytest.approx(normal.return_quantile[10], abs=0.35)


def test_a_bootstrap_draws_only_the_real_part_of_a_short_pool() -> None:
    pools = np.array([[-2.0, -2.0, 99.0, 99.0]])  # only two real residuals, both a fall of two sigmas
    p, _ = bootstrap_chunk(pools, np.array([2]), bootstrap_uniforms(10_000, 1), {"x": np.array([-1.9])}, 0.94, 0.99)
    assert p["x"][1][0] == 1.0


def test_risk_rows_cover_every_loan_day_and_method_and_are_reproducible() -> None:
    values = pl.concat([walk("a", 0.03, 1), walk("b", 0.01, 2)])
    days = SESSIONS[-20:]
    risk = compute_loan_risk(ltv_rows(values, days), values, SESSIONS, CURE, RiskModel())
    assert risk.height == 2 * 20 * 2
    assert risk.equals(compute_loan_risk(ltv_rows(values, days), values, SESSIONS, CURE, RiskModel()))
    other_seed = compute_loan_risk(ltv_rows(values, days), values, SESSIONS, CURE, RiskModel(seed=1))
    assert not risk["p_margin_call_21d"].equals(other_seed["p_margin_call_21d"])
    for level in ("margin_call", "liquidation"):
        chances = risk.select([f"p_{level}_{h}d" for h in HORIZONS]).to_numpy()
        assert ((chances >= 0) & (chances <= 1)).all() and (np.diff(chances, axis=1) >= 0).all()
    assert (risk["p_liquidation_21d"] <= risk["p_margin_call_21d"]).all()
    volatile = risk.filter(pl.col("loan_id") == "a")["sigma_1d"].mean()
    calm = risk.filter(pl.col("loan_id") == "b")["sigma_1d"].mean()
    assert volatile == pytest.approx(0.03, rel=0.25) and calm == pytest.approx(0.01, rel=0.25)


def test_a_day_computed_alone_from_its_lookback_equals_the_same_day_in_a_long_run() -> None:
    values = walk("a", 0.02, 5)
    model = RiskModel()
    last = SESSIONS[-1]
    long = compute_loan_risk(ltv_rows(values, SESSIONS[-300:]), values, SESSIONS, CURE, model)
    window = SESSIONS[-1 - model.lookback_sessions :]
    alone = compute_loan_risk(
        ltv_rows(values, [last]), values.filter(pl.col("session_date").is_in(window)), window, CURE, model
    )
    assert long.filter(pl.col("as_of_date") == last).equals(alone)  # bit for bit, not approximately


def test_var_and_days_of_cover_follow_the_volatility() -> None:
    values = walk("a", 0.02, 9)
    risk = compute_loan_risk(ltv_rows(values, [SESSIONS[-1]]), values, SESSIONS, CURE, RiskModel())
    row = risk.filter(pl.col("method") == "ewma_mc").row(0, named=True)
    value, sigma = row["collateral_value"], row["sigma_1d"]
    assert row["var_1d_99"] == pytest.approx(value * (1 - math.exp(NormalDist().inv_cdf(0.01) * sigma)), rel=0.05)
    assert row["var_10d_99"] > row["var_1d_99"] * 2.5  # roughly the square root of ten, fatter with EWMA paths
    ltv = 4e8 / value
    assert row["days_of_cover"] == pytest.approx(-math.log(ltv / 0.5) / sigma, rel=1e-12)
    assert row["fall_to_margin_call"] == pytest.approx(1 - ltv / 0.5, rel=1e-12)
    assert row["margin_call_price"] == pytest.approx(100.0 * ltv / 0.5, rel=1e-12)
    assert row["cure_period_days"] == 3


def test_a_loan_past_its_level_is_certain_to_be_there_and_has_no_cover() -> None:
    values = walk("a", 0.02, 9)
    balance = float(values["value"][-1]) * 0.55  # LTV 55%: past the margin call, short of liquidation
    risk = compute_loan_risk(ltv_rows(values, [SESSIONS[-1]], balance), values, SESSIONS, CURE, RiskModel())
    for row in risk.iter_rows(named=True):
        assert row["p_margin_call_1d"] == 1.0 and row["days_of_cover"] == 0.0 and row["fall_to_margin_call"] == 0.0
        assert 0 < row["p_liquidation_21d"] < 1


def test_too_little_history_gives_no_figures_rather_than_wrong_ones() -> None:
    short = SESSIONS[:15]
    values = walk("a", 0.02, 9, short)
    risk = compute_loan_risk(ltv_rows(values, [short[-1]]), values, short, CURE, RiskModel())
    assert risk["returns_used"].to_list() == [14, 14]
    assert risk["sigma_1d"].null_count() == 2 and risk["p_margin_call_10d"].null_count() == 2
    assert risk["fall_to_margin_call"].null_count() == 0


def test_multi_ticker_collateral_uses_the_joint_history() -> None:
    sessions = SESSIONS[-400:]
    rng = np.random.default_rng(4)
    moves = np.cumsum(rng.standard_normal(len(sessions)) * 2.0)
    prices = pl.concat(
        [
            pl.DataFrame({"symbol": "UP", "session_date": sessions, "close": 100 + moves}),
            pl.DataFrame({"symbol": "DOWN", "session_date": sessions, "close": 100 - moves}),
        ]
    ).with_columns(source=pl.lit("test"), is_unconfirmed=pl.lit(False))
    loans = pl.DataFrame(
        {"loan_id": ["hedged", "single"], "currency": ["USD", "USD"], "valuation_window": [1, 1]},
        schema={"loan_id": pl.String, "currency": pl.String, "valuation_window": pl.Int32},
    )
    collateral = pl.DataFrame(
        {
            "loan_id": ["hedged", "hedged", "single"],
            "symbol": ["UP", "DOWN", "UP"],
            "symbol_currency": ["USD"] * 3,
            "shares": [1e6, 1e6, 1e6],
            "haircut": [0.0] * 3,
        }
    )
    fx = pl.DataFrame(schema={"pair": pl.String, "session_date": pl.Date, "rate": pl.Float64})
    values = collateral_values(loans, collateral, sessions, prices, fx)
    grid = return_grid(values, sessions)
    variance, _ = ewma_variance(grid.returns, 0.94, 250, 20)
    hedged, single = np.sqrt(variance[:, -1])
    # Two lines that move against each other exactly: each is volatile, the basket is not.
    assert single > 0.01
    assert hedged < 1e-12


def test_a_yen_loan_on_dollar_shares_carries_the_currency_risk() -> None:
    sessions = SESSIONS[-300:]
    rng = np.random.default_rng(8)
    prices = pl.DataFrame({"symbol": "ARM", "session_date": sessions, "close": 100.0}).with_columns(
        source=pl.lit("test"), is_unconfirmed=pl.lit(False)
    )
    fx = pl.DataFrame(
        {"pair": "USDJPY", "session_date": sessions, "rate": 150 * np.exp(np.cumsum(rng.standard_normal(300) * 0.01))}
    )
    loans = pl.DataFrame(
        {"loan_id": ["yen"], "currency": ["JPY"], "valuation_window": [1]},
        schema={"loan_id": pl.String, "currency": pl.String, "valuation_window": pl.Int32},
    )
    collateral = pl.DataFrame(
        {"loan_id": ["yen"], "symbol": ["ARM"], "symbol_currency": ["USD"], "shares": [1e6], "haircut": [0.0]}
    )
    values = collateral_values(loans, collateral, sessions, prices, fx)
    assert values["foreign_value"].equals(values["value"])
    variance, _ = ewma_variance(return_grid(values, sessions).returns, 0.94, 250, 20)
    assert math.sqrt(variance[0, -1]) == pytest.approx(0.01, rel=0.3)  # a flat price, a moving yen


def stress_input(foreign_share: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    day = dt.date(2026, 3, 2)
    ltv = pl.DataFrame(
        {
            "loan_id": ["l"],
            "as_of_date": [day],
            "currency": ["JPY"],
            "collateral_value": [100.0],
            "loan_balance": [40.0],
            "warning_ltv": [0.45],
            "margin_call_ltv": [0.5],
            "liquidation_ltv": [0.65],
            "cure_target_ltv": [0.35],
        }
    )
    return ltv, pl.DataFrame({"loan_id": ["l"], "as_of_date": [day], "foreign_share": [foreign_share]})


def test_stress_rows_give_ltv_level_and_cure_cash_under_each_price_shock() -> None:
    stress = stress_loans(*stress_input(0.0), [-0.1, -0.2, -0.4], [-0.1])
    assert stress["price_shock"].to_list() == [-0.1, -0.2, -0.4]  # no FX rows for a loan in its own currency
    assert stress["fx_shock"].to_list() == [0.0, 0.0, 0.0]
    assert stress["ltv"].to_list() == pytest.approx([40 / 90, 40 / 80, 40 / 60])
    assert stress["status"].to_list() == ["ok", "margin_call", "liquidation"]
    assert stress["cure_cash"].to_list() == pytest.approx([max(0, 40 - 0.35 * 90), 40 - 0.35 * 80, 40 - 0.35 * 60])


def test_an_fx_shock_moves_only_the_foreign_part_of_the_collateral() -> None:
    stress = stress_loans(*stress_input(0.5), [-0.2], [-0.1])
    rows = {(r["price_shock"], r["fx_shock"]): r["collateral_value"] for r in stress.iter_rows(named=True)}
    assert rows == pytest.approx({(-0.2, 0.0): 80.0, (0.0, -0.1): 95.0, (-0.2, -0.1): 80.0 * 0.95})


def test_the_scenario_grid_lists_price_shocks_alone_then_with_each_fx_shock() -> None:
    grid = scenarios([-0.2, -0.1, -0.2], [-0.1, 0.0])
    assert grid.rows() == [
        (-0.1, 0.0, False),
        (-0.2, 0.0, False),
        (0.0, -0.1, True),
        (-0.1, -0.1, True),
        (-0.2, -0.1, True),
    ]
