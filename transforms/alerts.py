"""Alert rules over the daily LTV rows, in one vectorised pass per run (backfills included)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

LEVEL_RANK = {"ok": 0, "warning": 1, "margin_call": 2, "liquidation": 3}
BREACH_RANK = LEVEL_RANK["margin_call"]

ALERT_SCHEMA: dict[str, pl.DataType] = {
    "alert_key": pl.String(),
    "loan_id": pl.String(),
    "as_of_date": pl.Date(),
    "kind": pl.String(),  # level | recovery | reminder | data_quality | stale_source | run_failed
    "level": pl.String(),
    "previous_level": pl.String(),
    "price_date": pl.Date(),
    "currency": pl.String(),
    "ltv": pl.Float64(),
    "price": pl.Float64(),
    "margin_call_price": pl.Float64(),
    "liquidation_price": pl.Float64(),
    "distance_to_margin_call": pl.Float64(),
    "cure_cash": pl.Float64(),
    "cure_shares": pl.Float64(),
    "episode_start": pl.Date(),
    "cure_deadline": pl.Date(),
    "sessions_left": pl.Int32(),
    "is_unconfirmed": pl.Boolean(),
    "detail": pl.String(),
    "source": pl.String(),
}

PRIOR_SCHEMA: dict[str, pl.DataType] = {
    "loan_id": pl.String(),
    "prior_status": pl.String(),  # the status on the last session before the run's range
    "prior_episode_start": pl.Date(),  # first session of the breach still open then, if any
}

EPISODE_SCHEMA: dict[str, pl.DataType] = {
    "loan_id": pl.String(),
    "as_of_date": pl.Date(),  # the loan's newest session in breach among the alerts
    "episode_start": pl.Date(),  # first session of the breach open then
}
LEVEL_KINDS = ("level", "recovery", "reminder")  # one of them on every session a loan is in breach


def open_episodes(alerts: pl.DataFrame) -> pl.DataFrame:
    """Return where the breach open on each loan's newest alerted session in breach began (grain: loan).

    Every session a loan spends at margin call or above raises one of the level kinds, carrying
    the breach's start; the load keeps the start of a loan whose newest row is that session
    (`marts.open_breaches`), so the next run need not read the loan's history for it.
    """
    return (
        alerts.lazy()
        .select("loan_id", "as_of_date", "kind", "episode_start")
        .filter(pl.col("kind").is_in(LEVEL_KINDS) & pl.col("episode_start").is_not_null())
        .group_by("loan_id")
        .agg(pl.col("as_of_date").max(), pl.col("episode_start").sort_by("as_of_date").last())
        .select([pl.col(n).cast(t) for n, t in EPISODE_SCHEMA.items()])
        .collect()
    )


def _rank(column: str) -> pl.Expr:
    return pl.col(column).replace_strict(LEVEL_RANK, default=None, return_dtype=pl.Int8)


def _key() -> pl.Expr:
    return pl.concat_str(
        [pl.col("loan_id"), pl.col("as_of_date").cast(pl.String), pl.col("kind"), pl.col("level")], separator="/"
    )


def add_episodes(ltv: pl.DataFrame, prior: pl.DataFrame, cure_days: pl.DataFrame, sessions: pl.Series) -> pl.DataFrame:
    """Return LTV rows with `previous_level`, `episode_start`, `cure_deadline`, `sessions_left`.

    A breach episode is a run of sessions at margin call or above; its cure deadline is
    `cure_period_days` NASDAQ sessions after its first session.
    """
    index = pl.DataFrame({"as_of_date": sessions, "_idx": pl.int_range(len(sessions), eager=True, dtype=pl.Int32)})
    # Rows in loan and date order first, and everything that reads the order worked out before the
    # joins (which keep it anyway): the loan as a number, the row before, and where breaches open.
    same_loan = pl.col("_loan") == pl.col("_loan").shift(1)
    ordered = (
        ltv.sort("loan_id", "as_of_date")
        .with_columns(_loan=pl.col("loan_id").rle_id(), _breach=_rank("status") >= BREACH_RANK)
        .with_columns(
            _previous=pl.when(same_loan).then(pl.col("status").shift(1)),
            _opens=pl.col("_breach") & ~(same_loan & pl.col("_breach").shift(1)).fill_null(False),
            _calm_run=(~pl.col("_breach")).cum_sum().over("_loan"),
        )
        # A breach's first session, carried down its rows (a loan's first row opens one if it is in breach).
        .with_columns(_started=pl.when(pl.col("_opens")).then(pl.col("as_of_date")).forward_fill())
        .join(prior, on="loan_id", how="left", maintain_order="left")
        .join(cure_days, on="loan_id", how="left", maintain_order="left")
        .join(index, on="as_of_date", how="left", maintain_order="left")
        .with_columns(previous_level=pl.col("_previous").fill_null(pl.col("prior_status")).fill_null("ok"))
    )
    # A breach open before the range (no calm session in between) started where the prior says.
    carried = (pl.col("_calm_run") == 0) & pl.col("prior_episode_start").is_not_null()
    episodes = ordered.with_columns(
        # Only a row in breach has one (a status the ranks do not know is not a breach).
        episode_start=pl.when(pl.col("_breach")).then(
            pl.when(carried).then(pl.col("prior_episode_start")).otherwise(pl.col("_started"))
        )
    )
    starts = index.rename({"as_of_date": "episode_start", "_idx": "_start_idx"})
    deadlines = index.rename({"as_of_date": "cure_deadline", "_idx": "_deadline_idx"})
    return (
        episodes.join(starts, on="episode_start", how="left", maintain_order="left")
        .with_columns(_deadline_idx=pl.col("_start_idx") + pl.col("cure_period_days"))
        .join(deadlines, on="_deadline_idx", how="left", maintain_order="left")
        .with_columns(sessions_left=(pl.col("_deadline_idx") - pl.col("_idx")).cast(pl.Int32))
        .drop(
            "_loan",
            "_breach",
            "_previous",
            "_opens",
            "_calm_run",
            "_started",
            "_idx",
            "_start_idx",
            "_deadline_idx",
            "prior_status",
            "prior_episode_start",
            "cure_period_days",
        )
    )


def find_level_alerts(
    ltv: pl.DataFrame, prior: pl.DataFrame, cure_days: pl.DataFrame, sessions: pl.Series
) -> pl.DataFrame:
    """Return level, recovery and reminder alerts (grain: loan x as-of date x kind x level).

    `level` when the level rises (also when one is skipped), `recovery` when it falls, and a
    daily `reminder` with the cure deadline while a loan stays at margin call or above.
    """
    # Episodes on the three columns they read; the figures of the ~10% of rows that alert are
    # gathered afterwards, rather than every LTV column carried through the sorts and joins.
    keys = ltv.select("loan_id", "as_of_date", "status").with_row_index("_row")
    rows = add_episodes(keys, prior, cure_days, sessions)
    rank, previous = _rank("status"), _rank("previous_level")
    kind = (
        pl.when(rank > previous)
        .then(pl.lit("level"))
        .when(rank < previous)
        .then(pl.lit("recovery"))
        .when(rank >= BREACH_RANK)
        .then(pl.lit("reminder"))
    )
    alerting = rows.with_columns(kind=kind).filter(pl.col("kind").is_not_null())
    figures = ltv.select([n for n in ALERT_SCHEMA if n in ltv.columns and n not in alerting.columns])
    return (
        pl.concat([alerting, figures.gather(alerting["_row"])], how="horizontal")
        .with_columns(level=pl.col("status"), detail=pl.lit(None, pl.String))
        .with_columns(alert_key=_key())
        .select([pl.col(n).cast(t) for n, t in ALERT_SCHEMA.items()])
    )


def find_operational_alerts(
    ltv: pl.DataFrame, as_of: dt.date, held_back: dict[str, str], currencies: dict[str, str]
) -> pl.DataFrame:
    """Return data-quality alerts for held-back loans and stale-source alerts for `as_of`.

    A source is stale when the row for `as_of` is priced from an older session: no new bar
    came when one was expected.
    """
    stale = ltv.filter((pl.col("as_of_date") == as_of) & (pl.col("sessions_since_price") > 0)).with_columns(
        kind=pl.lit("stale_source"),
        level=pl.lit("stale"),
        previous_level=pl.lit(None, pl.String),
        detail=pl.format("no new price for {} sessions (last price {})", "sessions_since_price", "price_date"),
    )
    held = pl.DataFrame(
        {
            "loan_id": list(held_back),
            "as_of_date": [as_of] * len(held_back),
            "kind": ["data_quality"] * len(held_back),
            "level": ["held_back"] * len(held_back),
            "detail": list(held_back.values()),
            "currency": [currencies.get(loan) for loan in held_back],
        },
        schema={
            "loan_id": pl.String,
            "as_of_date": pl.Date,
            "kind": pl.String,
            "level": pl.String,
            "detail": pl.String,
            "currency": pl.String,
        },
    )
    frames = [frame.with_columns(alert_key=_key()) for frame in (stale, held)]
    return pl.concat(
        [
            f.select(
                [pl.col(n).cast(t) if n in f.columns else pl.lit(None, t).alias(n) for n, t in ALERT_SCHEMA.items()]
            )
            for f in frames
        ]
    )


def route_alerts(alerts: pl.DataFrame, channels: Sequence[tuple[str, str]]) -> pl.DataFrame:
    """Return (alert_key, channel) for each channel an alert goes to (grain: alert x channel).

    A channel takes level alerts and reminders at or above its minimum level, recoveries from
    those levels, and every operational alert.
    """
    table = pl.DataFrame(channels, schema={"channel": pl.String, "min_level": pl.String}, orient="row")
    operational = pl.col("kind").is_in(["data_quality", "stale_source", "run_failed"])
    level_rank = pl.when(pl.col("kind") == "recovery").then(_rank("previous_level")).otherwise(_rank("level"))
    return (
        alerts.select("alert_key", "kind", "level", "previous_level")
        .join(table, how="cross")
        .filter(operational | (level_rank >= _rank("min_level")))
        .select("alert_key", "channel")
    )
