"""Alert rules on tiny literal frames over real NASDAQ sessions: every expected tuple is worked out by hand.

Calendar facts used below (NASDAQ, 2026):
- March 2026 sessions: Mon 03-02 .. Fri 03-06, Mon 03-09 .. Fri 03-13, ..., Mon 03-30, Tue 03-31.
- Wed 04-01, Thu 04-02 are sessions; Fri 04-03 is Good Friday (no session); Mon 04-06 .. Fri 04-10 are sessions.
So "2 sessions after Wed 04-01" is Mon 04-06, whereas 2 calendar days after it is Fri 04-03.
"""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest

from marginwatch import calendar
from transforms.alerts import (
    ALERT_SCHEMA,
    EPISODE_SCHEMA,
    LEVEL_RANK,
    PRIOR_SCHEMA,
    add_episodes,
    find_level_alerts,
    find_operational_alerts,
    open_episodes,
    route_alerts,
)

D = dt.date

# Levels assumed by these rows: warning 40%, margin call 50%, liquidation 65%.
LTV_BY_STATUS = {"ok": 0.30, "warning": 0.45, "margin_call": 0.55, "liquidation": 0.70}

LTV_INPUT_SCHEMA: dict[str, pl.DataType] = {
    "loan_id": pl.String(),
    "as_of_date": pl.Date(),
    "status": pl.String(),
    "ltv": pl.Float64(),
    "price_date": pl.Date(),
    "currency": pl.String(),
    "price": pl.Float64(),
    "margin_call_price": pl.Float64(),
    "liquidation_price": pl.Float64(),
    "distance_to_margin_call": pl.Float64(),
    "cure_cash": pl.Float64(),
    "cure_shares": pl.Float64(),
    "is_unconfirmed": pl.Boolean(),
    "is_stale": pl.Boolean(),
    "sessions_since_price": pl.Int32(),
    "source": pl.String(),
}

# (as_of_date, kind, level, previous_level)
LEVEL_COLUMNS = ["as_of_date", "kind", "level", "previous_level"]
# (as_of_date, kind, level, previous_level, episode_start, cure_deadline, sessions_left)
EPISODE_COLUMNS = [*LEVEL_COLUMNS, "episode_start", "cure_deadline", "sessions_left"]


@pytest.fixture(scope="module")
def sessions() -> pl.Series:
    """The whole NASDAQ calendar, as the flow passes it."""
    return calendar.sessions_between(calendar.FIRST_DAY, calendar.LAST_DAY)


def test_calendar_facts_this_file_relies_on(sessions: pl.Series) -> None:
    window = sessions.filter((sessions >= D(2026, 3, 27)) & (sessions <= D(2026, 4, 8))).to_list()
    assert window == [
        D(2026, 3, 27),
        D(2026, 3, 30),
        D(2026, 3, 31),
        D(2026, 4, 1),
        D(2026, 4, 2),
        D(2026, 4, 6),
        D(2026, 4, 7),
        D(2026, 4, 8),
    ]


def row(loan_id: str, day: dt.date, status: str, **overrides: object) -> dict:
    """One LTV row for `loan_id` on `day` at `status` (prices consistent with a 50% margin-call level)."""
    ltv = LTV_BY_STATUS[status]
    values = {
        "loan_id": loan_id,
        "as_of_date": day,
        "status": status,
        "ltv": ltv,
        "price_date": day,
        "currency": "USD",
        "price": 100.0,
        "margin_call_price": 100.0 * ltv / 0.50,
        "liquidation_price": 100.0 * ltv / 0.65,
        "distance_to_margin_call": 1 - ltv / 0.50,
        "cure_cash": 0.0 if ltv < 0.5 else 1_000.0,
        "cure_shares": 0.0 if ltv < 0.5 else 10.0,
        "is_unconfirmed": False,
        "is_stale": False,
        "sessions_since_price": 0,
        "source": "synthetic",
    }
    values.update(overrides)
    return values


def ltv_frame(*history: tuple[str, list[tuple[dt.date, str]]]) -> pl.DataFrame:
    """LTV rows from (loan_id, [(day, status), ...]) pairs."""
    rows = [row(loan_id, day, status) for loan_id, days in history for day, status in days]
    return pl.DataFrame(rows, schema=LTV_INPUT_SCHEMA)


def prior_frame(*rows: tuple[str, str, dt.date | None]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=PRIOR_SCHEMA, orient="row")


def cure_frame(**days: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"loan_id": list(days), "cure_period_days": list(days.values())},
        schema={"loan_id": pl.String, "cure_period_days": pl.Int32},
    )


NO_PRIOR = prior_frame()


def tuples(alerts: pl.DataFrame, columns: list[str], loan_id: str | None = None) -> list[tuple]:
    if loan_id is not None:
        alerts = alerts.filter(pl.col("loan_id") == loan_id)
    return alerts.sort("loan_id", "as_of_date").select(columns).rows()


# ---------------------------------------------------------------- level alerts


def test_level_alert_on_each_rise_ok_warning_margin_call_liquidation(sessions: pl.Series) -> None:
    ltv = ltv_frame(
        (
            "L1",
            [
                (D(2026, 3, 2), "ok"),
                (D(2026, 3, 3), "warning"),
                (D(2026, 3, 4), "margin_call"),
                (D(2026, 3, 5), "liquidation"),
            ],
        )
    )
    alerts = find_level_alerts(ltv, NO_PRIOR, cure_frame(L1=2), sessions)
    assert tuples(alerts, LEVEL_COLUMNS) == [
        (D(2026, 3, 3), "level", "warning", "ok"),
        (D(2026, 3, 4), "level", "margin_call", "warning"),
        (D(2026, 3, 5), "level", "liquidation", "margin_call"),
    ]


def test_level_alert_is_one_alert_when_levels_are_skipped(sessions: pl.Series) -> None:
    ltv = ltv_frame(
        ("OK_TO_MC", [(D(2026, 3, 2), "ok"), (D(2026, 3, 3), "margin_call")]),
        ("OK_TO_LIQ", [(D(2026, 3, 2), "ok"), (D(2026, 3, 3), "liquidation")]),
        ("WARN_TO_LIQ", [(D(2026, 3, 2), "warning"), (D(2026, 3, 3), "liquidation")]),
    )
    alerts = find_level_alerts(ltv, NO_PRIOR, cure_frame(OK_TO_MC=2, OK_TO_LIQ=2, WARN_TO_LIQ=2), sessions)
    assert tuples(alerts.filter(pl.col("as_of_date") == D(2026, 3, 3)), ["loan_id", *LEVEL_COLUMNS]) == [
        ("OK_TO_LIQ", D(2026, 3, 3), "level", "liquidation", "ok"),
        ("OK_TO_MC", D(2026, 3, 3), "level", "margin_call", "ok"),
        ("WARN_TO_LIQ", D(2026, 3, 3), "level", "liquidation", "warning"),
    ]


def test_level_alert_carries_the_row_values_for_the_message(sessions: pl.Series) -> None:
    ltv = ltv_frame(("L1", [(D(2026, 3, 2), "ok"), (D(2026, 3, 3), "margin_call")]))
    alerts = find_level_alerts(ltv, NO_PRIOR, cure_frame(L1=2), sessions)
    assert alerts.schema == pl.Schema(ALERT_SCHEMA)
    [alert] = alerts.to_dicts()
    expected = row("L1", D(2026, 3, 3), "margin_call")
    for name in (
        "ltv",
        "price_date",
        "currency",
        "price",
        "margin_call_price",
        "liquidation_price",
        "distance_to_margin_call",
        "cure_cash",
        "cure_shares",
        "is_unconfirmed",
        "source",
    ):
        assert alert[name] == expected[name], name
    assert alert["detail"] is None


def test_no_alert_while_the_level_is_unchanged_below_margin_call(sessions: pl.Series) -> None:
    ltv = ltv_frame(
        ("CALM", [(D(2026, 3, 2), "ok"), (D(2026, 3, 3), "ok")]),
        ("WARN", [(D(2026, 3, 2), "warning"), (D(2026, 3, 3), "warning"), (D(2026, 3, 4), "warning")]),
    )
    alerts = find_level_alerts(ltv, NO_PRIOR, cure_frame(CALM=2, WARN=2), sessions)
    # WARN's first row is a rise from the implicit 'ok' of a new loan; nothing else.
    assert tuples(alerts, ["loan_id", *LEVEL_COLUMNS]) == [("WARN", D(2026, 3, 2), "level", "warning", "ok")]


# ---------------------------------------------------------------- recoveries


def test_recovery_alert_on_each_fall_with_the_new_level_and_the_old_one(sessions: pl.Series) -> None:
    ltv = ltv_frame(
        (
            "L1",
            [
                (D(2026, 3, 9), "liquidation"),
                (D(2026, 3, 10), "margin_call"),
                (D(2026, 3, 11), "warning"),
                (D(2026, 3, 12), "ok"),
            ],
        )
    )
    prior = prior_frame(("L1", "liquidation", D(2026, 3, 6)))
    alerts = find_level_alerts(ltv, prior, cure_frame(L1=2), sessions)
    assert tuples(alerts, EPISODE_COLUMNS) == [
        # Still in the breach that started on 03-06: deadline 03-06 + 2 sessions = 03-10.
        (D(2026, 3, 9), "reminder", "liquidation", "liquidation", D(2026, 3, 6), D(2026, 3, 10), 1),
        (D(2026, 3, 10), "recovery", "margin_call", "liquidation", D(2026, 3, 6), D(2026, 3, 10), 0),
        (D(2026, 3, 11), "recovery", "warning", "margin_call", None, None, None),
        (D(2026, 3, 12), "recovery", "ok", "warning", None, None, None),
    ]


def test_recovery_skipping_levels_is_one_alert(sessions: pl.Series) -> None:
    ltv = ltv_frame(("L1", [(D(2026, 3, 2), "warning"), (D(2026, 3, 3), "liquidation"), (D(2026, 3, 4), "ok")]))
    alerts = find_level_alerts(ltv, NO_PRIOR, cure_frame(L1=2), sessions)
    assert tuples(alerts, LEVEL_COLUMNS) == [
        (D(2026, 3, 2), "level", "warning", "ok"),
        (D(2026, 3, 3), "level", "liquidation", "warning"),
        (D(2026, 3, 4), "recovery", "ok", "liquidation"),
    ]


# ---------------------------------------------------------------- reminders and cure deadline


def test_daily_reminder_counts_the_cure_deadline_in_nasdaq_sessions_skipping_good_friday(sessions: pl.Series) -> None:
    ltv = ltv_frame(
        (
            "L1",
            [
                (D(2026, 3, 31), "warning"),
                (D(2026, 4, 1), "margin_call"),  # episode starts; deadline = 2 sessions later
                (D(2026, 4, 2), "margin_call"),
                # Fri 2026-04-03 is Good Friday: no session, no row.
                (D(2026, 4, 6), "liquidation"),
                (D(2026, 4, 7), "liquidation"),
                (D(2026, 4, 8), "margin_call"),
                (D(2026, 4, 9), "margin_call"),
            ],
        )
    )
    alerts = find_level_alerts(ltv, prior_frame(("L1", "ok", None)), cure_frame(L1=2), sessions)
    start, deadline = D(2026, 4, 1), D(2026, 4, 6)  # not 04-03: the holiday is not a business day
    assert tuples(alerts, EPISODE_COLUMNS) == [
        (D(2026, 3, 31), "level", "warning", "ok", None, None, None),
        (D(2026, 4, 1), "level", "margin_call", "warning", start, deadline, 2),
        (D(2026, 4, 2), "reminder", "margin_call", "margin_call", start, deadline, 1),
        (D(2026, 4, 6), "level", "liquidation", "margin_call", start, deadline, 0),
        (D(2026, 4, 7), "reminder", "liquidation", "liquidation", start, deadline, -1),
        (D(2026, 4, 8), "recovery", "margin_call", "liquidation", start, deadline, -2),
        (D(2026, 4, 9), "reminder", "margin_call", "margin_call", start, deadline, -3),
    ]


def test_no_reminder_on_the_session_of_the_level_alert(sessions: pl.Series) -> None:
    ltv = ltv_frame(("L1", [(D(2026, 3, 2), "ok"), (D(2026, 3, 3), "margin_call"), (D(2026, 3, 4), "margin_call")]))
    alerts = find_level_alerts(ltv, NO_PRIOR, cure_frame(L1=3), sessions)
    assert tuples(alerts, ["as_of_date", "kind"]) == [(D(2026, 3, 3), "level"), (D(2026, 3, 4), "reminder")]


def test_a_new_breach_after_recovery_starts_a_new_episode_and_deadline(sessions: pl.Series) -> None:
    ltv = ltv_frame(
        (
            "L1",
            [
                (D(2026, 3, 30), "margin_call"),
                (D(2026, 3, 31), "warning"),
                (D(2026, 4, 1), "margin_call"),
                (D(2026, 4, 2), "margin_call"),
            ],
        )
    )
    alerts = find_level_alerts(ltv, NO_PRIOR, cure_frame(L1=1), sessions)
    assert tuples(alerts, EPISODE_COLUMNS) == [
        (D(2026, 3, 30), "level", "margin_call", "ok", D(2026, 3, 30), D(2026, 3, 31), 1),
        (D(2026, 3, 31), "recovery", "warning", "margin_call", None, None, None),
        (D(2026, 4, 1), "level", "margin_call", "warning", D(2026, 4, 1), D(2026, 4, 2), 1),
        (D(2026, 4, 2), "reminder", "margin_call", "margin_call", D(2026, 4, 1), D(2026, 4, 2), 0),
    ]


def test_add_episodes_marks_every_row_and_keeps_the_ltv_columns(sessions: pl.Series) -> None:
    ltv = ltv_frame(("L1", [(D(2026, 4, 2), "warning"), (D(2026, 4, 6), "margin_call"), (D(2026, 4, 7), "ok")]))
    rows = add_episodes(ltv, NO_PRIOR, cure_frame(L1=3), sessions)
    assert set(LTV_INPUT_SCHEMA) <= set(rows.columns)
    assert rows.select(
        "as_of_date", "status", "previous_level", "episode_start", "cure_deadline", "sessions_left"
    ).rows() == [
        (D(2026, 4, 2), "warning", "ok", None, None, None),
        (D(2026, 4, 6), "margin_call", "warning", D(2026, 4, 6), D(2026, 4, 9), 3),
        (D(2026, 4, 7), "ok", "margin_call", None, None, None),
    ]


# ---------------------------------------------------------------- episodes open before the run's range


def test_episode_open_before_the_range_continues_without_a_new_level_alert(sessions: pl.Series) -> None:
    ltv = ltv_frame(
        (
            "L1",
            [
                (D(2026, 4, 2), "margin_call"),
                (D(2026, 4, 6), "margin_call"),
                (D(2026, 4, 7), "margin_call"),
                (D(2026, 4, 8), "margin_call"),
            ],
        )
    )
    prior = prior_frame(("L1", "margin_call", D(2026, 4, 1)))
    alerts = find_level_alerts(ltv, prior, cure_frame(L1=3), sessions)
    start, deadline = D(2026, 4, 1), D(2026, 4, 7)  # 04-02 (1), [04-03 holiday], 04-06 (2), 04-07 (3)
    assert tuples(alerts, EPISODE_COLUMNS) == [
        (D(2026, 4, 2), "reminder", "margin_call", "margin_call", start, deadline, 2),
        (D(2026, 4, 6), "reminder", "margin_call", "margin_call", start, deadline, 1),
        (D(2026, 4, 7), "reminder", "margin_call", "margin_call", start, deadline, 0),
        (D(2026, 4, 8), "reminder", "margin_call", "margin_call", start, deadline, -1),
    ]


def test_episode_open_before_the_range_rising_to_liquidation_keeps_its_start(sessions: pl.Series) -> None:
    ltv = ltv_frame(("L1", [(D(2026, 3, 30), "liquidation"), (D(2026, 3, 31), "liquidation")]))
    prior = prior_frame(("L1", "margin_call", D(2026, 3, 26)))
    alerts = find_level_alerts(ltv, prior, cure_frame(L1=2), sessions)
    start, deadline = D(2026, 3, 26), D(2026, 3, 30)  # 03-27 (1), 03-30 (2)
    assert tuples(alerts, EPISODE_COLUMNS) == [
        (D(2026, 3, 30), "level", "liquidation", "margin_call", start, deadline, 0),
        (D(2026, 3, 31), "reminder", "liquidation", "liquidation", start, deadline, -1),
    ]


def test_open_episodes_gives_each_loans_newest_breach_start_from_the_level_kinds(sessions: pl.Series) -> None:
    ltv = ltv_frame(
        # Carried from before the range, easing to margin call (a recovery) on its newest row.
        ("L1", [(D(2026, 3, 30), "liquidation"), (D(2026, 3, 31), "margin_call")]),
        # Breached, recovered, breached again: the second breach is the open one.
        ("L2", [(D(2026, 3, 30), "margin_call"), (D(2026, 3, 31), "warning"), (D(2026, 4, 1), "liquidation")]),
        # Breached, then calm on its newest row: its newest breach session is not its newest row.
        ("L3", [(D(2026, 3, 30), "margin_call"), (D(2026, 3, 31), "ok")]),
        ("L4", [(D(2026, 3, 30), "warning"), (D(2026, 3, 31), "warning")]),  # never in breach
    )
    prior = prior_frame(("L1", "liquidation", D(2026, 3, 20)))
    levels = find_level_alerts(ltv, prior, cure_frame(L1=2, L2=2, L3=2, L4=2), sessions)
    operational = find_operational_alerts(ltv, D(2026, 4, 1), {"L4": "held back"}, {"L4": "USD"})
    episodes = open_episodes(pl.concat([levels, operational]))
    assert dict(zip(episodes.columns, episodes.dtypes, strict=True)) == EPISODE_SCHEMA
    assert sorted(episodes.rows()) == [
        ("L1", D(2026, 3, 31), D(2026, 3, 20)),
        ("L2", D(2026, 4, 1), D(2026, 4, 1)),
        ("L3", D(2026, 3, 30), D(2026, 3, 30)),  # the load keeps it only if that is the loan's newest row
    ]


def test_prior_warning_entering_margin_call_on_the_first_row_gets_a_level_alert(sessions: pl.Series) -> None:
    ltv = ltv_frame(("L2", [(D(2026, 4, 2), "margin_call"), (D(2026, 4, 6), "margin_call")]))
    prior = prior_frame(("L2", "warning", None))
    alerts = find_level_alerts(ltv, prior, cure_frame(L2=3), sessions)
    start, deadline = D(2026, 4, 2), D(2026, 4, 8)  # 04-06 (1), 04-07 (2), 04-08 (3)
    assert tuples(alerts, EPISODE_COLUMNS) == [
        (D(2026, 4, 2), "level", "margin_call", "warning", start, deadline, 3),
        (D(2026, 4, 6), "reminder", "margin_call", "margin_call", start, deadline, 2),
    ]


def test_prior_breach_recovering_on_the_first_row_gets_a_recovery_alert(sessions: pl.Series) -> None:
    ltv = ltv_frame(("L1", [(D(2026, 4, 2), "warning")]))
    prior = prior_frame(("L1", "liquidation", D(2026, 3, 30)))
    alerts = find_level_alerts(ltv, prior, cure_frame(L1=3), sessions)
    assert tuples(alerts, EPISODE_COLUMNS) == [(D(2026, 4, 2), "recovery", "warning", "liquidation", None, None, None)]


def test_new_loan_without_prior_already_in_margin_call_gets_a_level_alert_from_ok(sessions: pl.Series) -> None:
    ltv = ltv_frame(("NEW", [(D(2026, 3, 4), "margin_call"), (D(2026, 3, 5), "margin_call")]))
    prior = prior_frame(("OTHER", "margin_call", D(2026, 3, 2)))  # another loan's prior must not leak
    alerts = find_level_alerts(ltv, prior, cure_frame(NEW=2, OTHER=2), sessions)
    assert tuples(alerts, EPISODE_COLUMNS) == [
        (D(2026, 3, 4), "level", "margin_call", "ok", D(2026, 3, 4), D(2026, 3, 6), 2),
        (D(2026, 3, 5), "reminder", "margin_call", "margin_call", D(2026, 3, 4), D(2026, 3, 6), 1),
    ]


def test_new_loan_without_prior_starting_ok_gets_no_alert(sessions: pl.Series) -> None:
    ltv = ltv_frame(("NEW", [(D(2026, 3, 4), "ok"), (D(2026, 3, 5), "ok")]))
    assert find_level_alerts(ltv, NO_PRIOR, cure_frame(NEW=2), sessions).height == 0


# ---------------------------------------------------------------- keys, determinism, independence

STORY = (
    (
        "A",
        [
            (D(2026, 3, 30), "ok"),
            (D(2026, 3, 31), "warning"),
            (D(2026, 4, 1), "margin_call"),
            (D(2026, 4, 2), "margin_call"),
            (D(2026, 4, 6), "ok"),
        ],
    ),
    (
        "B",
        [
            (D(2026, 3, 30), "liquidation"),
            (D(2026, 3, 31), "liquidation"),
            (D(2026, 4, 1), "warning"),
            (D(2026, 4, 2), "warning"),
            (D(2026, 4, 6), "margin_call"),
        ],
    ),
)


def test_alert_key_is_loan_date_kind_level(sessions: pl.Series) -> None:
    alerts = find_level_alerts(ltv_frame(*STORY), NO_PRIOR, cure_frame(A=2, B=2), sessions)
    assert sorted(alerts["alert_key"].to_list()) == [
        "A/2026-03-31/level/warning",
        "A/2026-04-01/level/margin_call",
        "A/2026-04-02/reminder/margin_call",
        "A/2026-04-06/recovery/ok",
        "B/2026-03-30/level/liquidation",
        "B/2026-03-31/reminder/liquidation",
        "B/2026-04-01/recovery/warning",
        "B/2026-04-06/level/margin_call",
    ]
    assert alerts["alert_key"].n_unique() == alerts.height


def test_recomputing_over_the_same_rows_gives_the_same_alerts_and_keys(sessions: pl.Series) -> None:
    ltv = ltv_frame(*STORY)
    first = find_level_alerts(ltv, NO_PRIOR, cure_frame(A=2, B=2), sessions)
    again = find_level_alerts(ltv, NO_PRIOR, cure_frame(A=2, B=2), sessions)
    shuffled_rows = ltv.rows(named=True)
    random.Random(7).shuffle(shuffled_rows)
    shuffled = find_level_alerts(
        pl.DataFrame(shuffled_rows, schema=LTV_INPUT_SCHEMA), NO_PRIOR, cure_frame(B=2, A=2), sessions
    )
    assert first.sort("alert_key").equals(again.sort("alert_key"))
    assert first.sort("alert_key").equals(shuffled.sort("alert_key"))


def test_several_loans_in_one_frame_are_independent(sessions: pl.Series) -> None:
    prior = prior_frame(("A", "ok", None), ("B", "margin_call", D(2026, 3, 27)))
    cure = cure_frame(A=1, B=3)
    together = find_level_alerts(ltv_frame(*STORY), prior, cure, sessions)
    alone = pl.concat(
        [
            find_level_alerts(ltv_frame(story), prior.filter(pl.col("loan_id") == story[0]), cure, sessions)
            for story in STORY
        ]
    )
    assert together.sort("alert_key").equals(alone.sort("alert_key"))
    # B's first row follows B's prior (a breach open since 03-27), not A's last status.
    assert tuples(together, EPISODE_COLUMNS, loan_id="B") == [
        (D(2026, 3, 30), "level", "liquidation", "margin_call", D(2026, 3, 27), D(2026, 4, 1), 2),
        (D(2026, 3, 31), "reminder", "liquidation", "liquidation", D(2026, 3, 27), D(2026, 4, 1), 1),
        (D(2026, 4, 1), "recovery", "warning", "liquidation", None, None, None),
        (D(2026, 4, 6), "level", "margin_call", "warning", D(2026, 4, 6), D(2026, 4, 9), 3),
    ]
    assert tuples(together, EPISODE_COLUMNS, loan_id="A") == [
        (D(2026, 3, 31), "level", "warning", "ok", None, None, None),
        (D(2026, 4, 1), "level", "margin_call", "warning", D(2026, 4, 1), D(2026, 4, 2), 1),
        (D(2026, 4, 2), "reminder", "margin_call", "margin_call", D(2026, 4, 1), D(2026, 4, 2), 0),
        (D(2026, 4, 6), "recovery", "ok", "margin_call", None, None, None),
    ]


def test_interleaved_loans_do_not_leak_status_into_each_other(sessions: pl.Series) -> None:
    # Z ends in margin call; A sorts first and starts 'ok': A's first row is not a recovery from Z.
    rows = [
        row("Z", D(2026, 3, 2), "margin_call"),
        row("A", D(2026, 3, 2), "ok"),
        row("Z", D(2026, 3, 3), "margin_call"),
        row("A", D(2026, 3, 3), "ok"),
    ]
    alerts = find_level_alerts(pl.DataFrame(rows, schema=LTV_INPUT_SCHEMA), NO_PRIOR, cure_frame(A=2, Z=2), sessions)
    assert tuples(alerts, ["loan_id", *LEVEL_COLUMNS]) == [
        ("Z", D(2026, 3, 2), "level", "margin_call", "ok"),
        ("Z", D(2026, 3, 3), "reminder", "margin_call", "margin_call"),
    ]


# ---------------------------------------------------------------- operational alerts

AS_OF = D(2026, 4, 2)


def test_stale_row_on_the_as_of_date_gives_one_stale_source_alert() -> None:
    ltv = pl.DataFrame(
        [
            row("STALE", AS_OF, "warning", is_stale=True, sessions_since_price=4, price_date=D(2026, 3, 27)),
            row("STALE", D(2026, 4, 1), "warning", is_stale=True, sessions_since_price=3, price_date=D(2026, 3, 27)),
            row("FRESH", AS_OF, "margin_call"),
        ],
        schema=LTV_INPUT_SCHEMA,
    )
    alerts = find_operational_alerts(ltv, AS_OF, {}, {"STALE": "USD", "FRESH": "USD"})
    assert alerts.schema == pl.Schema(ALERT_SCHEMA)
    assert alerts.select(
        "alert_key", "loan_id", "as_of_date", "kind", "level", "previous_level", "price_date", "detail"
    ).rows() == [
        (
            "STALE/2026-04-02/stale_source/stale",
            "STALE",
            AS_OF,
            "stale_source",
            "stale",
            None,
            D(2026, 3, 27),
            "no new price for 4 sessions (last price 2026-03-27)",
        )
    ]


def test_held_back_loan_gives_one_data_quality_alert_with_its_detail() -> None:
    ltv = pl.DataFrame([row("FRESH", AS_OF, "ok")], schema=LTV_INPUT_SCHEMA)
    held_back = {"HELD": "ARM close moved 55% in one session; rows held back"}
    alerts = find_operational_alerts(ltv, AS_OF, held_back, {"HELD": "JPY", "FRESH": "USD"})
    assert alerts.schema == pl.Schema(ALERT_SCHEMA)
    assert alerts.select("alert_key", "loan_id", "as_of_date", "kind", "level", "currency", "detail").rows() == [
        (
            "HELD/2026-04-02/data_quality/held_back",
            "HELD",
            AS_OF,
            "data_quality",
            "held_back",
            "JPY",
            "ARM close moved 55% in one session; rows held back",
        )
    ]


def test_no_operational_alert_for_fresh_rows_or_stale_rows_on_other_dates() -> None:
    ltv = pl.DataFrame(
        [
            row("FRESH", AS_OF, "liquidation"),
            row("OLD", D(2026, 4, 1), "ok", is_stale=True, sessions_since_price=5),
        ],
        schema=LTV_INPUT_SCHEMA,
    )
    alerts = find_operational_alerts(ltv, AS_OF, {}, {})
    assert alerts.height == 0
    assert alerts.schema == pl.Schema(ALERT_SCHEMA)


# ---------------------------------------------------------------- routing

ROUTED = pl.DataFrame(
    [
        ("warn", "level", "warning", "ok"),
        ("mc", "level", "margin_call", "warning"),
        ("liq", "level", "liquidation", "margin_call"),
        ("rem-mc", "reminder", "margin_call", "margin_call"),
        ("rem-liq", "reminder", "liquidation", "liquidation"),
        ("rec-liq-mc", "recovery", "margin_call", "liquidation"),
        ("rec-mc-warn", "recovery", "warning", "margin_call"),
        ("rec-mc-ok", "recovery", "ok", "margin_call"),
        ("rec-warn-ok", "recovery", "ok", "warning"),
        ("stale", "stale_source", "stale", None),
        ("held", "data_quality", "held_back", None),
    ],
    schema={"alert_key": pl.String, "kind": pl.String, "level": pl.String, "previous_level": pl.String},
    orient="row",
)


def routed_to(routes: pl.DataFrame, channel: str) -> set[str]:
    return set(routes.filter(pl.col("channel") == channel)["alert_key"].to_list())


def test_margin_call_channel_gets_breaches_reminders_and_recoveries_from_breach_only() -> None:
    routes = route_alerts(ROUTED, [("desk", "margin_call")])
    assert routed_to(routes, "desk") == {
        "mc",
        "liq",
        "rem-mc",
        "rem-liq",
        "rec-liq-mc",
        "rec-mc-warn",
        "rec-mc-ok",
        "stale",
        "held",
    }


def test_warning_channel_gets_every_alert() -> None:
    routes = route_alerts(ROUTED, [("all", "warning")])
    assert routed_to(routes, "all") == set(ROUTED["alert_key"])


def test_liquidation_channel_gets_liquidation_only_and_every_operational_alert() -> None:
    routes = route_alerts(ROUTED, [("board", "liquidation")])
    assert routed_to(routes, "board") == {"liq", "rem-liq", "rec-liq-mc", "stale", "held"}


def test_routing_grain_is_alert_key_and_channel() -> None:
    routes = route_alerts(ROUTED, [("all", "warning"), ("desk", "margin_call"), ("board", "liquidation")])
    assert routes.columns == ["alert_key", "channel"]
    assert routes.height == routes.unique().height == 11 + 9 + 5
    assert route_alerts(ROUTED, []).height == 0


def test_routing_real_alerts_end_to_end(sessions: pl.Series) -> None:
    level = find_level_alerts(ltv_frame(*STORY), NO_PRIOR, cure_frame(A=2, B=2), sessions)
    operational = find_operational_alerts(
        pl.DataFrame([row("A", AS_OF, "margin_call", is_stale=True, sessions_since_price=4)], schema=LTV_INPUT_SCHEMA),
        AS_OF,
        {"B": "bad price"},
        {"A": "USD", "B": "USD"},
    )
    routes = route_alerts(pl.concat([level, operational]), [("desk", "margin_call"), ("all", "warning")])
    assert routed_to(routes, "all") == set(level["alert_key"]) | set(operational["alert_key"])
    assert routed_to(routes, "desk") == {
        "A/2026-04-01/level/margin_call",
        "A/2026-04-02/reminder/margin_call",
        "A/2026-04-06/recovery/ok",
        "B/2026-03-30/level/liquidation",
        "B/2026-03-31/reminder/liquidation",
        "B/2026-04-01/recovery/warning",
        "B/2026-04-06/level/margin_call",
        "A/2026-04-02/stale_source/stale",
        "B/2026-04-02/data_quality/held_back",
    }


def test_level_rank_orders_the_levels() -> None:
    assert sorted(LEVEL_RANK, key=LEVEL_RANK.__getitem__) == ["ok", "warning", "margin_call", "liquidation"]
