"""Stress scenarios: LTV, level and cure cash under price and FX shocks (pure Polars)."""

from __future__ import annotations

import polars as pl

from transforms.ltv import level_expr

STRESS_SCHEMA: dict[str, pl.DataType] = {
    "loan_id": pl.String(),
    "as_of_date": pl.Date(),
    "price_shock": pl.Float64(),
    "fx_shock": pl.Float64(),
    "currency": pl.String(),
    "collateral_value": pl.Float64(),
    "loan_balance": pl.Float64(),
    "ltv": pl.Float64(),
    "status": pl.String(),
    "cure_cash": pl.Float64(),
}


def scenarios(price_shocks: list[float], fx_shocks: list[float]) -> pl.DataFrame:
    """Return the scenario grid: price shocks alone, and with every FX shock (grain: price x FX shock).

    `is_fx` marks the rows that apply only to loans with collateral in another currency.
    """
    prices = sorted(set(price_shocks), reverse=True)
    alone = [(p, 0.0, False) for p in prices]
    combined = [(p, f, True) for p in [0.0, *prices] for f in sorted(set(fx_shocks), reverse=True) if f != 0.0]
    return pl.DataFrame(alone + combined, schema=["price_shock", "fx_shock", "is_fx"], orient="row")


def stress_loans(
    ltv: pl.DataFrame, foreign: pl.DataFrame, price_shocks: list[float], fx_shocks: list[float]
) -> pl.DataFrame:
    """Return each loan's LTV, level and cure cash under every scenario (grain: loan x as-of date x scenario).

    `foreign` (loan_id, as_of_date, foreign_share) is the part of the collateral's value that is
    in another currency than the loan's; an FX shock moves only that part.
    """
    base = ltv.join(foreign, on=["loan_id", "as_of_date"], how="left").with_columns(
        pl.col("foreign_share").fill_null(0.0),
        warning=pl.col("warning_ltv"),
        margin_call=pl.col("margin_call_ltv"),
        liquidation=pl.col("liquidation_ltv"),
    )
    stressed = (
        base.join(scenarios(price_shocks, fx_shocks), how="cross")
        .filter(~pl.col("is_fx") | (pl.col("foreign_share") > 0))
        .with_columns(
            collateral_value=pl.col("collateral_value")
            * (1 + pl.col("price_shock"))
            * (1 + pl.col("foreign_share") * pl.col("fx_shock"))
        )
        .with_columns(ltv=pl.col("loan_balance") / pl.col("collateral_value"))
        .with_columns(
            status=level_expr(pl.col("ltv")),
            cure_cash=(pl.col("loan_balance") - pl.col("cure_target_ltv") * pl.col("collateral_value")).clip(
                lower_bound=0
            ),
        )
    )
    return stressed.select([pl.col(name).cast(dtype) for name, dtype in STRESS_SCHEMA.items()]).sort(
        "loan_id", "as_of_date", pl.col("fx_shock"), pl.col("price_shock"), descending=[False, False, True, True]
    )
