"""The validated loan book as the frames the transforms take."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import polars as pl

from marginwatch.config import Book, Channel, Settings
from transforms.ltv import COLLATERAL_SCHEMA, LOAN_SCHEMA, required_fx_symbols


@dataclass(frozen=True)
class BookFrames:
    """A validated book as a run takes it: its settings and channels, its loans and pledged lines as frames."""

    settings: Settings
    channels: list[Channel]
    loans: pl.DataFrame  # LOAN_SCHEMA, one row per loan in the book's order
    collateral: pl.DataFrame  # COLLATERAL_SCHEMA, one row per pledged line in the book's order

    @classmethod
    def of(cls, book: Book) -> BookFrames:
        """Return the book's frames."""
        return cls(book.settings, list(book.channels), loan_frame(book), collateral_frame(book))

    @property
    def max_window(self) -> int:
        """Return the longest valuation window in sessions (1 where every loan is valued at the close)."""
        return int(self.loans["valuation_window"].max() or 1)  # type: ignore[arg-type]

    def accrual_starts(self) -> dict[str, dt.date]:
        """Return each loan's accrual start."""
        return dict(zip(self.loans["loan_id"].to_list(), self.loans["accrual_start"].to_list(), strict=True))

    def with_settings(self, settings: Settings) -> BookFrames:
        """Return the same book run with other settings."""
        return dataclasses.replace(self, settings=settings)


def loan_frame(book: Book) -> pl.DataFrame:
    """Return one row per loan with its terms and levels."""
    rows = [
        {
            "loan_id": loan.id,
            "currency": loan.currency,
            "principal": loan.principal,
            "annual_rate": loan.annual_rate,
            "accrual_start": loan.accrual_start,
            "valuation_window": loan.valuation_window if loan.valuation == "avg_close" else 1,
            "cure_period_days": loan.cure_period_days,
            "warning": loan.levels.warning,
            "margin_call": loan.levels.margin_call,
            "liquidation": loan.levels.liquidation,
            "cure_target": loan.levels.cure_target,
        }
        for loan in book.loans
    ]
    return pl.DataFrame(rows, schema=LOAN_SCHEMA)


def collateral_frame(book: Book) -> pl.DataFrame:
    """Return one row per pledged line (loan x symbol)."""
    rows = [
        {
            "loan_id": loan.id,
            "symbol": line.symbol,
            "symbol_currency": line.currency,
            "shares": line.shares,
            "haircut": line.haircut,
            "shares_as_of": line.shares_as_of or loan.accrual_start,
        }
        for loan in book.loans
        for line in loan.collateral
    ]
    return pl.DataFrame(rows, schema=COLLATERAL_SCHEMA)


def market_symbols(collateral: pl.DataFrame, loans: pl.DataFrame) -> list[str]:
    """Return every Yahoo symbol a book's pledged lines and loans need: collateral tickers, then FX symbols."""
    stocks = sorted(collateral["symbol"].unique().to_list())
    return stocks + required_fx_symbols(collateral, loans)
