"""Alert messages rendered for a whole frame read exactly as `messages.render` writes each alert."""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

import polars as pl
import pytest

from marginwatch.bulk_messages import fixed, render_frame
from marginwatch.messages import render
from tests.unit.test_messages import EVERY_KIND, alert
from transforms.alerts import ALERT_SCHEMA

# Figures where rounding is easy to get wrong: exact ties (to even), near-ties, signs and edges.
AWKWARD = [
    0.0, -0.0, 0.5, 1.5, 2.5, -2.5, 0.125, 0.375, -0.125, 0.0125, 0.00125, 0.005, 0.015, 0.025, 0.035, 0.045,
    1.005, 2.675, 1234.565, 999.995, 999.5, 0.9995, 0.99949999999, 0.1, 0.2, 0.3, -0.0004, -0.00049, 1e-300,
    -1e-300, 5e-324, 123456789.125, 999999.995, 1e15, 4.4e15, 2.0**52, 2.0**60, 1e300, -7.77e12,
    math.nan, math.inf, -math.inf, None,
]  # fmt: skip


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=ALERT_SCHEMA)


def _expected(frame: pl.DataFrame) -> list[tuple[str, str]]:
    return [render(row) for row in frame.iter_rows(named=True)]


def _rendered(frame: pl.DataFrame) -> list[tuple[str, str]]:
    return list(render_frame(frame).select("subject", "body").iter_rows())


@pytest.mark.parametrize("decimals", [0, 1, 2])
@pytest.mark.parametrize("grouped", [True, False])
def test_fixed_rounds_every_awkward_figure_as_python_formats_it(decimals: int, grouped: bool) -> None:
    figures = [x for x in AWKWARD if x is not None]
    spec = f"{',' if grouped else ''}.{decimals}f"
    got = pl.DataFrame({"x": figures}, schema={"x": pl.Float64}).select(
        fixed(pl.col("x"), decimals, grouped).alias("x")
    )["x"]
    for figure, text in zip(figures, got.to_list(), strict=True):
        scaled = abs(figure) * 10**decimals
        if not math.isfinite(figure) or scaled < 2.0**52:
            assert text == format(figure, spec), figure
        else:
            assert text is None, figure  # beyond exact reach: left to the reference


def test_fixed_rounds_random_figures_as_python_formats_them() -> None:
    generator = random.Random(7)
    figures = [generator.lognormvariate(3, 6) * generator.choice((1, -1)) for _ in range(200_000)]
    figures += [generator.randint(-(10**8), 10**8) / generator.choice((8, 80, 200, 2000)) for _ in range(200_000)]
    frame = pl.DataFrame({"x": figures}, schema={"x": pl.Float64})
    for decimals, grouped in ((2, True), (0, True), (1, False)):
        got = frame.select(fixed(pl.col("x"), decimals, grouped).alias("x"))["x"].to_list()
        spec = f"{',' if grouped else ''}.{decimals}f"
        expected = [format(x, spec) if abs(x) * 10**decimals < 2.0**52 else None for x in figures]
        assert got == expected


def test_every_kind_renders_as_the_reference() -> None:
    frame = _frame([alert(kind, level) for kind, level in EVERY_KIND])
    assert _rendered(frame) == _expected(frame)


def test_random_alerts_with_awkward_figures_and_missing_fields_render_as_the_reference() -> None:
    generator = random.Random(11)
    figures = ("ltv", "price", "margin_call_price", "liquidation_price", "distance_to_margin_call", "cure_cash")
    rows = []
    for _ in range(5_000):
        kind = generator.choice(["level", "reminder", "recovery", "data_quality", "stale_source", "run_failed", "x"])
        record = alert(kind, generator.choice(["warning", "margin_call", "liquidation", "ok"]))
        record.update({name: generator.choice([*AWKWARD, generator.uniform(-3, 3)]) for name in figures})
        record.update(
            cure_shares=generator.choice([None, 0.0, 12_345.5, 1e9]),
            sessions_left=generator.choice([None, -3, -1, 0, 1, 2]),
            is_unconfirmed=generator.choice([None, False, True]),
            source=generator.choice(["synthetic", "yfinance", None]),
            currency=generator.choice(["USD", "JPY", "", None]),
            previous_level=generator.choice([None, "", "warning"]),
            detail=generator.choice([None, "", "ARM: held back"]),
            episode_start=generator.choice([None, dt.date(2026, 3, 30)]),
            cure_deadline=generator.choice([None, dt.date(2026, 4, 6)]),
            price_date=generator.choice([None, dt.date(2026, 4, 1)]),
        )
        rows.append(record)
    frame = _frame(rows)
    assert _rendered(frame) == _expected(frame)


def test_an_alert_the_reference_cannot_render_fails_the_same_way() -> None:
    with pytest.raises(KeyError, match="bogus"):
        render_frame(_frame([alert("level", "bogus")]))


def test_an_empty_frame_gets_empty_message_columns() -> None:
    rendered = render_frame(pl.DataFrame(schema=ALERT_SCHEMA))
    assert rendered.height == 0 and rendered.schema["subject"] == pl.String and rendered.schema["body"] == pl.String


def test_a_frame_rendered_in_chunks_reads_as_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("marginwatch.bulk_messages.CHUNK_ROWS", 7)
    rows = [alert(kind, level, ltv=figure) for figure in AWKWARD for kind, level in EVERY_KIND[:3]]
    frame = _frame(rows)
    assert frame.height > 7 * 10
    assert _rendered(frame) == _expected(frame)
