"""Choose a market-data source by its name on the command line or in the config."""

from __future__ import annotations

from pathlib import Path

from marginwatch.errors import UsageError
from marginwatch.sources.base import MarketSource

SOURCE_HELP = "yfinance | synthetic | csv:DIR"


def make_source(spec: str, seed: int) -> MarketSource:
    """Return the source named by `spec`; UsageError for an unknown name."""
    if spec == "synthetic":
        from marginwatch.sources.synthetic import SyntheticSource

        return SyntheticSource(seed)
    if spec == "yfinance":
        from marginwatch.sources.yahoo import YahooSource

        return YahooSource()
    if spec.startswith("csv:") and len(spec) > 4:
        from marginwatch.sources.csvdir import CsvDirSource

        return CsvDirSource(Path(spec[4:]))
    raise UsageError(f"unknown source {spec!r}; expected {SOURCE_HELP}")
