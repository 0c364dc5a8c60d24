"""Run a suite with Great Expectations and turn its results into rows the warehouse keeps.

GX has no Polars data source: frames cross the boundary as pandas (through Arrow), which
measured faster and simpler than a SQL data source on the warehouse file (see README).
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import polars as pl

from expectations.suites import SUITES, Check

log = logging.getLogger("marginwatch")

RESULT_SCHEMA: dict[str, pl.DataType] = {
    "suite": pl.String(),
    "check_name": pl.String(),
    "expectation_type": pl.String(),
    "columns": pl.String(),
    "severity": pl.String(),
    "success": pl.Boolean(),
    "observed_value": pl.String(),
    "unexpected_count": pl.Int64(),
    "element_count": pl.Int64(),
}
REASON_SCHEMA: dict[str, pl.DataType] = {"_row": pl.UInt32(), "reasons": pl.String(), "is_blocked": pl.Boolean()}


@dataclass(frozen=True)
class SuiteOutcome:
    """One suite's verdict on one frame."""

    suite: str
    results: pl.DataFrame  # RESULT_SCHEMA, one row per expectation
    row_reasons: pl.DataFrame  # REASON_SCHEMA, one row per failing input row
    table_blocked: bool  # a blocking expectation failed without naming rows

    @property
    def blocked_rows(self) -> pl.DataFrame:
        """Return the failing rows whose failures include a blocking check."""
        return self.row_reasons.filter(pl.col("is_blocked"))


@lru_cache(maxsize=1)
def _context() -> Any:
    """Return one ephemeral GX context with the three suites and their validation definitions."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO lines are noise to users
    # This module sets its own logger to INFO on import, under the parent's WARNING: quiet it too.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("marginwatch")
    for name, checks in SUITES.items():
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for check in checks():
            suite.add_expectation(check.build(gxe))
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    return context


def gx_context() -> Any:
    """Return the process's GX context (for building Data Docs)."""
    return _context()


def validate(suite: str, frame: pl.DataFrame, run_name: str) -> SuiteOutcome:
    """Validate `frame` against `suite` and return per-expectation results and failing rows."""
    from great_expectations.core.run_identifier import RunIdentifier

    checks = {check.name: check for check in SUITES[suite]()}
    definition = _context().validation_definitions.get(suite)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = definition.run(
            batch_parameters={"dataframe": frame.to_pandas()},
            result_format={"result_format": "COMPLETE"},
            run_id=RunIdentifier(run_name=run_name),
        )
    rows: list[tuple[Any, ...]] = []
    reasons: list[tuple[int, str, bool]] = []
    table_blocked = False
    for item in result.results:
        check = checks[item.expectation_config.meta["check"]]
        outcome = item.result or {}
        failed_rows = outcome.get("unexpected_index_list") or []
        if not item.success and check.blocking and not failed_rows:
            table_blocked = True
        reasons.extend((int(i), check.name, check.blocking) for i in failed_rows)
        rows.append(_result_row(suite, check, item, outcome))
    return SuiteOutcome(suite, pl.DataFrame(rows, schema=RESULT_SCHEMA, orient="row"), _reasons(reasons), table_blocked)


def _result_row(suite: str, check: Check, item: Any, outcome: dict[str, Any]) -> tuple[Any, ...]:
    columns = [check.kwargs[k] for k in ("column", "column_A", "column_B") if k in check.kwargs]
    columns += check.kwargs.get("column_list", [])
    observed = outcome.get("observed_value")
    if observed is None and outcome.get("partial_unexpected_list"):
        observed = {"sample_unexpected": outcome["partial_unexpected_list"][:5]}
    return (
        suite,
        check.name,
        item.expectation_config.type,
        ",".join(columns),
        "blocking" if check.blocking else "warning",
        bool(item.success),
        None if observed is None else json.dumps(observed, default=str),
        outcome.get("unexpected_count"),
        outcome.get("element_count"),
    )


def _reasons(failures: list[tuple[int, str, bool]]) -> pl.DataFrame:
    if not failures:
        return pl.DataFrame(schema=REASON_SCHEMA)
    frame = pl.DataFrame(failures, schema={"_row": pl.UInt32, "check": pl.String, "blocking": pl.Boolean}, orient="row")
    return (
        frame.group_by("_row")
        .agg(reasons=pl.col("check").unique(maintain_order=True).str.join("; "), is_blocked=pl.col("blocking").any())
        .sort("_row")
    )
