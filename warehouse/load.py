"""Reads the pipeline needs and the one transaction that publishes a run."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from marginwatch.faults import crash_point
from transforms.alerts import PRIOR_SCHEMA
from transforms.staging import FX_SCHEMA, PRICE_SCHEMA

BREACH_STATUSES = ("margin_call", "liquidation")
BREACH_DAYS = f"status IN {BREACH_STATUSES}"  # the rows `marts.margin_call_days` keeps


@dataclass(frozen=True)
class RunOutput:
    """Everything one run publishes."""

    raw: pl.DataFrame | list[Path]  # every bar fetched, or (a large run) its Parquet files
    prices: pl.DataFrame | list[Path]  # accepted staging rows, or (a large run) their Parquet files
    fx_rates: pl.DataFrame
    ltv: pl.DataFrame | list[Path]  # rows of the loans whose partition this run replaces, or their Parquet files
    ltv_loan_ids: list[str]
    quarantined: pl.DataFrame  # raw bars held back, with `reasons`
    dq_results: pl.DataFrame  # one row per expectation and suite
    alerts: pl.DataFrame | list[Path] | None = None  # alert records, with subject and body, or their Parquet files
    outbox: pl.DataFrame | None = None  # (alert_key, channel) to deliver
    stress: pl.DataFrame | None = None  # stress rows of the same loans and dates as `ltv`; None: not computed
    risk: pl.DataFrame | None = None  # risk rows of the same loans and dates as `ltv`; None: not computed
    # The rows of `ltv` the kept tables take (`kept_rows`), set aside apart by a large run so the load
    # need not read every loan-day again; None: taken from `ltv`.
    ltv_newest: list[Path] | None = None
    ltv_breaches: list[Path] | None = None
    # Where the breach open on each loan's newest computed row began, as the run's alert rules found it
    # (`transforms.alerts.open_episodes`); None, or a loan it leaves out: read from the loan's history.
    episodes: pl.DataFrame | None = None


def kept_rows(ltv: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the LTV rows the kept tables take: each loan's newest, and those at margin call or liquidation."""
    newest = ltv.filter(pl.col("as_of_date") == pl.col("as_of_date").max().over("loan_id"))
    return newest, ltv.filter(pl.col("status").is_in(BREACH_STATUSES))


@dataclass
class RunRecord:
    """What `meta.runs` keeps of one flow run."""

    run_id: str
    flow: str
    parameters: dict[str, Any]
    source: str
    started_at: dt.datetime
    as_of_start: dt.date | None = None
    as_of_end: dt.date | None = None
    counts: dict[str, int] = field(default_factory=dict)
    status: str = "succeeded"
    error: str | None = None
    stages: dict[str, float] = field(default_factory=dict)  # wall seconds by stage (flows/stages.py)


def last_as_of_dates(con: duckdb.DuckDBPyConnection, loan_ids: list[str]) -> dict[str, dt.date]:
    """Return the latest as-of date already computed for each loan that has one."""
    rows = con.execute(
        "SELECT loan_id, as_of_date FROM marts.loan_ltv_latest WHERE loan_id IN (SELECT unnest(?))",
        [loan_ids],
    ).fetchall()
    return {loan_id: day for loan_id, day in rows}


def _read_window(
    con: duckdb.DuckDBPyConnection, table: str, key: str, keys: list[str], since: dt.date, until: dt.date
) -> pl.DataFrame:
    """Return a staging table's rows in [since, until] plus each key's last row before `since`."""
    sql = f"""
        SELECT * FROM {table}
        WHERE {key} IN (SELECT unnest($keys)) AND session_date BETWEEN $since AND $until
        UNION ALL
        (SELECT * FROM {table}
         WHERE {key} IN (SELECT unnest($keys)) AND session_date < $since
         QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY session_date DESC) = 1)
    """
    return con.sql(sql, params={"keys": keys, "since": since, "until": until}).pl()


def read_price_history(
    con: duckdb.DuckDBPyConnection, symbols: list[str], since: dt.date, until: dt.date
) -> pl.DataFrame:
    """Return staged prices in [since, until] plus each symbol's last bar before `since`."""
    frame = _read_window(con, "staging.prices", "symbol", symbols, since, until)
    return frame.select([pl.col(n).cast(t) for n, t in PRICE_SCHEMA.items()])


def read_fx_history(con: duckdb.DuckDBPyConnection, pairs: list[str], since: dt.date, until: dt.date) -> pl.DataFrame:
    """Return staged FX rates in [since, until] plus each pair's last rate before `since`."""
    frame = _read_window(con, "staging.fx_rates", "pair", pairs, since, until)
    return frame.select([pl.col(n).cast(t) for n, t in FX_SCHEMA.items()])


def publish_run(con: duckdb.DuckDBPyConnection, output: RunOutput, run: RunRecord) -> None:
    """Write a run's bars, staging rows, LTV partition, quality records and run record in one transaction."""
    now = dt.datetime.now(dt.UTC)
    con.execute("BEGIN TRANSACTION")
    try:
        _append(con, "raw.market_bars", output.raw)
        crash_point("load:raw")
        _append(con, "raw.quarantined_bars", output.quarantined)
        crash_point("load:quarantine")
        _upsert(con, "staging.prices", output.prices, ["symbol", "session_date"])
        crash_point("load:prices")
        _upsert(con, "staging.fx_rates", output.fx_rates, ["pair", "session_date"])
        crash_point("load:fx")
        partition = (output.ltv_loan_ids, run.as_of_start, run.as_of_end)
        _replace_partition(con, "marts.loan_ltv_daily", output.ltv, *partition)
        breaches = output.ltv if output.ltv_breaches is None else output.ltv_breaches
        _replace_partition(con, "marts.margin_call_days", breaches, *partition, BREACH_DAYS)
        _refresh_latest(con, output.ltv if output.ltv_newest is None else output.ltv_newest, *partition)
        _refresh_open_breaches(con, output.episodes, *partition)
        crash_point("load:ltv")
        if output.stress is not None and output.risk is not None:
            _replace_partition(con, "marts.loan_stress_daily", output.stress, *partition)
            _replace_partition(con, "marts.loan_risk_daily", output.risk, *partition)
        crash_point("load:risk")
        _append(con, "meta.dq_results", _stamped(output.dq_results, run.run_id, now))
        crash_point("load:dq")
        if output.alerts is not None and output.outbox is not None:
            _insert_new_alerts(con, output.alerts, output.outbox, run.run_id, now)
        crash_point("load:alerts")
        _insert_run(con, run, run.status, run.error, now)
        crash_point("load:before-commit")
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise


def _insert_new_alerts(
    con: duckdb.DuckDBPyConnection,
    alerts: pl.DataFrame | list[Path],
    outbox: pl.DataFrame,
    run_id: str,
    now: dt.datetime,
) -> None:
    """Insert alerts whose key is new, and their deliveries; a rerun adds nothing twice."""
    if _is_empty(alerts):
        return
    with _readable(con, outbox, "_outbox") as (deliveries, _), _readable(con, alerts, "_alerts") as (source, params):
        # A key names its as-of date, so only stored alerts of the incoming dates can share one: a daily
        # run compares its keys with one day's alerts, not with every alert ever raised.
        first, last = con.execute(f"SELECT min(as_of_date), max(as_of_date) FROM {source}", params).fetchall()[0]
        stored = "(SELECT alert_key FROM marts.alerts WHERE as_of_date BETWEEN $first AND $last)"
        dates = {"first": first, "last": last}
        con.execute(
            "INSERT INTO meta.alert_outbox (alert_key, channel, status, attempts, created_at) "
            f"SELECT o.alert_key, o.channel, 'pending', 0, $now FROM {deliveries} o "
            f"WHERE o.alert_key NOT IN {stored}",
            {"now": now} | dates,
        )
        con.execute(
            f"INSERT INTO marts.alerts BY NAME SELECT *, $run_id AS run_id, $now AS created_at FROM {source} "
            f"WHERE alert_key NOT IN {stored}",
            params | {"run_id": run_id, "now": now} | dates,
        )


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction; a statement that failed on I/O may have ended it already."""
    with contextlib.suppress(duckdb.Error):  # nothing open: the original error says what went wrong
        con.execute("ROLLBACK")


def _stamped(results: pl.DataFrame, run_id: str, at: dt.datetime) -> pl.DataFrame:
    return results.with_columns(run_id=pl.lit(run_id), validated_at=pl.lit(at).cast(pl.Datetime("us", "UTC")))


def record_run_outcome(con: duckdb.DuckDBPyConnection, run: RunRecord, status: str, error: str) -> None:
    """Record a run that published nothing (failed, or skipped on a holiday) on its own."""
    con.execute("BEGIN TRANSACTION")
    _insert_run(con, run, status, error, dt.datetime.now(dt.UTC))
    con.execute("COMMIT")


@contextlib.contextmanager
def _readable(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame | list[Path], name: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (what SQL reads `rows` as, its parameters): a registered frame, or a large run's Parquet files."""
    if isinstance(rows, list):
        yield "read_parquet($files)", {"files": [str(f) for f in rows]}
        return
    con.register(name, rows.to_arrow())
    try:
        yield name, {}
    finally:
        with contextlib.suppress(duckdb.Error):  # after a failed statement the aborted transaction refuses it
            con.unregister(name)


def _is_empty(rows: pl.DataFrame | list[Path]) -> bool:
    return not rows if isinstance(rows, list) else not rows.height


def _append(con: duckdb.DuckDBPyConnection, table: str, rows: pl.DataFrame | list[Path], where: str = "true") -> None:
    if _is_empty(rows):
        return
    with _readable(con, rows, "_incoming") as (source, params):
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {source} WHERE {where}", params)


def _upsert(con: duckdb.DuckDBPyConnection, table: str, rows: pl.DataFrame | list[Path], keys: list[str]) -> None:
    if _is_empty(rows):
        return
    key_list = ", ".join(keys)
    with _readable(con, rows, "_incoming") as (source, params):
        con.execute(f"DELETE FROM {table} WHERE ({key_list}) IN (SELECT ({key_list}) FROM {source})", params)
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {source}", params)


def _replace_partition(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: pl.DataFrame | list[Path],
    loan_ids: list[str],
    start: dt.date | None,
    end: dt.date | None,
    where: str = "true",
) -> None:
    """Replace a mart's rows of these loans and as-of dates by those of `rows` meeting `where` (an idempotent rerun)."""
    if start is None or end is None or not loan_ids:
        return
    con.execute(
        f"DELETE FROM {table} WHERE loan_id IN (SELECT unnest(?)) AND as_of_date BETWEEN ? AND ?",
        [loan_ids, start, end],
    )
    _append(con, table, rows, where)


def _refresh_latest(
    con: duckdb.DuckDBPyConnection,
    rows: pl.DataFrame | list[Path],
    loan_ids: list[str],
    start: dt.date | None,
    end: dt.date | None,
) -> None:
    """Bring `marts.loan_ltv_latest` in line with a run's replaced LTV rows: each loan's newest row wins."""
    if start is None or end is None or not loan_ids:
        return
    con.execute(  # those rows were just replaced
        "DELETE FROM marts.loan_ltv_latest "
        "WHERE loan_id IN (SELECT unnest($ids)) AND as_of_date BETWEEN $start AND $end",
        {"ids": loan_ids, "start": start, "end": end},
    )
    if not _is_empty(rows):
        with _readable(con, rows, "_run_ltv") as (source, params):
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _run_latest AS SELECT * FROM "
                f"{source} QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY as_of_date DESC) = 1",
                params,
            )
        con.execute(
            "DELETE FROM marts.loan_ltv_latest t USING _run_latest n "
            "WHERE t.loan_id = n.loan_id AND t.as_of_date < n.as_of_date"
        )
        con.execute(
            "INSERT INTO marts.loan_ltv_latest BY NAME SELECT * FROM _run_latest "
            "WHERE loan_id NOT IN (SELECT loan_id FROM marts.loan_ltv_latest)"
        )
        con.execute("DROP TABLE _run_latest")
    # A published loan whose rows in range were all replaced by none falls back to its newest older row.
    orphans = con.execute(
        "SELECT unnest($ids) EXCEPT SELECT loan_id FROM marts.loan_ltv_latest", {"ids": loan_ids}
    ).fetchall()
    if orphans:
        con.execute(
            "INSERT INTO marts.loan_ltv_latest SELECT * FROM marts.loan_ltv_daily "
            "WHERE loan_id IN (SELECT unnest($ids)) "
            "QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY as_of_date DESC) = 1",
            {"ids": [row[0] for row in orphans]},
        )


def _refresh_open_breaches(
    con: duckdb.DuckDBPyConnection,
    episodes: pl.DataFrame | None,
    loan_ids: list[str],
    start: dt.date | None,
    end: dt.date | None,
) -> None:
    """Bring `marts.open_breaches` in line with `marts.loan_ltv_latest` for a run's loans.

    A loan whose newest row the run computed takes the breach start the run's alert rules found;
    any other of its loans in breach (a newest row the run did not compute, as after a rerun of
    older sessions) has it worked out from its history.
    """
    if start is None or end is None or not loan_ids:
        return
    ids = {"ids": loan_ids}
    con.execute("DELETE FROM marts.open_breaches WHERE loan_id IN (SELECT unnest($ids))", ids)
    if episodes is not None and episodes.height:
        with _readable(con, episodes, "_run_episodes") as (source, params):
            con.execute(
                "INSERT INTO marts.open_breaches BY NAME "
                "SELECT l.loan_id, l.as_of_date, l.status, e.episode_start FROM marts.loan_ltv_latest l "
                f"JOIN {source} e ON e.loan_id = l.loan_id AND e.as_of_date = l.as_of_date "
                f"WHERE l.loan_id IN (SELECT unnest($ids)) AND l.{BREACH_DAYS}",
                params | ids,
            )
    unanswered = con.execute(
        f"SELECT loan_id FROM marts.loan_ltv_latest WHERE loan_id IN (SELECT unnest($ids)) AND {BREACH_DAYS} "
        "EXCEPT SELECT loan_id FROM marts.open_breaches",
        ids,
    ).fetchall()
    if unanswered:  # the same reading of the history as a run's alert state, through every session kept
        found = _read_history_prior(con, [row[0] for row in unanswered], dt.date.max)
        with _readable(con, found, "_history_episodes") as (source, params):
            con.execute(
                "INSERT INTO marts.open_breaches BY NAME "
                "SELECT l.loan_id, l.as_of_date, l.status, h.prior_episode_start AS episode_start "
                f"FROM marts.loan_ltv_latest l JOIN {source} h USING (loan_id)",
                params,
            )


def _insert_run(
    con: duckdb.DuckDBPyConnection,
    run: RunRecord,
    status: str,
    error: str | None,
    finished_at: dt.datetime,
) -> None:
    con.execute(
        "INSERT INTO meta.runs (run_id, flow, parameters, source, as_of_start, as_of_end, started_at, "
        "finished_at, status, bars_fetched, prices_staged, fx_staged, ltv_rows, error, stage_seconds) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run.run_id,
            run.flow,
            json.dumps(run.parameters, default=str, sort_keys=True),
            run.source,
            run.as_of_start,
            run.as_of_end,
            run.started_at,
            finished_at,
            status,
            run.counts.get("bars_fetched", 0),
            run.counts.get("prices_staged", 0),
            run.counts.get("fx_staged", 0),
            run.counts.get("ltv_rows", 0),
            error,
            json.dumps(run.stages) if run.stages else None,
        ],
    )


def read_ltv(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Return the published LTV rows with as-of dates in [start, end] (grain: loan x as-of date)."""
    return con.sql(
        "SELECT * EXCLUDE (run_id) FROM marts.loan_ltv_daily WHERE as_of_date BETWEEN $start AND $end "
        "ORDER BY loan_id, as_of_date",
        params={"start": start, "end": end},
    ).pl()


def stored_symbols(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    """Return the symbols and FX pairs staged so far."""
    symbols = [row[0] for row in con.execute("SELECT DISTINCT symbol FROM staging.prices ORDER BY 1").fetchall()]
    pairs = [row[0] for row in con.execute("SELECT DISTINCT pair FROM staging.fx_rates ORDER BY 1").fetchall()]
    return symbols, pairs


def record_dq_results(con: duckdb.DuckDBPyConnection, results: pl.DataFrame, run: RunRecord) -> None:
    """Store a re-validation's results and its run record in one transaction."""
    now = dt.datetime.now(dt.UTC)
    con.execute("BEGIN TRANSACTION")
    try:
        _append(con, "meta.dq_results", _stamped(results, run.run_id, now))
        _insert_run(con, run, run.status, run.error, now)
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise


def read_alert_prior(con: duckdb.DuckDBPyConnection, loan_ids: list[str], before: dt.date) -> pl.DataFrame:
    """Return each loan's status on its last session before `before` and the start of a breach open then.

    A loan whose newest row is before `before` is answered from `marts.loan_ltv_latest`, and if it
    is in breach, from `marts.open_breaches`; only a loan rerun over older sessions (or, in a
    warehouse the load has not yet kept in line, one in breach without a start) has its history read.
    """
    latest = con.sql(
        """SELECT l.loan_id, l.status, l.as_of_date, b.episode_start
           FROM marts.loan_ltv_latest l
           LEFT JOIN marts.open_breaches b
             ON b.loan_id = l.loan_id AND b.as_of_date = l.as_of_date AND b.status = l.status
           WHERE l.loan_id IN (SELECT unnest($loans))""",
        params={"loans": loan_ids},
    ).pl()
    known = pl.col("status").is_in(["ok", "warning"]) | pl.col("episode_start").is_not_null()
    settled = latest.filter((pl.col("as_of_date") < before) & known)
    rest = latest.filter(~pl.col("loan_id").is_in(settled["loan_id"].implode()))["loan_id"].to_list()
    answered = settled.select(
        "loan_id", pl.col("status").alias("prior_status"), pl.col("episode_start").alias("prior_episode_start")
    )
    found = pl.concat([answered, _read_history_prior(con, rest, before)]) if rest else answered
    return found.select([pl.col(name).cast(dtype) for name, dtype in PRIOR_SCHEMA.items()])


def _read_history_prior(con: duckdb.DuckDBPyConnection, loan_ids: list[str], before: dt.date) -> pl.DataFrame:
    sql = """
        WITH history AS (
            SELECT loan_id, as_of_date, status FROM marts.loan_ltv_daily
            WHERE loan_id IN (SELECT unnest($loans)) AND as_of_date < $before
        ), calm AS (
            SELECT loan_id, max(as_of_date) AS last_calm FROM history
            WHERE status IN ('ok', 'warning') GROUP BY loan_id
        )
        SELECT h.loan_id,
               arg_max(h.status, h.as_of_date) AS prior_status,
               min(h.as_of_date) FILTER (WHERE h.as_of_date > coalesce(c.last_calm, DATE '0001-01-01'))
                   AS prior_episode_start
        FROM history h LEFT JOIN calm c USING (loan_id)
        GROUP BY h.loan_id
    """
    frame = con.sql(sql, params={"loans": loan_ids, "before": before}).pl()
    return frame.with_columns(
        prior_episode_start=pl.when(pl.col("prior_status").is_in(["margin_call", "liquidation"])).then(
            pl.col("prior_episode_start")
        )
    )


def pending_deliveries(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Return every undelivered (alert, channel) with the alert's record (grain: alert x channel)."""
    return con.sql(
        "SELECT o.channel, o.attempts, a.* FROM meta.alert_outbox o JOIN marts.alerts a USING (alert_key) "
        "WHERE o.status = 'pending' ORDER BY a.as_of_date, a.loan_id, o.channel"
    ).pl()


def record_delivery(con: duckdb.DuckDBPyConnection, alert_key: str, channel: str, error: str | None) -> None:
    """Mark one delivery attempt: delivered when `error` is None, else still pending with the error."""
    now = dt.datetime.now(dt.UTC)
    con.execute(
        "UPDATE meta.alert_outbox SET attempts = attempts + 1, last_attempt_at = $now, "
        "status = CASE WHEN $error IS NULL THEN 'delivered' ELSE status END, "
        "delivered_at = CASE WHEN $error IS NULL THEN $now ELSE delivered_at END, last_error = $error "
        "WHERE alert_key = $key AND channel = $channel AND status = 'pending'",
        {"now": now, "error": error, "key": alert_key, "channel": channel},
    )


def record_alerts(con: duckdb.DuckDBPyConnection, alerts: pl.DataFrame, outbox: pl.DataFrame, run_id: str) -> None:
    """Record alerts and their deliveries on their own (a failed run's notice), new keys only."""
    con.execute("BEGIN TRANSACTION")
    try:
        _insert_new_alerts(con, alerts, outbox, run_id, dt.datetime.now(dt.UTC))
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise


def read_split_events(con: duckdb.DuckDBPyConnection, symbols: list[str]) -> pl.DataFrame:
    """Return every staged split (symbol, session_date, stock_splits) and each symbol's first staged date."""
    # A grouped minimum joined back, not a window over every staged bar (0.05 s against 0.3 to 1.1 s at 5M bars).
    return con.sql(
        """WITH firsts AS (
               SELECT symbol, min(session_date) AS first_staged FROM staging.prices
               WHERE symbol IN (SELECT unnest($symbols)) GROUP BY symbol)
           SELECT p.symbol, p.session_date, p.stock_splits, f.first_staged
           FROM staging.prices AS p JOIN firsts AS f USING (symbol)
           WHERE p.stock_splits > 0 OR p.session_date = f.first_staged""",
        params={"symbols": symbols},
    ).pl()


def record_stages(con: duckdb.DuckDBPyConnection, run_id: str, stages: dict[str, float]) -> None:
    """Note on the run's record where its time went, stage by stage, once its last stage is done."""
    con.execute(
        "UPDATE meta.runs SET stage_seconds = $stages WHERE run_id = $run_id",
        {"stages": json.dumps(stages), "run_id": run_id},
    )


def record_report(con: duckdb.DuckDBPyConnection, run_id: str, path: str) -> None:
    """Note on the run's record the report it wrote."""
    con.execute("UPDATE meta.runs SET report_path = $path WHERE run_id = $run_id", {"path": path, "run_id": run_id})
