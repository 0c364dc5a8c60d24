"""CsvDirSource: parsing yfinance CSV exports, date filtering and strict error reporting."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

from marginwatch.errors import InputError, SourceUnavailable
from marginwatch.sources.base import RAW_BAR_SCHEMA
from marginwatch.sources.csvdir import CsvDirSource

EVER = (dt.date(1900, 1, 1), dt.date(2100, 1, 1))
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def write(directory: Path, name: str, content: str | bytes) -> Path:
    """Write one CSV file (text is written as UTF-8 bytes, untranslated)."""
    path = directory / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def load(directory: Path, *symbols: str, start=EVER[0], end=EVER[1]) -> pl.DataFrame:
    """Fetch bars for symbols from a folder."""
    return CsvDirSource(directory).fetch_bars(list(symbols), start, end)


def test_name_uses_directory_as_given(tmp_path: Path) -> None:
    assert CsvDirSource(Path("data/csv")).name == "csv:data/csv"
    assert CsvDirSource(tmp_path).name == f"csv:{tmp_path}"


def test_standard_layout_exact_values(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ARM.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-02,70.5,72.25,69.0,71.0,70.9,1200300\n"
        "2024-01-03,71.0,71.5,68.75,69.5,69.4,980000\n",
    )
    bars = load(tmp_path, "ARM")
    assert bars.schema == pl.Schema(RAW_BAR_SCHEMA)
    assert bars.rows() == [
        (
            "ARM",
            dt.date(2024, 1, 2),
            70.5,
            72.25,
            69.0,
            71.0,
            70.9,
            1200300.0,
            0.0,
            0.0,
        ),
        ("ARM", dt.date(2024, 1, 3), 71.0, 71.5, 68.75, 69.5, 69.4, 980000.0, 0.0, 0.0),
    ]


def test_symbol_column_anywhere(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ARM.csv",
        "Date,Open,High,Symbol,Low,Close,Adj Close,Volume\n2024-01-02,70.5,72.25,ARM,69.0,71.0,70.9,1200300\n",
    )
    assert load(tmp_path, "ARM").row(0) == (
        "ARM",
        dt.date(2024, 1, 2),
        70.5,
        72.25,
        69.0,
        71.0,
        70.9,
        1200300.0,
        0.0,
        0.0,
    )


def test_layout_without_adj_close_uses_close(tmp_path: Path) -> None:
    write(
        tmp_path,
        "JPY=X.csv",
        "Date,Close,High,Low,Open,Volume\n2024-01-02,141.25,142.0,140.5,140.75,0\n",
    )
    bars = load(tmp_path, "JPY=X")
    assert bars.schema == pl.Schema(RAW_BAR_SCHEMA)
    assert bars.row(0) == (
        "JPY=X",
        dt.date(2024, 1, 2),
        140.75,
        142.0,
        140.5,
        141.25,
        141.25,
        0.0,
        0.0,
        0.0,
    )


def test_actions_columns(tmp_path: Path) -> None:
    write(
        tmp_path,
        "KO.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume,Dividends,Stock Splits\n"
        "2024-06-13,62.0,62.5,61.5,62.25,61.0,100,0.485,0.0\n"
        "2024-06-14,62.25,63.0,62.0,62.75,61.5,200,0.0,4.0\n",
    )
    bars = load(tmp_path, "KO")
    assert bars.schema == pl.Schema(RAW_BAR_SCHEMA)
    assert bars["dividends"].to_list() == [0.485, 0.0]
    assert bars["stock_splits"].to_list() == [0.0, 4.0]
    assert bars["adj_close"].to_list() == [61.0, 61.5]


def test_timestamp_dates_keep_local_date(tmp_path: Path) -> None:
    write(
        tmp_path,
        "SONY.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-02 00:00:00-05:00,1,2,0.5,1.5,1.5,10\n"
        "2024-01-03 00:00:00+09:00,1,2,0.5,1.5,1.5,10\n"
        "2024-01-04 23:00:00+00:00,1,2,0.5,1.5,1.5,10\n",
    )
    assert load(tmp_path, "SONY")["session_date"].to_list() == [
        dt.date(2024, 1, 2),
        dt.date(2024, 1, 3),
        dt.date(2024, 1, 4),
    ]


def test_float32_looking_values_kept_as_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ARM.csv",
        "Date,Symbol,Open,High,Low,Close,Adj Close,Volume\n"
        "2023-09-14,ARM,56.099998474121094,66.27999877929688,55.540000915527344,"
        "63.59000015258789,63.59000015258789,130534500\n",
    )
    row = load(tmp_path, "ARM").row(0, named=True)
    assert row["open"] == 56.099998474121094
    assert row["close"] == 63.59000015258789
    assert row["volume"] == 130534500.0


def test_crlf_bom_whitespace_and_trailing_blank_lines(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ARM.csv",
        b"\xef\xbb\xbfDate,Open,High,Low,Close,Volume\r\n2024-01-02, 1.5 ,2,1,1.75,10\r\n\r\n\n",
    )
    assert load(tmp_path, "ARM").row(0) == (
        "ARM",
        dt.date(2024, 1, 2),
        1.5,
        2.0,
        1.0,
        1.75,
        1.75,
        10.0,
        0.0,
        0.0,
    )


def test_null_rows_dropped(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ARM.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-02,1,2,0.5,1.5,1.5,10\n"
        "2024-01-03,,,,,,\n"
        "2024-01-04,null,null,null,null,null,0\n"
        "2024-01-05,NaN,NaN,NaN,NaN,,\n"
        "2024-01-08,1,2,0.5,1.25,1.25,20\n",
    )
    bars = load(tmp_path, "ARM")
    assert bars["session_date"].to_list() == [dt.date(2024, 1, 2), dt.date(2024, 1, 8)]
    assert bars["close"].to_list() == [1.5, 1.25]


def test_price_sanity_not_checked(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ARM.csv",
        "Date,Open,High,Low,Close,Volume\n2024-01-02,-1,0.5,3,2,1e3\n",
    )
    assert load(tmp_path, "ARM").row(0)[2:8] == (-1.0, 0.5, 3.0, 2.0, 2.0, 1000.0)


def test_header_only_gives_no_rows(tmp_path: Path) -> None:
    write(tmp_path, "ARM.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n")
    bars = load(tmp_path, "ARM")
    assert bars.height == 0
    assert bars.schema == pl.Schema(RAW_BAR_SCHEMA)


def test_date_range_is_inclusive_and_filters(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ARM.csv",
        "Date,Open,High,Low,Close,Volume\n" + "".join(f"2024-01-0{d},1,2,0.5,1.{d},10\n" for d in range(2, 9)),
    )
    bars = load(tmp_path, "ARM", start=dt.date(2024, 1, 3), end=dt.date(2024, 1, 5))
    assert bars["session_date"].to_list() == [dt.date(2024, 1, d) for d in (3, 4, 5)]
    assert bars["close"].to_list() == [1.3, 1.4, 1.5]


def test_symbol_without_rows_in_range_contributes_nothing(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ARM.csv",
        "Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,10\n",
    )
    write(
        tmp_path,
        "JPY=X.csv",
        "Date,Close,High,Low,Open,Volume\n2023-12-29,141,142,140,141,0\n",
    )
    bars = load(tmp_path, "JPY=X", "ARM", start=dt.date(2024, 1, 1), end=dt.date(2024, 1, 31))
    assert bars["symbol"].to_list() == ["ARM"]
    assert bars.schema == pl.Schema(RAW_BAR_SCHEMA)


def test_sorted_by_symbol_then_date_and_deduplicated_request(tmp_path: Path) -> None:
    write(
        tmp_path,
        "JPY=X.csv",
        "Date,Close,High,Low,Open,Volume\n2024-01-03,143,144,142,143,0\n2024-01-02,141,142,140,141,0\n",
    )
    write(
        tmp_path,
        "ARM.csv",
        "Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,10\n",
    )
    bars = load(tmp_path, "JPY=X", "ARM", "JPY=X")
    assert bars.select("symbol", "session_date").rows() == [
        ("ARM", dt.date(2024, 1, 2)),
        ("JPY=X", dt.date(2024, 1, 2)),
        ("JPY=X", dt.date(2024, 1, 3)),
    ]


def test_no_symbols_gives_empty_frame(tmp_path: Path) -> None:
    bars = load(tmp_path)
    assert bars.height == 0
    assert bars.schema == pl.Schema(RAW_BAR_SCHEMA)


def test_missing_file_is_source_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable) as caught:
        load(tmp_path, "JPY=X")
    assert caught.value.symbol == "JPY=X"
    assert caught.value.cause == f"no file {tmp_path / 'JPY=X.csv'}"
    assert not caught.value.transient


def test_missing_directory_is_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match="nowhere"):
        load(missing, "ARM")


def test_symbol_with_path_part_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot name a file"):
        load(tmp_path, "../ARM")


def test_example_message_exactly(tmp_path: Path) -> None:
    rows = "".join(f"2024-01-{d:02d},1,2,0.5,1.5,10\n" for d in range(2, 14))
    path = write(
        tmp_path,
        "ARM.csv",
        "Date,Open,High,Low,Close,Volume\n" + rows + "2024-01-14,1,2,0.5,abc,10\n",
    )
    with pytest.raises(InputError) as caught:
        load(tmp_path, "ARM")
    assert str(caught.value) == f"{path} line 14, column Close: 'abc' is not a number"


def test_whole_file_validated_even_outside_range(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ARM.csv",
        "Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,x,10\n2024-01-02,1,2,0.5,1.5,10\n",
    )
    with pytest.raises(InputError, match=r"ARM\.csv line 2, column Close: 'x' is not a number"):
        load(tmp_path, "ARM", start=dt.date(2024, 1, 1), end=dt.date(2024, 12, 31))


def test_earliest_line_reported_first(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ARM.csv",
        "Date,Open,High,Low,Close,Volume\n"
        "2024-01-02,1,2,0.5,1.5,10\n"
        "2024-01-03,1,2,0.5,1.5,lots\n"
        "2024-01-04,1,2,0.5,bad,10,11\n",
    )
    with pytest.raises(InputError, match=r"line 3, column Volume: 'lots' is not a number$"):
        load(tmp_path, "ARM")


def test_ten_thousand_rows_parse_exactly(tmp_path: Path) -> None:
    start = dt.date(1990, 1, 1)
    rows = "".join(
        f"{start + dt.timedelta(days=i)},{100 + i % 7}.59000015258789,101.5,99.25,100.125,100.125,{i}\n"
        for i in range(10_000)
    )
    write(tmp_path, "ARM.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n" + rows)
    bars = load(tmp_path, "ARM")
    assert bars.height == 10_000
    assert bars["volume"].sum() == sum(range(10_000))
    assert bars["open"][3] == 103.59000015258789


HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
GOOD = "2024-01-02,1,2,0.5,1.5,1.5,10\n"
WITH_SYMBOL = "Date,Symbol,Open,High,Low,Close,Adj Close,Volume\n"

# (id, file content, message after "<path> ") — the message is checked from its start.
BAD_FILES = [
    ("empty", "", "line 1: file is empty"),
    ("whitespace-only", "  \n\n", "line 1: file is empty"),
    ("missing-close", "Date,Open,High,Low,Adj Close,Volume\n", "line 1, column Close: missing required column"),
    ("missing-date", "Open,High,Low,Close,Volume\n", "line 1, column Date: missing required column"),
    ("missing-volume", "Date,Open,High,Low,Close\n", "line 1, column Volume: missing required column"),
    ("multilevel-header", "Price,Close,High,Low,Open,Volume\nTicker,ARM,ARM,ARM,ARM,ARM\n", "line 1, column 'Price': unknown header layout"),
    ("unknown-column", "Date,Open,High,Low,Close,Volume,Foo\n", "line 1, column 'Foo': unknown header layout"),
    ("lowercase-header", "date,open,high,low,close,volume\n", "line 1, column 'date': unknown header layout"),
    ("unnamed-index", ",Open,High,Low,Close,Volume\n", "line 1, column '': unknown header layout"),
    ("duplicate-column", "Date,Open,High,Low,Close,Close,Volume\n", "line 1, column Close: duplicate column"),
    ("not-a-number", HEADER + GOOD + "2024-01-03,1,2,0.5,abc,1.5,10\n", "line 3, column Close: 'abc' is not a number"),
    ("thousands-sep-volume", HEADER + "2024-01-02,1,2,0.5,1.5,1.5,12k\n", "line 2, column Volume: '12k' is not a number"),
    ("infinite", HEADER + "2024-01-02,1,inf,0.5,1.5,1.5,10\n", "line 2, column High: 'inf' is not a number"),
    ("bad-in-null-row", HEADER + "2024-01-02,,,,,,x\n", "line 2, column Volume: 'x' is not a number"),
    ("empty-close", HEADER + GOOD + "2024-01-03,1,2,0.5,,1.5,10\n", "line 3, column Close: no value though the row has prices"),
    ("empty-open", HEADER + "2024-01-02,,2,0.5,1.5,1.5,10\n", "line 2, column Open: no value though the row has prices"),
    ("nan-adj-close", HEADER + "2024-01-02,1,2,0.5,1.5,NaN,10\n", "line 2, column Adj Close: no value though the row has prices"),
    ("empty-volume", HEADER + "2024-01-02,1,2,0.5,1.5,1.5,\n", "line 2, column Volume: no value though the row has prices"),
    ("empty-date", HEADER + GOOD + ",1,2,0.5,1.5,1.5,10\n", "line 3, column Date: no date"),
    ("month-13", HEADER + "2024-13-01,1,2,0.5,1.5,1.5,10\n", "line 2, column Date: '2024-13-01' is not a date"),
    ("feb-30", HEADER + "2024-02-30,1,2,0.5,1.5,1.5,10\n", "line 2, column Date: '2024-02-30' is not a date"),
    ("us-date", HEADER + "01/02/2024,1,2,0.5,1.5,1.5,10\n", "line 2, column Date: '01/02/2024' is not a date"),
    ("bad-time", HEADER + "2024-01-02 25:00:00-05:00,1,2,0.5,1.5,1.5,10\n", "line 2, column Date: '2024-01-02 25:00:00-05:00' is not a date"),
    ("symbol-differs", WITH_SYMBOL + "2024-01-02,ARM,1,2,0.5,1.5,1.5,10\n2024-01-03,AMD,1,2,0.5,1.5,1.5,10\n", "line 3, column Symbol: 'AMD' differs from the file's symbol 'ARM'"),
    ("symbol-empty", WITH_SYMBOL + "2024-01-02,,1,2,0.5,1.5,1.5,10\n", "line 2, column Symbol: '' differs from the file's symbol 'ARM'"),
    ("too-many-fields", HEADER + GOOD + "2024-01-03,1,2,0.5,1.5,1.5,10,99\n", "line 3: row has 8 fields, header has 7"),
    ("too-few-fields", HEADER + GOOD + "2024-01-03,1,2,0.5,1.5,1.5\n", "line 3: row has 6 fields, header has 7"),
    ("blank-line-inside", HEADER + GOOD + "\n2024-01-03,1,2,0.5,1.5,1.5,10\n", "line 3: blank line"),
    ("not-utf8-value", (HEADER + GOOD).encode() + b"2024-01-03,1,2,0.5,1.\xff,1.5,10\n", "line 3, column Close: byte 0xff is not valid UTF-8"),
    ("not-utf8-header", b"Date,Open,High,Low,Cl\xf6se,Volume\n", "line 1, column 5: byte 0xf6 is not valid UTF-8"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_malformed_file_is_input_error(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = write(tmp_path, "ARM.csv", content)
    with pytest.raises(InputError) as caught:
        load(tmp_path, "ARM")
    message = str(caught.value)
    assert message.startswith(f"{path} {expected}")
    assert "\n" not in message
    assert caught.value.exit_code == 2


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real market data not present at {SHARED_DATA}")
def test_real_yahoo_exports(tmp_path: Path) -> None:
    shutil.copy(SHARED_DATA / "ARM_daily.csv", tmp_path / "ARM.csv")
    shutil.copy(SHARED_DATA / "USDJPY_daily.csv", tmp_path / "JPY=X.csv")
    bars = load(tmp_path, "ARM", "JPY=X")
    assert bars.schema == pl.Schema(RAW_BAR_SCHEMA)

    arm = bars.filter(pl.col("symbol") == "ARM")
    assert arm.height == 655
    first = arm.row(0, named=True)
    assert first["session_date"] == dt.date(2023, 9, 14)
    assert first["open"] == pytest.approx(56.10, abs=1e-4)
    assert first["close"] == pytest.approx(63.59, abs=1e-4)
    peak = arm.filter(pl.col("session_date").dt.year() == 2024).sort("close").row(-1, named=True)
    assert peak["session_date"] == dt.date(2024, 7, 10)
    assert peak["close"] == pytest.approx(186.46, abs=1e-4)
    assert (arm["adj_close"] == arm["close"]).all()

    raw_jpy = pl.read_csv(tmp_path / "JPY=X.csv", infer_schema=False)
    all_null = raw_jpy.filter(pl.all_horizontal(pl.col("Open", "High", "Low", "Close").is_null()))
    jpy = bars.filter(pl.col("symbol") == "JPY=X")
    assert jpy.height == 7_606 - all_null.height
    assert jpy["session_date"].max() == dt.date(2026, 2, 23)
    assert (jpy["adj_close"] == jpy["close"]).all()


def test_a_date_given_twice_is_parsed_faithfully_for_the_quality_gate(tmp_path: Path) -> None:
    write(tmp_path, "ARM.csv", HEADER + GOOD + "2024-01-02,1,2,0.5,1.75,1.75,10\n")
    bars = load(tmp_path, "ARM")
    assert bars["close"].to_list() == [1.5, 1.75]
    assert bars["session_date"].to_list() == [dt.date(2024, 1, 2)] * 2
