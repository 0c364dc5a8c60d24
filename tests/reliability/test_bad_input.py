"""Bad input: malformed CSV files and invalid loan books, each refused with one line naming place and problem.

A CSV file the parser refuses exits 2 and publishes nothing: on an existing warehouse the only trace
is the failed run in `meta.runs` (the corpus book has no alert channel, so no `run_failed` notice);
on a new one no warehouse file appears. A file that parses but holds impossible bars is the quality
gate's: exit 3, the symbol held back (nothing reaches `staging.prices` or the marts), the bars in
`raw.quarantined_bars`. An invalid book exits 2 before any work: every table keeps its exact rows.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import rows
from tests.integration.test_cli import marginwatch
from tests.reliability.conftest import added_rows, changed_tables, one_error_line, table_checksums

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.usefixtures("prefect_harness")]
D = dt.date.fromisoformat
AS_OF = D("2026-01-12")
BOOK = """
[settings]
lock_timeout_seconds = 5
backups_kept = 0

[[loans]]
id = "corpus"
borrower = "Reliability corpus"
currency = "USD"
principal = 30000
annual_rate = 0.05
accrual_start = 2026-01-05
[loans.levels]
warning = 0.40
margin_call = 0.50
liquidation = 0.65
cure_target = 0.35
[[loans.collateral]]
symbol = "ARM"
shares = 1000
"""
HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
GOOD = (  # lines 2-7: the bars the seeded warehouse holds, refetched by the run for 2026-01-12
    "2026-01-02,100.0,101.0,99.0,100.5,100.5,1000\n"
    "2026-01-05,100.5,102.0,100.0,101.0,101.0,1100\n"
    "2026-01-06,101.0,103.0,100.5,102.5,102.5,1200\n"
    "2026-01-07,102.5,103.5,101.0,101.5,101.5,1300\n"
    "2026-01-08,101.5,102.5,100.0,100.0,100.0,1400\n"
    "2026-01-09,100.0,101.5,99.5,101.0,101.0,1500\n"
)
FILE = HEADER + GOOD  # every case below adds line 8, the bar of 2026-01-12, or breaks the file elsewhere
UNKNOWN = "unknown header layout (yfinance columns are Date, Symbol, Open"

# (id, ARM.csv content, the message after "bars/ARM.csv "): the parser's refusals, exit 2.
MALFORMED = [
    ("empty-file", "", "line 1: file is empty (expected a yfinance CSV header)"),
    ("blank-lines-only", "\n  \n\n", "line 1: file is empty (expected a yfinance CSV header)"),
    ("no-header", GOOD, f"line 1, column '2026-01-02': {UNKNOWN}"),
    ("lowercase-header", FILE.replace("Date,Open,High,Low,Close", "date,open,high,low,close"), f"line 1, column 'date': {UNKNOWN}"),
    ("unknown-column", FILE.replace("Volume\n", "Volume,Ticker\n", 1), f"line 1, column 'Ticker': {UNKNOWN}"),
    ("multi-level-header", "Price,Close,High,Low,Open,Volume\nTicker,ARM,ARM,ARM,ARM,ARM\n" + GOOD, f"line 1, column 'Price': {UNKNOWN}"),
    ("semicolon-separated", FILE.replace(",", ";"), f"line 1, column 'Date;Open;High;Low;Close;Adj Close;Volume': {UNKNOWN}"),
    ("trailing-comma", FILE.replace("\n", ",\n"), f"line 1, column '': {UNKNOWN}"),
    ("html-error-page", "<html><body>Will be right back</body></html>\n", f"line 1, column '<html><body>Will be right back</body></html>': {UNKNOWN}"),
    ("missing-close-column", FILE.replace(",Close,", ","), "line 1, column Close: missing required column"),
    ("duplicate-column", FILE.replace("Volume\n", "Volume,Close\n", 1), "line 1, column Close: duplicate column"),
    ("utf16-encoded", ("\ufeff" + FILE).encode("utf-16-le"), "line 1, column 1: byte 0xff is not valid UTF-8"),
    ("latin1-byte-after-bom", b"\xef\xbb\xbf" + FILE.encode() + b"2026-01-12,101.0,102.0,100.5,101.5,101.5,16\xe900\n", "line 8, column Volume: byte 0xe9 is not valid UTF-8"),
    ("non-numeric-close", FILE + "2026-01-12,101.0,102.0,100.5,abc,101.5,1600\n", "line 8, column Close: 'abc' is not a number"),
    ("crlf-non-numeric", (FILE + "2026-01-12,101.0,102.0,100.5,n/a,101.5,1600\n").replace("\n", "\r\n"), "line 8, column Close: 'n/a' is not a number"),
    ("quoted-number", FILE + '2026-01-12,101.0,102.0,100.5,"101.5",101.5,1600\n', "line 8, column Close: '\"101.5\"' is not a number"),
    ("infinite-high", FILE + "2026-01-12,101.0,inf,100.5,101.5,101.5,1600\n", "line 8, column High: 'inf' is not a number"),
    ("overflowing-low", FILE + "2026-01-12,101.0,102.0,-1e999,101.5,101.5,1600\n", "line 8, column Low: '-1e999' is not a number"),
    ("nan-close-with-prices", FILE + "2026-01-12,101.0,102.0,100.5,NaN,101.5,1600\n", "line 8, column Close: no value though the row has prices"),
    ("empty-volume", FILE + "2026-01-12,101.0,102.0,100.5,101.5,101.5,\n", "line 8, column Volume: no value though the row has prices"),
    ("thousands-separator", FILE + "2026-01-12,101.0,102.0,100.5,101.5,101.5,1,600\n", "line 8: row has 8 fields, header has 7"),
    ("short-row", FILE + "2026-01-12,101.0,102.0,100.5,101.5\n", "line 8: row has 5 fields, header has 7"),
    ("blank-line-inside", HEADER + GOOD.replace("\n2026-01-05", "\n\n2026-01-05", 1), "line 3: blank line"),
    ("empty-date", FILE + ",101.0,102.0,100.5,101.5,101.5,1600\n", "line 8, column Date: no date"),
    ("slashed-date", FILE + "2026/01/12,101.0,102.0,100.5,101.5,101.5,1600\n", "line 8, column Date: '2026/01/12' is not a date (expected YYYY-MM-DD)"),
    ("us-date", FILE + "01/12/2026,101.0,102.0,100.5,101.5,101.5,1600\n", "line 8, column Date: '01/12/2026' is not a date (expected YYYY-MM-DD)"),
    ("month-13", FILE + "2026-13-12,101.0,102.0,100.5,101.5,101.5,1600\n", "line 8, column Date: '2026-13-12' is not a date (expected YYYY-MM-DD)"),
    ("february-30", HEADER + "2026-02-30,1,2,0.5,1.5,1.5,10\n" + GOOD, "line 2, column Date: '2026-02-30' is not a date (expected YYYY-MM-DD)"),
    ("bad-row-years-before-the-run", HEADER + "2020-01-02,1,2,0.5,x,1,10\n" + GOOD, "line 2, column Close: 'x' is not a number"),
    ("symbol-column-disagrees", "Date,Symbol" + HEADER[4:] + "".join(f"{r[:10]},ARM{r[10:]}" for r in GOOD.splitlines(keepends=True)) + "2026-01-12,AMD,101.0,102.0,100.5,101.5,101.5,1600\n", "line 8, column Symbol: 'AMD' differs from the file's symbol 'ARM'"),
]  # fmt: skip

# (id, ARM.csv content, a failed check the message names, the quarantined session dates): the gate's, exit 3.
IMPOSSIBLE = [
    ("negative-close", FILE + "2026-01-12,101.0,102.0,100.5,-101.5,-101.5,1600\n", "bars.close_positive (1 rows)", ["2026-01-12"]),
    ("zero-prices", FILE + "2026-01-12,0,0,0,0,0,1600\n", "bars.open_positive (1 rows)", ["2026-01-12"]),
    ("high-below-low", FILE + "2026-01-12,101.0,100.0,102.0,101.5,101.5,1600\n", "bars.high_at_least_open (1 rows)", ["2026-01-12"]),
    ("negative-volume", FILE + "2026-01-12,101.0,102.0,100.5,101.5,101.5,-1600\n", "bars.volume_not_negative (1 rows)", ["2026-01-12"]),
    ("duplicate-date-other-close", FILE + "2026-01-12,101.0,102.0,100.5,101.5,101.5,1600\n2026-01-12,101.0,102.0,100.5,101.0,101.0,1600\n", "bars.unique_symbol_session (2 rows)", ["2026-01-12", "2026-01-12"]),
    ("exact-duplicate-row", FILE + "2026-01-12,101.0,102.0,100.5,101.5,101.5,1600\n" * 2, "bars.unique_symbol_session (2 rows)", ["2026-01-12", "2026-01-12"]),
    ("saturday-bar", FILE + "2026-01-10,101.0,102.0,100.5,101.5,101.5,1600\n2026-01-12,101.0,102.0,100.5,101.5,101.5,1600\n", "bars.nasdaq_session (1 rows)", ["2026-01-10"]),
]  # fmt: skip

RUNS = "SELECT flow, status, source, as_of_end, error FROM meta.runs"
PUBLISHED = {"staging.prices", "staging.fx_rates", "marts.loan_ltv_daily"}


@pytest.fixture(scope="session")
def corpus_template(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """A folder with the corpus book and a warehouse seeded from the good bars through 2026-01-09."""
    from flows.daily import daily

    folder = tmp_path_factory.mktemp("corpus")
    (folder / "book.toml").write_text(BOOK)
    (folder / "bars").mkdir()
    (folder / "bars" / "ARM.csv").write_text(FILE)
    daily(str(folder / "book.toml"), str(folder / "w.duckdb"), f"csv:{folder / 'bars'}", D("2026-01-09"))
    return folder


@pytest.fixture
def corpus(corpus_template: Path, tmp_path: Path) -> Path:
    """The test's folder with the corpus book, a copy of the seeded warehouse and an empty `bars/`."""
    shutil.copy(corpus_template / "book.toml", tmp_path / "book.toml")
    shutil.copy(corpus_template / "w.duckdb", tmp_path / "w.duckdb")
    (tmp_path / "bars").mkdir()
    return tmp_path / "w.duckdb"


def write_csv(content: str | bytes) -> None:
    Path("bars/ARM.csv").write_bytes(content.encode() if isinstance(content, str) else content)


RUN = ("--config", "book.toml", "--warehouse", "w.duckdb", "run", "--source", "csv:bars", "--as-of", str(AS_OF))


def test_the_corpus_holds_25_malformed_files_and_the_good_file_runs(
    corpus: Path, cli: Callable[..., tuple[int, str, str]]
) -> None:
    assert len(MALFORMED) >= 25 and len({case[0] for case in MALFORMED + IMPOSSIBLE}) == len(MALFORMED + IMPOSSIBLE)
    write_csv(FILE + "2026-01-12,101.0,102.0,100.5,101.5,101.5,1600\n")
    code, _, err = cli(*RUN)
    assert (code, err) == (0, "")
    assert rows(corpus, "SELECT count(*) FROM marts.loan_ltv_daily WHERE as_of_date = '2026-01-12'") == [(1,)]


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_csv_exits_2_naming_file_line_and_column_and_publishes_nothing(
    corpus: Path, cli: Callable[..., tuple[int, str, str]], content: str | bytes, expected: str
) -> None:
    before, runs = table_checksums(corpus), rows(corpus, RUNS)
    write_csv(content)
    code, _, err = cli(*RUN)
    line = one_error_line(err)
    assert code == 2, err
    assert line.startswith(f"marginwatch: error: bars/ARM.csv {expected}"), line
    assert changed_tables(before, table_checksums(corpus)) == {"meta.runs"}
    error = line.removeprefix("marginwatch: error: ")
    assert added_rows(runs, rows(corpus, RUNS)) == [("daily", "failed", "csv:bars", AS_OF, error)]


@pytest.mark.parametrize(("content", "check", "held"), [c[1:] for c in IMPOSSIBLE], ids=[c[0] for c in IMPOSSIBLE])
def test_impossible_bars_exit_3_held_back_by_the_gate_and_quarantined(
    corpus: Path, cli: Callable[..., tuple[int, str, str]], content: str, check: str, held: list[str]
) -> None:
    before = table_checksums(corpus)
    write_csv(content)
    code, _, err = cli(*RUN)
    line = one_error_line(err)
    assert code == 3, err
    assert line.startswith("marginwatch: error: data-quality gate held back symbols ARM; loans corpus: failed "), line
    assert check in line and line.endswith("; failing rows are in raw.quarantined_bars")
    assert not changed_tables(before, table_checksums(corpus)) & PUBLISHED
    quarantined = rows(corpus, "SELECT session_date FROM raw.quarantined_bars ORDER BY 1")
    assert quarantined == [(D(day),) for day in held]
    assert rows(corpus, RUNS)[-1][:2] == ("daily", "dq_failed")


def book(old: str, new: str, text: str = BOOK) -> str:
    """Return the corpus book with one change."""
    assert old in text, old
    return text.replace(old, new, 1)


LOANS = BOOK[BOOK.index("[[loans]]") :]
FILE_CHANNEL = '\n[[channels]]\nname = "desk"\nfile = "alerts.log"\n'
LOAN = "loan 'corpus': field"
# (id, book.toml content or None for no file, the message after "bad.toml: ").
INVALID_BOOKS = [
    ("not-toml", book("[[loans.collateral]]", "[[loans.collateral]"), "not valid TOML: Expected ']]' at the end of an array declaration (at line 18, column 19)"),
    ("not-utf8", book('"Reliability corpus"', '"Fiabilit\xe9"').encode("latin-1"), "cannot read config file: 'utf-8' codec can't decode byte 0xe9"),
    ("no-such-file", None, "config file not found"),
    ("empty-file", "", "loans: Field required"),
    ("settings-without-loans", "[settings]\nstale_after_sessions = 3\n", "loans: Field required"),
    ("loans-as-a-table", book("[[loans]]", "[loans]"), "loans: Input should be a valid list"),
    ("unknown-section", book("[settings]", "[setings]"), "field setings: Extra inputs are not permitted"),
    ("unknown-setting", book("lock_timeout_seconds = 5", "lock_timeout = 5"), "field settings.lock_timeout: Extra inputs are not permitted"),
    ("unknown-loan-key", book('borrower = "Reliability corpus"', 'borrower = "Reliability corpus"\nborower = "typo"'), f"{LOAN} borower: Extra inputs are not permitted"),
    ("negative-principal", book("principal = 30000", "principal = -30000"), f"{LOAN} principal: Input should be greater than or equal to 0"),
    ("principal-as-text", book("principal = 30000", 'principal = "30k"'), f"{LOAN} principal: Input should be a valid number"),
    ("rate-of-150-percent", book("annual_rate = 0.05", "annual_rate = 1.5"), f"{LOAN} annual_rate: Input should be less than 1"),
    ("levels-out-of-order", book("warning = 0.40", "warning = 0.55"), f"{LOAN} levels: levels must satisfy cure_target < warning < margin_call < liquidation, got 0.35 / 0.55 / 0.5 / 0.65"),
    ("level-missing", book("cure_target = 0.35\n", ""), f"{LOAN} levels.cure_target: Field required"),
    ("duplicate-loan-id", BOOK + LOANS, "loans: duplicate loan id 'corpus'"),
    ("unknown-currency", book('currency = "USD"', 'currency = "XYZ"'), f"{LOAN} currency: unknown ISO 4217 currency 'XYZ'"),
    ("missing-collateral", BOOK[: BOOK.index("[[loans.collateral]]")], f"{LOAN} collateral: Field required"),
    ("empty-collateral", book("[loans.levels]", "collateral = []\n[loans.levels]", BOOK[: BOOK.index("[[loans.collateral]]")]), f"{LOAN} collateral: List should have at least 1 item"),
    ("symbol-with-a-path", book('symbol = "ARM"', 'symbol = "../ARM"'), f"{LOAN} collateral[0].symbol: String should match pattern"),
    ("symbol-pledged-twice", BOOK + '[[loans.collateral]]\nsymbol = "ARM"\nshares = 5\n', f"{LOAN} collateral: symbol 'ARM' is pledged twice; merge the lines"),
    ("haircut-of-100-percent", book("shares = 1000", "shares = 1000\nhaircut = 1.0"), f"{LOAN} collateral[0].haircut: Input should be less than 1"),
    ("zero-shares", book("shares = 1000", "shares = 0"), f"{LOAN} collateral[0].shares: Input should be greater than 0"),
    ("date-as-text", book("accrual_start = 2026-01-05", 'accrual_start = "yesterday"'), f"{LOAN} accrual_start: Input should be a valid date or datetime"),
    ("february-30", book("accrual_start = 2026-01-05", "accrual_start = 2026-02-30"), "not valid TOML: Invalid date or datetime (at line 12, column 17)"),
    ("date-with-a-time", book("accrual_start = 2026-01-05", "accrual_start = 2026-01-05T10:00:00"), f"{LOAN} accrual_start: Datetimes provided to dates should have zero time"),
    ("channel-without-target", BOOK + '\n[[channels]]\nname = "desk"\n', "field channels[0]: give exactly one of url_env (an environment variable holding an Apprise URL) or file"),
    ("channel-with-two-targets", BOOK + FILE_CHANNEL + 'url_env = "DESK_URL"\n', "field channels[0]: give exactly one of url_env"),
    ("duplicate-channel", BOOK + FILE_CHANNEL + FILE_CHANNEL, "field channels: duplicate channel name 'desk'"),
    ("unknown-min-level", BOOK + FILE_CHANNEL + 'min_level = "panic"\n', "field channels[0].min_level: Input should be 'warning', 'margin_call' or 'liquidation'"),
    ("unknown-task-runner", book("lock_timeout_seconds = 5", 'task_runner = "celery"'), "field settings.task_runner: Input should be 'threads' or 'dask'"),
    ("negative-lock-timeout", book("lock_timeout_seconds = 5", "lock_timeout_seconds = -1"), "field settings.lock_timeout_seconds: Input should be greater than or equal to 0"),
    ("staleness-out-of-range", book("lock_timeout_seconds = 5", "stale_after_sessions = 100"), "field settings.stale_after_sessions: Input should be less than or equal to 60"),
]  # fmt: skip


def accepted(reason: str) -> tuple[()]:
    """Return no marks: `reason` records why a book that loaded before the fix must be refused."""
    return ()


# Books that loaded before their fix although they should not: each says why it must be refused.
ACCEPTED_BOOKS = [
    pytest.param(
        book('currency = "USD"', 'currency = "usd"'), f"{LOAN} currency:", id="lowercase-currency",
        marks=accepted("pycountry matches 'usd' case-blind, the loan keeps 'usd' and is valued through a made-up "
                       "usd/USD FX rate; require ^[A-Z]{3}$ in the Currency type"),
    ),
    pytest.param(
        book("lock_timeout_seconds = 5", 'source = "ftp"'), "field settings.source:", id="unknown-source-in-book",
        marks=accepted("Settings.source is any string; `run` fails later in make_source with a line that does not "
                       "name the file; validate it in Settings (synthetic | yfinance | csv:DIR)"),
    ),
    pytest.param(
        book("shares = 1000", "shares = inf"), f"{LOAN} collateral[0].shares:", id="infinite-shares",
        marks=accepted("gt=0 lets inf through and the run publishes LTV 0%; set allow_inf_nan=False on _Strict"),
    ),
    pytest.param(
        book("principal = 30000", "principal = true"), f"{LOAN} principal:", id="boolean-principal",
        marks=accepted("lax mode turns `true` into a principal of 1; make the numeric fields Strict() floats"),
    ),
    pytest.param(
        book("accrual_start = 2026-01-05", "accrual_start = 1900-01-02"), f"{LOAN} accrual_start:",
        id="accrual-before-the-calendar",
        marks=accepted("the first run then dies with exit 1 (ValueError: outside the supported calendar); bound "
                       "accrual_start and shares_as_of to calendar.FIRST_DAY..LAST_DAY"),
    ),
]  # fmt: skip

# The run's source folder is absent: a book that slips through fails fast at the fetch, not after a whole run.
USE_BOOK = ("run", "--source", "csv:absent", "--as-of", str(AS_OF))


def write_book(content: str | bytes | None) -> None:
    if content is not None:
        Path("bad.toml").write_bytes(content.encode() if isinstance(content, str) else content)


def assert_refused_without_a_trace(
    corpus: Path, cli: Callable[..., tuple[int, str, str]], content: str | bytes | None, expected: str
) -> None:
    """The book is refused with one line, on the seeded warehouse and on a new one, and nothing is written."""
    write_book(content)
    before = table_checksums(corpus)
    for warehouse in ("w.duckdb", "new.duckdb"):
        code, _, err = cli("--config", "bad.toml", "--warehouse", warehouse, *USE_BOOK)
        assert code == 2, err
        assert err.startswith(f"marginwatch: error: bad.toml: {expected}") and err.count("\n") == 1, err
    assert table_checksums(corpus) == before
    assert sorted(p.name for p in Path().iterdir() if p.name.startswith("new.")) == []


def test_the_book_corpus_holds_15_invalid_books_and_the_valid_one_loads(
    corpus: Path, cli: Callable[..., tuple[int, str, str]]
) -> None:
    assert len(INVALID_BOOKS) >= 15 and len({case[0] for case in INVALID_BOOKS}) == len(INVALID_BOOKS)
    write_book(BOOK)
    code, _, err = cli("--config", "bad.toml", "--warehouse", "w.duckdb", "status")
    assert (code, err) == (0, "")


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in INVALID_BOOKS], ids=[c[0] for c in INVALID_BOOKS])
def test_invalid_book_exits_2_naming_file_loan_and_field_and_writes_nothing(
    corpus: Path, cli: Callable[..., tuple[int, str, str]], content: str | bytes | None, expected: str
) -> None:
    assert_refused_without_a_trace(corpus, cli, content, expected)


@pytest.mark.parametrize(("content", "expected"), ACCEPTED_BOOKS)
def test_book_that_once_loaded_is_now_refused_with_one_line(
    corpus: Path, cli: Callable[..., tuple[int, str, str]], content: str, expected: str
) -> None:
    assert_refused_without_a_trace(corpus, cli, content, expected)


def test_real_process_malformed_csv_on_a_new_warehouse_prints_one_line_and_creates_no_file(
    corpus: Path, api_url: str, tmp_path: Path
) -> None:
    write_csv(FILE + "2026-01-12,101.0,102.0,100.5,abc,101.5,1600\n")
    args = ("--config", "book.toml", "--warehouse", "new.duckdb", "run", "--source", "csv:bars", "--as-of", str(AS_OF))
    result = marginwatch(*args, cwd=tmp_path, env={"PREFECT_API_URL": api_url})
    assert result.returncode == 2
    assert result.stderr == "marginwatch: error: bars/ARM.csv line 8, column Close: 'abc' is not a number\n"
    assert not (tmp_path / "new.duckdb").exists() and not (tmp_path / "new.duckdb.wal").exists()


def test_real_process_impossible_bar_exits_3_with_one_line(corpus: Path, api_url: str, tmp_path: Path) -> None:
    before = table_checksums(corpus)
    write_csv(IMPOSSIBLE[0][1])
    result = marginwatch(*RUN, cwd=tmp_path, env={"PREFECT_API_URL": api_url})
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "bars.close_positive (1 rows)" in result.stderr, result.stderr
    assert not changed_tables(before, table_checksums(corpus)) & PUBLISHED


@pytest.mark.parametrize(("case", "warehouse"), [("not-toml", "w.duckdb"), ("negative-principal", "new.duckdb")])
def test_real_process_invalid_book_prints_one_line_and_writes_nothing(
    corpus: Path, tmp_path: Path, case: str, warehouse: str
) -> None:
    content, expected = next(c[1:] for c in INVALID_BOOKS if c[0] == case)
    write_book(content)
    before = table_checksums(corpus)
    result = marginwatch("--config", "bad.toml", "--warehouse", warehouse, *USE_BOOK, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"marginwatch: error: bad.toml: {expected}\n"
    assert table_checksums(corpus) == before and not (tmp_path / "new.duckdb").exists()
