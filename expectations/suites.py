"""The expectation suites, as code: one per guarded table, each check blocking or warning."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BARS, FX_RATES, LOAN_LTV = "bars", "fx_rates", "loan_ltv_daily"


@dataclass(frozen=True)
class Check:
    """One expectation: a stable name, whether it blocks publishing, and how to build it."""

    name: str
    blocking: bool
    kind: str
    kwargs: dict[str, Any]

    def build(self, gxe: Any) -> Any:
        """Return the GX expectation, tagged with this check's name and severity."""
        expectation_class: Callable[..., Any] = getattr(gxe, self.kind)
        severity = "critical" if self.blocking else "warning"
        return expectation_class(**self.kwargs, severity=severity, meta={"check": self.name})


def _not_null(column: str) -> Check:
    return Check(f"{column}_not_null", True, "ExpectColumnValuesToNotBeNull", {"column": column})


def _positive(column: str) -> Check:
    return Check(
        f"{column}_positive",
        True,
        "ExpectColumnValuesToBeBetween",
        {"column": column, "min_value": 0, "strict_min": True},
    )


def _always(name: str, column: str, value: bool, blocking: bool) -> Check:
    return Check(name, blocking, "ExpectColumnValuesToBeInSet", {"column": column, "value_set": [value]})


def _a_at_least_b(name: str, a: str, b: str, blocking: bool = True) -> Check:
    return Check(
        name, blocking, "ExpectColumnPairValuesAToBeGreaterThanB", {"column_A": a, "column_B": b, "or_equal": True}
    )


def _at_most(name: str, column: str, bound: float) -> Check:
    return Check(name, True, "ExpectColumnValuesToBeBetween", {"column": column, "min_value": 0, "max_value": bound})


def bar_checks() -> list[Check]:
    """Checks on incoming stock bars, before they reach `staging.prices`."""
    return [
        *[_not_null(c) for c in ("session_date", "open", "high", "low", "close")],
        *[_positive(c) for c in ("open", "high", "low", "close")],
        _a_at_least_b("high_at_least_open", "high", "open"),
        _a_at_least_b("high_at_least_close", "high", "close"),
        _a_at_least_b("open_at_least_low", "open", "low"),
        _a_at_least_b("close_at_least_low", "close", "low"),
        Check("volume_not_negative", True, "ExpectColumnValuesToBeBetween", {"column": "volume", "min_value": 0}),
        _always("volume_integral", "is_volume_integral", True, blocking=False),
        Check(
            "unique_symbol_session",
            True,
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": ["symbol", "session_date"]},
        ),
        _always("nasdaq_session", "is_session", True, blocking=True),
        Check(
            "no_missing_session",
            False,
            "ExpectColumnValuesToBeBetween",
            {"column": "sessions_since_previous", "min_value": 1, "max_value": 1},
        ),
        _always("fresh", "is_fresh", True, blocking=False),
        _always("move_within_bound", "is_large_move", False, blocking=False),
        _always("not_a_repeat", "is_repeat_of_previous", False, blocking=False),
    ]


def fx_checks() -> list[Check]:
    """Checks on incoming FX rates, before they reach `staging.fx_rates`; only the close is used."""
    return [
        _not_null("session_date"),
        _not_null("rate"),
        _positive("rate"),
        _always("rate_in_plausible_band", "is_in_band", True, blocking=True),
        Check(
            "unique_pair_session", True, "ExpectCompoundColumnsToBeUnique", {"column_list": ["pair", "session_date"]}
        ),
        _always("high_low_bound_open_close", "is_high_low_bounding", True, blocking=False),
        _always("weekday", "is_weekday", True, blocking=False),
        Check(
            "no_missing_weekday",
            False,
            "ExpectColumnValuesToBeBetween",
            {"column": "weekdays_since_previous", "min_value": 0, "max_value": 1},
        ),
    ]


def ltv_checks() -> list[Check]:
    """Checks on computed LTV rows, before they reach `marts.loan_ltv_daily`."""
    return [
        _not_null("ltv"),
        _positive("collateral_value"),
        _at_most("ltv_is_balance_over_collateral", "ltv_relative_error", 1e-9),
        Check(
            "status_matches_levels",
            True,
            "ExpectColumnPairValuesToBeEqual",
            {"column_A": "status", "column_B": "expected_status"},
        ),
        _at_most("margin_call_price_consistent", "margin_call_price_relative_error", 1e-9),
        _at_most("liquidation_price_consistent", "liquidation_price_relative_error", 1e-9),
        Check("unique_loan_as_of", True, "ExpectCompoundColumnsToBeUnique", {"column_list": ["loan_id", "as_of_date"]}),
        _always("price_not_stale", "is_stale", False, blocking=False),
    ]


SUITES: dict[str, Callable[[], list[Check]]] = {BARS: bar_checks, FX_RATES: fx_checks, LOAN_LTV: ltv_checks}


def checked_columns(suite: str) -> list[str]:
    """Return the columns a suite's expectations read, in first-use order."""
    names: list[str] = []
    for check in SUITES[suite]():
        for key in ("column", "column_A", "column_B"):
            if key in check.kwargs:
                names.append(check.kwargs[key])
        names += check.kwargs.get("column_list", [])
    return list(dict.fromkeys(names))
