"""Level changes over the daily LTV rows."""

from __future__ import annotations

import polars as pl


def level_changes(ltv: pl.DataFrame) -> pl.DataFrame:
    """Return the sessions on which a loan's level differs from its previous session (grain: loan x change)."""
    return (
        ltv.sort("loan_id", "as_of_date")
        .with_columns(previous_status=pl.col("status").shift(1).over("loan_id"))
        .filter(pl.col("previous_status").is_not_null() & (pl.col("status") != pl.col("previous_status")))
        .select("loan_id", "as_of_date", "previous_status", "status", "ltv", "price")
    )
