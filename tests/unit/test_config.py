"""The loan-book config: valid books load; each invalid one names file, loan and field."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from marginwatch.config import EMBEDDED_BOOK, load_book, resolve_environment
from marginwatch.errors import ConfigError

VALID = """
[[loans]]
id = "a"
borrower = "B"
currency = "USD"
principal = 100
annual_rate = 0.05
accrual_start = 2025-01-02
[loans.levels]
warning = 0.4
margin_call = 0.5
liquidation = 0.65
cure_target = 0.35
[[loans.collateral]]
symbol = "ARM"
shares = 10
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "book.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_embedded_book_holds_a_usd_and_a_yen_loan_on_arm() -> None:
    book = load_book(EMBEDDED_BOOK)
    assert {loan.id: loan.currency for loan in book.loans} == {"sbg-arm-usd": "USD", "sbg-arm-jpy": "JPY"}
    assert all(line.symbol == "ARM" for loan in book.loans for line in loan.collateral)
    assert book.loans[0].principal == 8_500_000_000


def test_every_undisclosed_figure_in_the_embedded_book_is_marked_assumption() -> None:
    text = EMBEDDED_BOOK.read_text(encoding="utf-8")
    for key in ("annual_rate", "accrual_start", "cure_period_days", "shares", "haircut"):
        lines = [line for line in text.splitlines() if line.strip().startswith(f"{key} =")]
        assert lines and all("ASSUMPTION" in line or key == "haircut" for line in lines), key
    assert text.count("[loans.levels]") == text.count("[loans.levels]                 # ASSUMPTION")


def test_minimal_book_gets_defaults() -> None:
    loan = load_book_text(VALID).loans[0]
    assert loan.valuation == "close" and loan.valuation_window == 1 and loan.cure_period_days == 3
    assert loan.collateral[0].currency == "USD" and loan.collateral[0].haircut == 0.0
    assert loan.accrual_start == dt.date(2025, 1, 2)


def load_book_text(text: str, tmp: Path | None = None):  # type: ignore[no-untyped-def]
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        return load_book(write(Path(directory), text))


INVALID = [
    ("missing field", VALID.replace('borrower = "B"\n', ""), "loan 'a': field borrower: Field required"),
    ("wrong type", VALID.replace("principal = 100", 'principal = "lots"'), "loan 'a': field principal:"),
    ("levels out of order", VALID.replace("warning = 0.4", "warning = 0.55"), "loan 'a': field levels:"),
    ("negative shares", VALID.replace("shares = 10", "shares = -10"), "field collateral[0].shares:"),
    ("haircut out of range", VALID.replace("shares = 10", "shares = 10\nhaircut = 1.0"), "collateral[0].haircut"),
    ("unknown currency", VALID.replace('currency = "USD"', 'currency = "XYZ"'), "unknown ISO 4217 currency 'XYZ'"),
    ("duplicate loan id", VALID + VALID.replace("[[loans]]\n", "[[loans]]\n", 1), "duplicate loan id 'a'"),
    ("unknown field", VALID.replace('borrower = "B"', 'borrower = "B"\nborower = "C"'), "field borower: Extra"),
    ("bad date", VALID.replace("2025-01-02", '"yesterday"'), "field accrual_start:"),
    ("no collateral", VALID.split("[[loans.collateral]]")[0], "field collateral: Field required"),
    ("no loans", "[settings]\nstale_after_sessions = 3\n", "field loans: Field required" if False else "loans"),
    ("bad valuation", VALID.replace("accrual_start", 'valuation = "vwap"\naccrual_start'), "field valuation:"),
    ("negative rate", VALID.replace("annual_rate = 0.05", "annual_rate = -0.01"), "field annual_rate:"),
    ("pledged twice", VALID + '[[loans.collateral]]\nsymbol = "ARM"\nshares = 5\n', "pledged twice"),
    ("not toml", "[[loans]\nid = 1", "not valid TOML"),
    ("shock past -100%", "[settings.risk]\nprice_shocks = [-0.1, -1.5]\n" + VALID, "settings.risk.price_shocks[1]"),
    ("too few paths", "[settings.risk]\npaths = 500\n" + VALID, "field settings.risk.paths:"),
    ("decay of one", "[settings.risk]\newma_lambda = 1.0\n" + VALID, "field settings.risk.ewma_lambda:"),
]


@pytest.mark.parametrize(("case", "text", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_book_is_one_line_naming_file_loan_and_field(
    tmp_path: Path, case: str, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_book(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert "\n" not in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["windows", "old mac"])
def test_a_book_with_other_line_endings_reads_the_same(tmp_path: Path, newline: str) -> None:
    text = EMBEDDED_BOOK.read_text(encoding="utf-8")
    other = tmp_path / "book.toml"
    other.write_bytes(text.replace("\n", newline).encode())
    assert load_book(other) == load_book(EMBEDDED_BOOK)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_book(tmp_path / "absent.toml")


def test_environment_prefers_flag_then_variable_then_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MARGINWATCH_CONFIG", raising=False)
    monkeypatch.delenv("MARGINWATCH_WAREHOUSE", raising=False)
    env = resolve_environment(None, None)
    assert env.config_is_embedded and env.config_path == EMBEDDED_BOOK
    assert env.warehouse_path == Path("marginwatch.duckdb")
    (tmp_path / "marginwatch.toml").write_text(VALID)
    assert resolve_environment(None, None).config_path == Path("marginwatch.toml")
    monkeypatch.setenv("MARGINWATCH_CONFIG", "/etc/other.toml")
    monkeypatch.setenv("MARGINWATCH_WAREHOUSE", "/data/w.duckdb")
    env = resolve_environment(None, None)
    assert env.config_path == Path("/etc/other.toml") and env.warehouse_path == Path("/data/w.duckdb")
    env = resolve_environment(Path("flag.toml"), Path("flag.duckdb"))
    assert env.config_path == Path("flag.toml") and env.warehouse_path == Path("flag.duckdb")


def test_the_book_accepts_exactly_the_exchange_calendars_span() -> None:
    from marginwatch import calendar
    from marginwatch.config import CALENDAR_SPAN

    assert CALENDAR_SPAN == (calendar.FIRST_DAY, calendar.LAST_DAY)


def test_ltv_partitions_run_one_at_a_time_on_threads_and_one_per_worker_on_dask() -> None:
    from flows.runners import partitions_at_once

    settings = load_book(EMBEDDED_BOOK).settings
    assert partitions_at_once(settings) == 1
    assert partitions_at_once(settings.model_copy(update={"task_runner": "dask", "dask_workers": 3})) == 3
    assert partitions_at_once(settings.model_copy(update={"dask_address": "tcp://127.0.0.1:8786"})) == 2
