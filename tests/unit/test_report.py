"""The daily report on a real DuckDB file of literal rows: sections, formats, limits, bad input, no writes."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from marginwatch import cli, report_chart
from marginwatch import report as report_module
from marginwatch.errors import InputError
from marginwatch.report import ReportFiles, write_report
from marginwatch.report_data import CHART_LOANS, read_report_data
from tests.report_fixture import AS_OF, JPY_LOAN, USD_LOAN, build_warehouse, sessions
from warehouse.connection import open_reader

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportFiles, str]:
    """Return a warehouse of two loans, the report written from it by default, and the report's HTML."""
    warehouse = build_warehouse(tmp_path_factory.mktemp("book") / "book.duckdb")
    files = write_report(warehouse, None, None, timeout=5)
    return warehouse, files, files.html.read_text(encoding="utf-8")


def test_report_goes_beside_the_warehouse_for_the_latest_date(made: tuple[Path, ReportFiles, str]) -> None:
    warehouse, files, _ = made
    folder = warehouse.parent / "book-reports"
    assert files == ReportFiles(html=folder / f"report-{AS_OF}.html", png=folder / f"report-{AS_OF}.png")
    assert files.html.is_file() and files.png.is_file()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_report_has_every_section_and_a_headline(made: tuple[Path, ReportFiles, str]) -> None:
    html = made[2]
    for heading in (
        "Loans",
        "History",
        f"Stress at {AS_OF}",
        "Risk of reaching the levels",
        "Open alerts",
        "Data quality",
    ):
        assert re.search(rf"<h2 id=\"\w+\">{re.escape(heading)}</h2>", html), heading
    assert f"As of <strong>{AS_OF}</strong>" in html and "2 loans" in html
    tiles = dict(
        re.findall(r'<span class="count">([^<]+)</span><span class="what">([^<]+)</span>', html)[i][::-1]
        for i in range(5)
    )
    assert tiles == {"liquidation": "0", "margin call": "1", "warning": "1", "ok": "0", "latest run": "dq failed"}
    assert "SYNTHETIC DATA" in html


def test_figures_are_formatted_with_separators_currency_codes_and_percentages(
    made: tuple[Path, ReportFiles, str],
) -> None:
    html = made[2]
    for figure in (
        "1,000,000,000 USD",  # USD loan balance
        "150,000,000,000 JPY",  # JPY loan balance
        "328,000,000 USD",  # USD loan cure cash
        "52.1%",  # USD loan LTV
        "48.00 USD",  # price
        "50.00 USD",  # margin-call price
        "40% / 50% / 65%",  # levels
        "183,417,600 USD",  # VaR 1 day
        "95.0%",  # P(margin call within 21 sessions)
        "&lt;0.1%",  # a tiny probability is not shown as 0.0%
        "0.0 vs 3",  # days of cover vs cure period
        "several tickers",  # the multi-ticker loan has no single price
    ):
        assert figure in html, figure


def test_tables_list_the_riskiest_loan_first_with_status_badges(made: tuple[Path, ReportFiles, str]) -> None:
    html = made[2]
    loans = html[html.index('id="loans"') : html.index('id="history"')]
    assert loans.index(USD_LOAN) < loans.index(JPY_LOAN)
    assert 'class="badge badge-margin_call block">margin call<' in loans
    assert 'class="badge badge-warning block">warning<' in loans


def test_stress_table_has_fx_shock_rows_only_for_the_cross_currency_loan(made: tuple[Path, ReportFiles, str]) -> None:
    html = made[2]
    stress = html[html.index('id="stress"') : html.index('id="risk"')]
    assert stress.count(f">{JPY_LOAN}<") == 3 and stress.count(f">{USD_LOAN}<") == 1
    assert ">+10%<" in stress and ">-10%<" in stress and "same currency" in stress
    assert "cure 462,400,000 USD" in stress and "liquidation" in stress  # USD loan at -20%


def test_open_alerts_show_breached_loans_and_pending_deliveries(made: tuple[Path, ReportFiles, str]) -> None:
    html = made[2]
    alerts = html[html.index('id="alerts"') : html.index('id="quality"')]
    assert "MARGIN CALL acme-arm-usd: cure by 2026-04-01 (2 left)" in alerts
    assert "0 of 1 channels" in alerts and "risk-desk" in alerts and "1 session left" in alerts
    assert "WARNING acme-multi-jpy" not in alerts  # at warning, delivered: not open


def test_data_quality_shows_the_latest_run_and_its_failed_checks_escaped(made: tuple[Path, ReportFiles, str]) -> None:
    html = made[2]
    quality = html[html.index('id="quality"') :]
    assert "run-0002" in quality and "1 of 2 passed" in quality and "close_positive" in quality
    assert "session_unique" not in quality  # passed checks are not listed
    assert "prices.close_positive &lt;blocking&gt;" in quality and "<blocking>" not in html


def test_page_is_self_contained_and_accessible(made: tuple[Path, ReportFiles, str]) -> None:
    html = made[2]
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert re.findall(r'\ssrc="([^"]{0,22})', html) == ["data:image/png;base64,"]
    assert '<html lang="en">' in html and "<title>" in html
    alt = re.search(r'<img id="chart" src="[^"]+" alt="([^"]+)"', html)
    assert (
        alt
        and f"{USD_LOAN}: LTV 52.1% (margin call); levels warning 40%, margin call 50%, liquidation 65%" in alt.group(1)
    )
    assert html.count("<caption>") >= 6 and '<th scope="col"' in html and '<th scope="row"' in html


def test_chart_is_a_sensible_png_and_the_same_as_the_embedded_one(made: tuple[Path, ReportFiles, str]) -> None:
    _, files, html = made
    png = files.png.read_bytes()
    assert png.startswith(PNG_SIGNATURE) and 20_000 < len(png) < 2_000_000
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.width >= 1000 and 400 <= image.height <= 3000
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
        assert len(colours) > 50  # drawn, not blank
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    assert embedded and base64.b64decode(embedded.group(1)) == png


def test_chart_png_holds_every_pixel_matplotlib_draws(made: tuple[Path, ReportFiles, str]) -> None:
    """The report's chart is written as RGB at a faster zlib level: the same picture as matplotlib's own RGBA PNG."""
    warehouse, files, _ = made
    with open_reader(warehouse, 5) as con:
        data = read_report_data(con, AS_OF)
    charted = data.loans.head(CHART_LOANS)
    ours = Image.open(files.png)
    buffer = io.BytesIO()
    report_chart.draw_chart(charted, data.history).savefig(buffer, format="png")
    theirs = np.asarray(Image.open(buffer))
    assert ours.mode == "RGB" and ours.info["dpi"] == pytest.approx((100, 100), abs=0.01)
    assert theirs.shape[2] == 4 and (theirs[..., 3] == 255).all()  # opaque: the alpha channel said nothing
    assert np.array_equal(np.asarray(ours), theirs[..., :3])


def test_empty_risk_tables_say_not_computed(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb", risk=False)
    html = write_report(warehouse, None, None, timeout=5).html.read_text(encoding="utf-8")
    assert f"Stress scenarios: not computed for {AS_OF}." in html
    assert f"Hit probabilities and value at risk: not computed for {AS_OF}." in html
    assert "Price shock" not in html and "Margin call within" not in html


def test_an_earlier_as_of_date_reports_that_date(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb")
    day = sessions()[10]
    files = write_report(warehouse, day, tmp_path / "out" / "daily.html", timeout=5)
    assert files == ReportFiles(tmp_path / "out" / "daily.html", tmp_path / "out" / "daily.png")
    html = files.html.read_text(encoding="utf-8")
    assert f"As of <strong>{day}</strong>" in html
    assert f"Stress scenarios: not computed for {day}." in html  # stress rows exist only for the latest date
    assert "No loan is at margin call or liquidation" in html


def test_an_as_of_date_without_ltv_rows_is_an_input_error_naming_both_dates(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb")
    with pytest.raises(InputError) as info:
        write_report(warehouse, AS_OF.replace(day=28), None, timeout=5)
    assert str(info.value) == f"no LTV rows for 2026-03-28; the latest date available is {AS_OF}"
    assert not (tmp_path / "w-reports").exists()


def test_a_missing_warehouse_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no warehouse here yet"):
        write_report(tmp_path / "absent.duckdb", None, None, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_a_warehouse_without_ltv_rows_is_an_input_error(tmp_path: Path) -> None:
    duckdb.connect(str(tmp_path / "empty.duckdb")).close()
    with pytest.raises(InputError, match="no LTV rows yet; run `marginwatch run` first"):
        write_report(tmp_path / "empty.duckdb", None, None, timeout=5)


def test_out_must_name_the_html_file(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb")
    with pytest.raises(InputError, match="--out names the HTML file"):
        write_report(warehouse, None, tmp_path / "chart.png", timeout=5)


def test_writing_a_report_leaves_the_warehouse_bytes_unchanged(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb")
    before = hashlib.sha256(warehouse.read_bytes()).hexdigest()
    write_report(warehouse, None, None, timeout=5)
    write_report(warehouse, AS_OF, tmp_path / "again.html", timeout=5)
    assert hashlib.sha256(warehouse.read_bytes()).hexdigest() == before
    assert not warehouse.with_name("w.duckdb.wal").exists()


def test_a_failed_write_keeps_the_previous_report_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb")
    files = write_report(warehouse, None, None, timeout=5)
    previous = files.html.read_bytes()

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(report_module.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_report(warehouse, None, None, timeout=5)
    assert files.html.read_bytes() == previous
    assert sorted(p.name for p in files.html.parent.iterdir()) == [files.html.name, files.png.name]


def test_a_book_shows_at_most_six_loans_in_the_chart_and_fifty_rows_per_table(tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "w.duckdb", extra_loans=60, days=10)
    html = write_report(warehouse, None, None, timeout=5).html.read_text(encoding="utf-8")
    alt = re.search(r'alt="([^"]+)"', html)
    assert alt and "for the 6 riskiest of 62 loans" in alt.group(1) and alt.group(1).count(": LTV ") == 6
    loans = html[html.index('id="loans"') : html.index('id="history"')]
    assert loans.count('<th scope="row"') == 50
    assert "Showing the first 50 rows, riskiest first; 12 more not shown." in loans
    first_row = re.search(r'<th scope="row">([^<]+)<', loans)
    assert first_row and first_row.group(1) == "book-059"  # the riskiest: LTV furthest beyond its margin call
    assert ">book-000<" not in loans and f">{JPY_LOAN}<" not in loans  # the least risky are left out


def test_cli_report_prints_both_paths_and_maps_bad_dates_to_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build_warehouse(tmp_path / "w.duckdb")
    monkeypatch.chdir(tmp_path)
    for name in ("MARGINWATCH_CONFIG", "MARGINWATCH_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "set_prefect_defaults", lambda debug=False: None)  # a report needs no Prefect

    def main(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["marginwatch", "--warehouse", "w.duckdb", "report", *args])
        with pytest.raises(SystemExit) as info:
            cli.main()
        captured = capsys.readouterr()
        return int(info.value.code or 0), captured.out, captured.err

    code, out, _ = main("--out", "r/today.html")
    assert code == 0 and out.splitlines() == ["report: r/today.html", "chart: r/today.png"]
    assert (tmp_path / "r" / "today.png").is_file()
    code, _, err = main("--as-of", "2026-03-28")
    assert code == 2
    assert err == f"marginwatch: error: no LTV rows for 2026-03-28; the latest date available is {AS_OF}\n"


def test_the_breach_table_of_a_book_in_a_crash_lists_the_riskiest_and_counts_every_row() -> None:
    import datetime as dt

    import polars as pl

    from marginwatch.report_view import MAX_ROWS, breach_table

    loans = pl.DataFrame({"loan_id": [f"L{i:03d}" for i in range(40)], "status": ["margin_call"] * 40})
    day = dt.date(2026, 3, 24)
    alerts = pl.DataFrame(  # two alerts for the even loans, none for the odd ones: 20 * 2 + 20 rows
        [
            {
                "loan_id": f"L{i:03d}",
                "level": "margin_call",
                "as_of_date": day,
                "kind": kind,
                "subject": f"MARGIN CALL L{i:03d}",
                "cure_deadline": None,
                "sessions_left": None,
                "delivered": 1,
                "channels": 1,
            }
            for i in range(0, 40, 2)
            for kind in ("level", "reminder")
        ]
    )
    table = breach_table(alerts, loans)
    assert len(table.rows) == MAX_ROWS == 50 and table.omitted == 60 - 50
    assert [row[0].text for row in table.rows[:4]] == ["L000", "L000", "L001", "L002"]
