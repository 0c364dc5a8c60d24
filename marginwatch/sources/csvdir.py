"""Market data from a folder of yfinance CSV exports, one `DIR/<SYMBOL>.csv` per symbol."""

from __future__ import annotations

import codecs
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from marginwatch.errors import InputError, SourceUnavailable
from marginwatch.sources.base import RAW_BAR_SCHEMA, empty_bars

_PRICES = ("Open", "High", "Low", "Close")
# yfinance columns holding numbers; the raw-bar column is the name lower-cased, "_" for " ".
NUMERIC_COLUMNS = (*_PRICES, "Adj Close", "Volume", "Dividends", "Stock Splits")
REQUIRED_COLUMNS = ("Date", *_PRICES, "Volume")
KNOWN_COLUMNS = ("Date", "Symbol", *NUMERIC_COLUMNS)
# pandas writes NaN as an empty field; other exporters spell it out. Compared lower-cased.
_MISSING = ["", "nan", "null"]
# A plain date, or a timestamp as pandas writes a tz-aware index; the date part is the session.
_DATE_RE = (
    r"^\d{4}-\d{2}-\d{2}"
    r"(?:[ T](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,9})?)?(?:Z|[+-][01]\d:?[0-5]\d)?)?$"
)

# A row check: (mask of failing rows, column it concerns, problem formatted with the row's fields).
Check = tuple[pl.Expr, str | None, str]


class CsvDirSource:
    """Daily bars read from yfinance CSV exports named `<SYMBOL>.csv` in one folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.name = f"csv:{directory}"

    def fetch_bars(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        """Return RAW_BAR_SCHEMA bars with session dates in [start, end], sorted."""
        if not self.directory.is_dir():
            raise InputError(f"csv source directory {self.directory} does not exist")
        frames = [
            self._load(symbol).filter(pl.col("session_date").is_between(start, end))
            for symbol in dict.fromkeys(symbols)
        ]
        return pl.concat([empty_bars(), *frames]).sort("symbol", "session_date", maintain_order=True)

    def _load(self, symbol: str) -> pl.DataFrame:
        """Parse the whole file of one symbol."""
        # A symbol is a file name here; anything with a path part would escape the folder.
        if not symbol or Path(symbol).name != symbol:
            raise InputError(f"symbol {symbol!r} cannot name a file in {self.directory}")
        path = self.directory / f"{symbol}.csv"
        if not path.is_file():
            raise SourceUnavailable(symbol, f"no file {path}")
        return read_bars_csv(path, symbol)


def read_bars_csv(path: Path, symbol: str) -> pl.DataFrame:
    """Parse one yfinance CSV export into raw bars, raising InputError at the first defect."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read file: {exc.strerror}") from None
    text = _decode(raw, path).rstrip()
    if not text:
        raise InputError(f"{path} line 1: file is empty (expected a yfinance CSV header)")
    # Splitting the text ourselves keeps row i on line i + 2 exactly; a CSV reader pads
    # short rows silently and cannot report field counts.
    header, *lines = text.split("\n")
    names = [name.strip() for name in header.removesuffix("\r").split(",")]
    _check_header(names, path)
    rows = _split_rows(lines, names)
    _raise_first(rows, _checks(names, symbol), path, symbol)
    return _bars(rows.filter(~pl.col("_null_row")), names, symbol)


def _decode(raw: bytes, path: Path) -> str:
    """Decode UTF-8 (BOM tolerated), naming line and column of the first bad byte."""
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        field = raw.count(b",", raw.rfind(b"\n", 0, exc.start) + 1, exc.start)
        header = raw.split(b"\n", 1)[0].decode("utf-8", "replace").split(",")
        column = header[field].strip() if line > 1 and field < len(header) else str(field + 1)
        problem = f"byte 0x{raw[exc.start]:02x} is not valid UTF-8"
        raise InputError(f"{path} line {line}, column {column}: {problem}") from None


def _check_header(names: list[str], path: Path) -> None:
    """Accept only yfinance export columns, each once, with all required ones present."""
    for i, name in enumerate(names):
        if name not in KNOWN_COLUMNS:
            expected = ", ".join(KNOWN_COLUMNS)
            problem = f"unknown header layout (yfinance columns are {expected})"
            raise InputError(f"{path} line 1, column {name!r}: {problem}")
        if name in names[:i]:
            raise InputError(f"{path} line 1, column {name}: duplicate column")
    for name in REQUIRED_COLUMNS:
        if name not in names:
            raise InputError(f"{path} line 1, column {name}: missing required column")


def _split_rows(lines: list[str], names: list[str]) -> pl.DataFrame:
    """One row per data line: text, line number, field count, fields and parsed values."""
    line = pl.col("_text")
    rows = pl.DataFrame({"_text": lines}, schema={"_text": pl.String}).with_columns(
        line.str.strip_suffix("\r"), _line=pl.int_range(pl.len()) + 2
    )
    rows = rows.with_columns(
        _fields=line.str.count_matches(",", literal=True) + 1,
        _parts=line.str.split_exact(",", len(names) - 1),
    ).unnest("_parts")
    rows = rows.rename({f"field_{i}": name for i, name in enumerate(names)})
    numeric = [name for name in names if name in NUMERIC_COLUMNS]
    # Missing-value spellings become null once, so every later test is a null test.
    rows = rows.with_columns(pl.col(names).str.strip_chars()).with_columns(
        pl.when(~pl.col(c).str.to_lowercase().is_in(_MISSING)).then(pl.col(c)).alias(c) for c in numeric
    )
    date = pl.col("Date")
    parsed = date.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    return rows.with_columns(
        *(_number(pl.col(c)).alias(f"#{c}") for c in numeric),
        _date=pl.when(date.str.contains(_DATE_RE)).then(parsed),
        _null_row=pl.all_horizontal(pl.col(name).is_null() for name in _PRICES),
    )


def _number(field: pl.Expr) -> pl.Expr:
    """The field as float64, null unless it is a finite number."""
    value = field.cast(pl.Float64, strict=False)
    return pl.when(value.is_finite()).then(value)


def _checks(names: list[str], symbol: str) -> list[Check]:
    """Row checks in reporting order: structure first, then columns left to right."""
    width = f"row has {{_fields}} fields, header has {len(names)}"
    checks: list[Check] = [
        (pl.col("_text").str.strip_chars() == "", None, "blank line"),
        (pl.col("_fields") != len(names), None, width),
    ]
    for name in names:
        if name == "Date":
            checks.append((pl.col(name).fill_null("") == "", name, "no date"))
            bad = "{value!r} is not a date (expected YYYY-MM-DD)"
            checks.append((pl.col("_date").is_null(), name, bad))
        elif name == "Symbol":
            bad = "{value!r} differs from the file's symbol {symbol!r}"
            checks.append((pl.col(name) != pl.lit(symbol), name, bad))
        else:
            bad_number = pl.col(name).is_not_null() & pl.col(f"#{name}").is_null()
            checks.append((bad_number, name, "{value!r} is not a number"))
            empty = pl.col(name).is_null() & ~pl.col("_null_row")
            checks.append((empty, name, "no value though the row has prices"))
    # A date given twice parses faithfully: the quality gate quarantines duplicates with the rest.
    return checks


def _raise_first(rows: pl.DataFrame, checks: list[Check], path: Path, symbol: str) -> None:
    """Raise InputError for the earliest failing line, first failing check on that line."""
    # Null masks only arise on short rows, which the field-count check already reports.
    masks = [mask.fill_null(True).alias(str(i)) for i, (mask, _, _) in enumerate(checks)]
    flags = rows.select(masks)
    first = flags.select(pl.any_horizontal(pl.all()).arg_true().first()).item()
    if first is None:
        return
    row = rows.row(first, named=True)
    _, column, template = checks[flags.row(first).index(True)]
    problem = template.format(value=row.get(column or ""), symbol=symbol, **row)
    where = f"{path} line {row['_line']}" + (f", column {column}" if column else "")
    raise InputError(f"{where}: {problem}")


def _bars(rows: pl.DataFrame, names: list[str], symbol: str) -> pl.DataFrame:
    """Project validated rows onto RAW_BAR_SCHEMA; absent optional columns get defaults."""
    # yfinance omits Adj Close under auto_adjust=True (its default): Close is then adjusted.
    absent = {
        "Adj Close": pl.col("#Close"),
        "Dividends": pl.lit(0.0),
        "Stock Splits": pl.lit(0.0),
    }
    numbers = [
        (pl.col(f"#{name}") if name in names else absent[name]).alias(name.lower().replace(" ", "_"))
        for name in NUMERIC_COLUMNS
    ]
    out = rows.select(pl.lit(symbol).alias("symbol"), pl.col("_date").alias("session_date"), *numbers)
    return out.cast(pl.Schema(RAW_BAR_SCHEMA))
