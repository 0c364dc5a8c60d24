"""The one module that reads configuration files and environment variables.

Configuration is read once, at the edge, into typed objects; everything inward takes
plain values.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import pycountry
import rtoml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from marginwatch.errors import ConfigError

DEFAULT_CONFIG = Path("marginwatch.toml")
DEFAULT_WAREHOUSE = Path("marginwatch.duckdb")
EMBEDDED_BOOK = Path(__file__).with_name("default_book.toml")


def _iso_currency(code: str) -> str:
    if code not in _iso_codes():
        raise ValueError(f"unknown ISO 4217 currency {code!r}")
    return code


@lru_cache(maxsize=1)
def _iso_codes() -> frozenset[str]:
    """Every ISO 4217 code: a book of 10,000 loans asks 40,000 times (0.13 s through pycountry's lookup)."""
    return frozenset(currency.alpha_3 for currency in pycountry.currencies)


Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$"), AfterValidator(_iso_currency)]


# The exchange calendar's span (marginwatch.calendar.FIRST_DAY..LAST_DAY), kept here so that reading a
# book does not import the calendar library; a test checks the two agree.
CALENDAR_SPAN = (dt.date(1995, 1, 3), dt.date(2040, 12, 31))
CalendarDate = Annotated[dt.date, Field(ge=CALENDAR_SPAN[0], le=CALENDAR_SPAN[1])]
Amount = Annotated[float, Strict()]


def _refuse_repeats(names: list[str], message: str) -> None:
    """Raise ValueError naming the first name that occurs twice."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(message.format(name))
        seen.add(name)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)


class Levels(_Strict):
    """LTV fractions: cure_target < warning < margin_call < liquidation."""

    warning: float = Field(gt=0)
    margin_call: float = Field(gt=0)
    liquidation: float = Field(gt=0)
    cure_target: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Levels:
        if not self.cure_target < self.warning < self.margin_call < self.liquidation:
            raise ValueError(
                "levels must satisfy cure_target < warning < margin_call < liquidation, got "
                f"{self.cure_target} / {self.warning} / {self.margin_call} / {self.liquidation}"
            )
        return self


class CollateralLine(_Strict):
    """One pledged line: a number of shares of one symbol."""

    symbol: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9.\-=^]+$")
    currency: Currency = "USD"
    shares: Amount = Field(gt=0)
    haircut: float = Field(default=0.0, ge=0, lt=1)
    shares_as_of: CalendarDate | None = None  # when the count was stated (default: the loan's accrual_start)


class Loan(_Strict):
    """A margin loan and its pledged collateral."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    borrower: str = Field(min_length=1)
    lenders: list[str] = Field(default_factory=list)
    currency: Currency
    principal: Amount = Field(ge=0)
    annual_rate: float = Field(ge=0, lt=1)
    accrual_start: CalendarDate
    valuation: Literal["close", "avg_close"] = "close"
    valuation_window: int = Field(default=1, ge=1, le=260)
    cure_period_days: int = Field(default=3, ge=0, le=60)
    levels: Levels
    collateral: list[CollateralLine] = Field(min_length=1)

    @field_validator("collateral")
    @classmethod
    def _distinct_symbols(cls, lines: list[CollateralLine]) -> list[CollateralLine]:
        _refuse_repeats([line.symbol for line in lines], "symbol {!r} is pledged twice; merge the lines")
        return lines


Shock = Annotated[float, Field(gt=-1, lt=1)]


class RiskSettings(_Strict):
    """Forward-looking risk: stress scenarios and the hit-probability estimators."""

    enabled: bool = True
    price_shocks: list[Shock] = Field(default=[-0.10, -0.20, -0.30, -0.40, -0.50], min_length=1, max_length=50)
    fx_shocks: list[Shock] = Field(default=[-0.10, -0.20], max_length=50)  # the collateral's currency vs the loan's
    paths: int = Field(default=10_000, ge=10_000, le=1_000_000)
    seed: int = Field(default=20250911, ge=0)
    ewma_lambda: float = Field(default=0.94, gt=0, lt=1)
    ewma_sessions: int = Field(default=250, ge=20, le=2_000)
    bootstrap_sessions: int = Field(default=500, ge=20, le=5_000)


class Settings(_Strict):
    """Run-wide settings; every field has a default."""

    source: str = Field(default="synthetic", pattern=r"^(synthetic|yfinance|csv:.+)$")  # csv:DIR
    stale_after_sessions: int = Field(default=3, ge=0, le=60)
    lock_timeout_seconds: float = Field(default=60.0, ge=0)
    synthetic_seed: int = 20250911
    max_close_move: float = Field(default=0.40, gt=0, le=10)
    data_docs_dir: Path | None = None
    alert_lookback_sessions: int = Field(default=5, ge=0, le=10_000)
    task_runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None  # an existing Dask scheduler, e.g. tcp://10.0.0.5:8786
    # Workers of a local cluster started per run; on any Dask cluster, the LTV partitions sent at once.
    dask_workers: int = Field(default=2, ge=1, le=256)
    ltv_partition_loans: int = Field(default=20_000, ge=1)  # a partition is also at most ~1M loan-days
    backups_kept: int = Field(default=7, ge=0, le=1000)  # the daily flow's backups; 0 turns them off
    risk: RiskSettings = Field(default_factory=RiskSettings)
    reports_dir: Path | None = None  # where the daily flow writes its report (default: beside the warehouse)


LEVELS = ("warning", "margin_call", "liquidation")


class Channel(_Strict):
    """Where alerts go: an Apprise URL read from an environment variable, or a local file."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    url_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: Path | None = None
    min_level: Literal["warning", "margin_call", "liquidation"] = "warning"
    attach_report: bool = False  # email channels: attach the daily run's HTML report to its alerts

    @model_validator(mode="after")
    def _one_target(self) -> Channel:
        if (self.url_env is None) == (self.file is None):
            raise ValueError("give exactly one of url_env (an environment variable holding an Apprise URL) or file")
        return self


class Book(_Strict):
    """The loan book: the loans watched, where alerts go, and the run settings."""

    settings: Settings = Field(default_factory=Settings)
    loans: list[Loan] = Field(min_length=1)
    channels: list[Channel] = Field(default_factory=list)

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, channels: list[Channel]) -> list[Channel]:
        _refuse_repeats([c.name for c in channels], "duplicate channel name {!r}")
        return channels

    @field_validator("loans")
    @classmethod
    def _unique_ids(cls, loans: list[Loan]) -> list[Loan]:
        _refuse_repeats([loan.id for loan in loans], "duplicate loan id {!r}")
        return loans


@dataclass(frozen=True)
class Environment:
    """Paths and options chosen by flags, environment variables, or defaults."""

    config_path: Path
    config_is_embedded: bool
    warehouse_path: Path


def resolve_environment(config: Path | None, warehouse: Path | None) -> Environment:
    """Return the config and warehouse paths: flag, then environment variable, then default."""
    env_config = os.environ.get("MARGINWATCH_CONFIG")
    chosen = config or (Path(env_config) if env_config else None)
    embedded = chosen is None and not DEFAULT_CONFIG.exists()
    if chosen is None:
        chosen = EMBEDDED_BOOK if embedded else DEFAULT_CONFIG
    env_warehouse = os.environ.get("MARGINWATCH_WAREHOUSE")
    warehouse_path = warehouse or (Path(env_warehouse) if env_warehouse else DEFAULT_WAREHOUSE)
    return Environment(chosen, embedded, warehouse_path)


def crash_point_named() -> str | None:
    """Return the crash point the reliability suite asked for (`MARGINWATCH_CRASH_AT`), if any."""
    return os.environ.get("MARGINWATCH_CRASH_AT") or None


def load_book(path: Path) -> Book:
    """Return the validated loan book in the TOML file at `path`; ConfigError otherwise."""
    return parse_book(path, read_book_bytes(path))


def read_book_bytes(path: Path) -> bytes:
    """Return the book file's bytes; ConfigError when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None


def parse_book(path: Path, data: bytes) -> Book:
    """Return the validated loan book in `data`, the bytes of the file at `path`; ConfigError otherwise."""
    try:
        raw = _parse_toml(data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n"))  # as text mode reads it
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Book.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc, raw)}") from None


def book_cache_dir() -> Path | None:
    """Return where validated large books are kept between runs: `MARGINWATCH_CACHE_DIR`, else the user's cache.

    An empty `MARGINWATCH_CACHE_DIR` turns the cache off (None).
    """
    chosen = os.environ.get("MARGINWATCH_CACHE_DIR")
    if chosen is not None:
        return Path(chosen) / "books" if chosen.strip() else None
    import platformdirs

    return Path(platformdirs.user_cache_dir("marginwatch", appauthor=False)) / "books"


def _parse_toml(text: str) -> dict[str, Any]:
    """Return the parsed TOML: Rust's parser first (a 10,000-loan book in 0.15 s, not 1 s), the standard one on error.

    On a document the fast parser refuses, the standard library's parser decides, and its error
    names the line and column in one line.
    """
    try:
        parsed: dict[str, Any] = rtoml.loads(text)
    except rtoml.TomlParsingError:
        return tomllib.loads(text)
    return parsed


def _first_error(exc: ValidationError, raw: dict[str, Any]) -> str:
    error = exc.errors()[0]
    loc = list(error["loc"])
    where = []
    if len(loc) >= 2 and loc[0] == "loans" and isinstance(loc[1], int):
        where.append(f"loan {_loan_label(raw, loc[1])}")
        loc = loc[2:]
    elif loc and loc[0] == "loans":
        where.append("loans")
        loc = loc[1:]
    field = _dotted(loc)
    if field:
        where.append(f"field {field}")
    message = str(error["msg"]).removeprefix("Value error, ")
    more = exc.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return ": ".join([*where, message]) + suffix


def _loan_label(raw: dict[str, Any], index: int) -> str:
    loans = raw.get("loans")
    if isinstance(loans, list) and index < len(loans) and isinstance(loans[index], dict):
        loan_id = loans[index].get("id")
        if isinstance(loan_id, str) and loan_id:
            return repr(loan_id)
    return f"#{index + 1}"


def _dotted(loc: list[Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def channel_url(channel: Channel) -> str:
    """Return the channel's Apprise URL from its environment variable; ConfigError when unset.

    The URL is a secret: it is never stored, logged, or put in an error message.
    """
    if channel.url_env is None:
        raise ConfigError(f"channel {channel.name!r} has no url_env")
    url = os.environ.get(channel.url_env, "").strip()
    if not url:
        raise ConfigError(f"channel {channel.name!r}: environment variable {channel.url_env} is not set")
    return url


def check_channel_urls(channels: Iterable[Channel]) -> None:
    """Raise ConfigError for the first channel whose URL's environment variable is unset."""
    for channel in channels:
        if channel.url_env:
            channel_url(channel)


def prefect_api_url() -> str:
    """Return the Prefect API to serve against: PREFECT_API_URL, else a local `prefect server start`."""
    url = os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    return url


def set_prefect_defaults(debug: bool = False) -> None:
    """Keep Prefect local, quiet and silent toward the outside unless the user chose otherwise."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Our own output reports failures in one line; Prefect's console logs repeat them with tracebacks.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if debug else "CRITICAL")
