"""Run a suite with Great Expectations and turn its results into rows the warehouse keeps.

GX has no Polars data source: frames cross the boundary as pandas (through Arrow), which
measured faster and simpler than a SQL data source on the warehouse file (see README).
"""

from __future__ import annotations

import ctypes
import json
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import polars as pl

from expectations.suites import SUITES, Check, checked_columns

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
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every in-memory batch under this many bytes (an MD5 over pandas' hash of
    # each row) for its batch markers, which nothing here reads: it was a quarter of the time of
    # each million-row validation. Zero turns it off; the results are otherwise the same.
    pandas_execution_engine.HASH_THRESHOLD = 0

    _read_configurations_once()
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


_validating = threading.local()  # this thread's configurations read during one validation, by expectation


def _read_configurations_once() -> None:
    """Within one validation, build each expectation's configuration once, not once per reading.

    GX's `Expectation.configuration` is a property that builds a new configuration from the
    expectation's fields (pydantic's `dict()`) each time it is read, and a validation reads it for
    every metric of every expectation it plans: 5,294 times in a daily run's three validations,
    0.41 s of their 1.17 s. A validation turns its expectations' configurations into new
    expectations and only reads them, so inside `_one_configuration_each` a second reading of one
    expectation returns the first. Outside it (building suites and Data Docs) every reading builds
    afresh, as GX does; if GX stops defining it as a property, nothing is changed.
    """
    from great_expectations.expectations.expectation import Expectation

    plain = Expectation.__dict__.get("configuration")
    if not isinstance(plain, property) or plain.fget is None or getattr(plain.fget, "read_once", False):
        return
    Expectation.configuration = property(_once(plain.fget), doc=plain.__doc__)  # type: ignore[method-assign,assignment]


def _once(build: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def configuration(expectation: Any) -> Any:
        memo: dict[int, tuple[Any, Any]] | None = getattr(_validating, "memo", None)
        if memo is None:
            return build(expectation)
        found = memo.get(id(expectation))
        if found is None:  # the expectation is kept beside it, so its id is not reused while the memo lives
            found = memo[id(expectation)] = (expectation, build(expectation))
        return found[1]

    configuration.read_once = True  # type: ignore[attr-defined]
    return configuration


@contextmanager
def _one_configuration_each() -> Iterator[None]:
    _validating.memo = {}
    try:
        yield
    finally:
        _validating.memo = None


def gx_context() -> Any:
    """Return the process's GX context (for building Data Docs)."""
    return _context()


def validate(suite: str, frame: pl.DataFrame, run_name: str) -> SuiteOutcome:
    """Validate `frame` against `suite` and return per-expectation results and failing rows."""
    try:
        return _validate(suite, frame, run_name)
    finally:
        _return_freed_memory()


def _return_freed_memory() -> None:
    """Hand the memory GX's pandas engine freed back to the system (glibc only; elsewhere nothing to do).

    glibc keeps freed blocks in its heap for reuse, and pandas' many mid-sized temporaries leave it
    fragmented: across a backfill's LTV partitions the process grew by a gigabyte it no longer used
    (peak 3.9 GiB at 25.2M loan-days; 3.4 GiB with this, at the same speed).
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


def _find_malloc_trim() -> Any:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # not glibc (musl, macOS, Windows): no trim to call
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_malloc_trim = _find_malloc_trim()


def _validate(suite: str, frame: pl.DataFrame, run_name: str) -> SuiteOutcome:
    from great_expectations.core.run_identifier import RunIdentifier

    checks = {check.name: check for check in SUITES[suite]()}
    definition = _context().validation_definitions.get(suite)
    with warnings.catch_warnings(), _one_configuration_each():
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


def merge_results(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Return one result row per suite and expectation from the results of a frame validated in parts.

    An expectation succeeds when it succeeded on every part; counts add up; the observed value is
    the first failing part's (or the first part's when none failed).
    """
    frames = [part for part in parts if part.height]
    if len(frames) <= 1:
        return frames[0] if frames else pl.DataFrame(schema=RESULT_SCHEMA)
    keys = ["suite", "check_name", "expectation_type", "columns", "severity"]
    return (
        pl.concat(frames)
        .with_columns(_order=pl.int_range(pl.len()).over(keys))
        .sort(pl.col("success"), "_order")  # failing parts first
        .group_by(keys, maintain_order=True)
        .agg(
            success=pl.col("success").all(),
            observed_value=pl.col("observed_value").first(),
            unexpected_count=pl.when(pl.col("unexpected_count").is_null().all())
            .then(None)
            .otherwise(pl.col("unexpected_count").sum()),
            element_count=pl.when(pl.col("element_count").is_null().all())
            .then(None)
            .otherwise(pl.col("element_count").sum()),
        )
        .join(frames[0].select(keys).with_row_index("_position"), on=keys, how="left")
        .sort("_position")
        .select(list(RESULT_SCHEMA))
        .cast(RESULT_SCHEMA)  # type: ignore[arg-type]
    )


def validate_in_parts(suite: str, frame: pl.DataFrame, run_name: str, key: str, max_rows: int) -> SuiteOutcome:
    """Validate `frame` a few keys at a time (every row of a key in one part), as one outcome.

    GX's pandas engine holds a copy of what it checks and more; in parts of at most about
    `max_rows` rows, a whole book's bars or LTV rows stay within bounded memory. Checks whose
    scope is one key (uniqueness of key and date, gaps) see all of that key's rows.
    """
    columns = checked_columns(suite)
    if frame.height <= max_rows:
        return validate(suite, frame.select(columns), run_name)
    indexed = frame.select(columns).with_row_index("_source_row")
    sizes = indexed.group_by(key).len().sort(key)
    part_of = sizes.with_columns(_part=(pl.col("len").cum_sum() - 1) // max_rows).select(key, "_part")
    indexed = indexed.join(part_of, on=key, how="left", maintain_order="left")
    outcomes = []
    for _, part in indexed.group_by("_part", maintain_order=True):
        outcome = validate(suite, part.drop("_source_row", "_part"), run_name)
        rows = part.select("_source_row").with_row_index("_row")
        reasons = outcome.row_reasons.join(rows, on="_row").select(
            pl.col("_source_row").alias("_row"), "reasons", "is_blocked"
        )
        outcomes.append((outcome, reasons))
    return SuiteOutcome(
        suite,
        merge_results([o.results for o, _ in outcomes]),
        pl.concat([r for _, r in outcomes]).sort("_row").cast(REASON_SCHEMA),  # type: ignore[arg-type]
        any(o.table_blocked for o, _ in outcomes),
    )
