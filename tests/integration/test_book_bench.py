"""The book-scale benchmark at a tiny size: it runs end to end and its correctness check holds (untimed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.book import main

pytestmark = pytest.mark.slow


def test_the_book_benchmark_runs_and_the_pipeline_matches_the_sql_limit(tmp_path: Path) -> None:
    out = tmp_path / "book.json"
    args = ["--loans", "40", "--symbols", "8", "--sessions", "30", "--runs", "1", "--pandas-sample", "5"]
    assert main([*args, "--fetch-latency-ms", "0", "--out", str(out)]) == 0
    found = json.loads(out.read_text())
    (size,) = found["sizes"]
    assert size["loan_days"] == 40 * 30
    assert size["correctness"]["equal"] and size["correctness"]["rows"] == 40 * 30
    assert size["correctness"]["worst_relative"] <= 1e-9
    assert set(size["queries_s"]) == {
        "latest status of every loan",
        "one loan's whole history",
        "a year's margin-call days",
        "latest status, from loan_ltv_daily",
        "margin-call days, from loan_ltv_daily",
    }
    assert size["daily_runs_s"] and size["pandas_sample_rows"] == 5 * 30
    assert size["daily_prefect_s"] > 0 and size["daily_own_s"] < size["daily_s"] - size["daily_source_s"]
    assert size["daily_empty_flow_s"] > 0
    assert size["backfill_over_limit_paired"] == pytest.approx(size["backfill_over_limit"])  # one run: one pair
    # one run: its wall time is Prefect's start and finish, the synthetic source and the pipeline's own work
    parts = size["daily_prefect_s"] + size["daily_source_s"] + size["daily_own_s"]
    assert parts == pytest.approx(size["daily_s"], abs=0.01)
    # each run's stages as its record in meta.runs keeps them: the work of a run, then the rest of it
    daily = size["daily_stages_s"]
    assert {"book", "plan", "fetch", "read", "gate", "compute", "ltv_check", "alert_rules", "load"} <= set(daily)
    assert {"data_docs", "report", "deliver", "announce", "other", "total"} <= set(daily)
    assert "report" not in size["backfill_stages_s"] and "compute" in size["backfill_stages_s"]
    assert sum(v for k, v in daily.items() if k != "total") == pytest.approx(daily["total"], abs=0.01)
    assert daily["total"] <= size["daily_s"]
    assert [row["symbols_total"] for row in found["fetch"]] == [8, 8]
