"""Alert messages for a whole frame of alerts at once: the text `messages.render` gives, built column-wise.

A backfill raises millions of alerts; formatting them one by one in Python took longer than
computing them. Numbers are rounded exactly as Python's `format` rounds them (the exact binary
value, ties to even), so every row reads as `messages.render` would write it. A row this cannot
render exactly (a null where text is expected, a figure beyond 2**52 of its last digit) yields a
null here and is left to `messages.render`.
"""

from __future__ import annotations

import polars as pl

from marginwatch.messages import DETAIL_KINDS, SYNTHETIC_NOTE, TITLES, UNCONFIRMED_NOTE, render

_SPLIT = 134217729.0  # 2**27 + 1: Dekker's split of a double into two halves of 26 bits
_EXACT = 2.0**52  # below this, a double's fraction is a multiple of its ulp and 0.5 is one too
CHUNK_ROWS = 100_000  # alerts rendered at once: each holds a few dozen string columns while it is built


def render_frame(alerts: pl.DataFrame) -> pl.DataFrame:
    """Return `alerts` with `subject` and `body` columns (grain unchanged: one row per alert)."""
    if alerts.height <= CHUNK_ROWS:
        return _render_chunk(alerts)
    return pl.concat([_render_chunk(chunk) for chunk in alerts.iter_slices(CHUNK_ROWS)])


def _render_chunk(alerts: pl.DataFrame) -> pl.DataFrame:
    # Lazily, so that a figure both texts show (LTV in subject and body) is formatted once: twice as
    # fast as the eager frame, which evaluates every expression as written.
    framed = alerts.lazy().with_columns(subject=_subject(), body=_body()).collect()
    missing = (framed["subject"].is_null() | framed["body"].is_null()).arg_true()
    if missing.len() == 0:
        return framed
    rendered = [render(row) for row in alerts[missing].iter_rows(named=True)]
    return framed.with_columns(
        framed["subject"].scatter(missing, [r[0] for r in rendered]),
        framed["body"].scatter(missing, [r[1] for r in rendered]),
    )


def fixed(value: pl.Expr, decimals: int, grouped: bool) -> pl.Expr:
    """Return `format(value, ',.Nf')` (or `'.Nf'` when not `grouped`) for each float; null beyond 2**52."""
    scale = 10.0**decimals
    scaled = value * scale
    # The exact product is scaled + error (Dekker's two-product; the scale has few bits, so no split).
    upper = value * _SPLIT - (value * _SPLIT - value)
    error = (upper * scale - scaled) + (value - upper) * scale
    size, toward = scaled.abs(), pl.when(scaled < 0).then(-error).otherwise(error)
    whole = size.floor()
    part = size - whole
    # Off a tie the fraction alone decides; on a tie the product's error does, then evenness.
    up = (part > 0.5) | ((part == 0.5) & ((toward > 0) | ((toward == 0) & (whole % 2 == 1))))
    # Not strict: beyond 2**63 (or inf, nan) it is null, and such a row takes a branch below instead.
    digits = (whole + up.cast(pl.Float64)).cast(pl.Int64, strict=False)
    units = (digits // int(scale)).cast(pl.String)
    if grouped:
        units = units.str.reverse().str.replace_all(r"(\d{3})", "${1},").str.strip_chars_end(",").str.reverse()
    text = units if decimals == 0 else pl.concat_str(units, pl.lit("."), _padded(digits % int(scale), decimals))
    negative = (value < 0) | ((value == 0) & (1.0 / value < 0))  # -0.0 keeps its sign, as in Python
    signed = pl.when(negative).then(pl.concat_str(pl.lit("-"), text)).otherwise(text)
    return (
        pl.when(value.is_nan())
        .then(pl.lit("nan"))
        .when(value.is_infinite())
        .then(pl.when(value > 0).then(pl.lit("inf")).otherwise(pl.lit("-inf")))
        .when(size < _EXACT)
        .then(signed)
    )


def _padded(number: pl.Expr, width: int) -> pl.Expr:
    return number.cast(pl.String).str.zfill(width)


def _pct(name: str) -> pl.Expr:
    """`messages._pct`: one decimal of a percentage, or n/a."""
    share = pl.col(name)
    return (
        pl.when(share.is_null())
        .then(pl.lit("n/a"))
        .otherwise(pl.concat_str(fixed(share * 100.0, 1, False), pl.lit("%")))
    )


def _money(name: str, unit: str | pl.Expr | None = None) -> pl.Expr:
    """`messages._money`: whole units and the unit's name when it has one, else two decimals; or n/a.

    A row whose unit column is empty or null gets null here (the reference renders it), so that
    each amount is formatted one way only.
    """
    amount = pl.col(name)
    if unit is None:
        text = fixed(amount, 2, True)
    elif isinstance(unit, str):
        text = pl.concat_str(fixed(amount, 0, True), pl.lit(f" {unit}"))
    else:
        text = pl.when(unit != "").then(pl.concat_str(fixed(amount, 0, True), pl.lit(" "), unit))
    return pl.when(amount.is_null()).then(pl.lit("n/a")).otherwise(text)


def _text(name: str) -> pl.Expr:
    """`str(value or "")` of a string or date column."""
    return pl.col(name).cast(pl.String).fill_null("")


def _as_text(name: str) -> pl.Expr:
    """`str(value)` where the value is expected: null (Python's 'None') is left to the reference."""
    return pl.col(name).cast(pl.String)


def _sessions(count: pl.Expr) -> pl.Expr:
    return pl.concat_str(
        count.cast(pl.String), pl.when(count == 1).then(pl.lit(" session")).otherwise(pl.lit(" sessions"))
    )


def _left(short: bool) -> pl.Expr:
    """`messages._short_left` (short) or `messages._left`: the sessions left to cure, or overdue."""
    left = pl.col("sessions_left")
    overdue = (
        pl.concat_str(pl.lit("overdue "), (-left).cast(pl.String))
        if short
        else (pl.concat_str(pl.lit("overdue by "), _sessions(-left)))
    )
    ahead = (
        pl.concat_str(left.cast(pl.String), pl.lit(" left"))
        if short
        else pl.concat_str(_sessions(left), pl.lit(" left"))
    )
    return pl.when(left.is_null()).then(pl.lit("no deadline")).when(left < 0).then(overdue).otherwise(ahead)


def _subject() -> pl.Expr:
    kind, loan = pl.col("kind"), _as_text("loan_id")
    title = pl.col("level").replace_strict(TITLES, default=None, return_dtype=pl.String)
    ltv = pl.concat_str(pl.lit(": LTV "), _pct("ltv"))
    text = (
        pl.when(kind == "level")
        .then(pl.concat_str(title, pl.lit(" "), loan, ltv))
        .when(kind == "reminder")
        .then(
            pl.concat_str(
                title,
                pl.lit(" "),
                loan,
                pl.lit(": cure by "),
                _as_text("cure_deadline"),
                pl.lit(" ("),
                _left(True),
                pl.lit(")"),
            )
        )
        .when(kind == "recovery")
        .then(pl.concat_str(pl.lit("RECOVERED to "), pl.col("level").str.replace_all("_", " "), pl.lit(" "), loan, ltv))
        .when(kind == "data_quality")
        .then(pl.concat_str(pl.lit("DATA HELD BACK "), loan, pl.lit(" on "), _as_text("as_of_date")))
        .when(kind == "run_failed")
        .then(
            pl.concat_str(pl.lit("RUN FAILED marginwatch "), pl.col("level"), pl.lit(" for "), _as_text("as_of_date"))
        )
        .otherwise(pl.concat_str(pl.lit("STALE PRICE "), loan, pl.lit(": last price "), _as_text("price_date")))
    )
    return (
        pl.when(pl.col("is_unconfirmed").fill_null(False))
        .then(pl.concat_str(pl.lit("UNCONFIRMED "), text))
        .otherwise(text)
    )


def _line(label: str, value: pl.Expr) -> pl.Expr:
    return pl.concat_str(pl.lit(f"{label}: "), value)


def _optional(present: pl.Expr, line: pl.Expr) -> pl.Expr:
    """A line and its newline when `present`, else nothing (a null inside `line` stays null)."""
    return pl.when(present).then(pl.concat_str(pl.lit("\n"), line)).otherwise(pl.lit(""))


def _body() -> pl.Expr:
    head = pl.concat_str(
        _line("Loan", pl.concat_str(_as_text("loan_id"), pl.lit(" ("), _as_text("currency"), pl.lit(")"))),
        _line("Alert", pl.concat_str(pl.col("kind"), pl.lit(": "), pl.col("level"))),
        separator="\n",
    )
    quiet = pl.concat_str(_line("As of", _as_text("as_of_date")), _line("Detail", _text("detail")), separator="\n")
    deadline = pl.concat_str(
        _as_text("cure_deadline"),
        pl.lit(" ("),
        _left(False),
        pl.lit("; breach since "),
        _as_text("episode_start"),
        pl.lit(")"),
    )
    figures = pl.concat_str(
        _line(
            "As of", pl.concat_str(_as_text("as_of_date"), pl.lit(" (price of "), _as_text("price_date"), pl.lit(")"))
        ),
        _line("LTV", _pct("ltv")),
        _line("Previous level", _text("previous_level")),
        _line("Price", _money("price")),
        _line("Margin-call price", _money("margin_call_price")),
        _line("Liquidation price", _money("liquidation_price")),
        _line("Distance to margin call", _pct("distance_to_margin_call")),
        _line("Cure cash", _money("cure_cash", pl.col("currency"))),
        _line("Cure shares", _money("cure_shares", "shares")),
        separator="\n",
    )
    notes = pl.concat_str(
        _optional(
            pl.col("is_unconfirmed").fill_null(False),
            _line("Note", pl.lit(UNCONFIRMED_NOTE)),
        ),
        _optional(pl.col("source") == "synthetic", _line("Note", pl.lit(SYNTHETIC_NOTE))),
        pl.lit("\n"),
        _line("Alert key", _as_text("alert_key")),
    )
    middle = (
        pl.when(pl.col("kind").is_in(DETAIL_KINDS))
        .then(quiet)
        .otherwise(
            pl.concat_str(figures, _optional(pl.col("cure_deadline").is_not_null(), _line("Cure deadline", deadline)))
        )
    )
    return pl.concat_str(head, pl.lit("\n"), middle, notes)
