"""Timing helpers shared by the benchmarks: medians of repeated runs, peak memory, a JSON record."""

from __future__ import annotations

import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path("bench-results")


def median_seconds(action: Callable[[], Any], runs: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Return the median wall time of `runs` calls after `warmup` uncounted calls, and every time."""
    for _ in range(warmup):
        action()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def peak_rss_mib() -> float:
    """Return this process's peak resident memory in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    """Describe the machine the figures come from."""
    import os

    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}


def write_results(name: str, rows: list[dict[str, Any]]) -> Path:
    """Write the benchmark's rows as JSON beside the others and print them as a table."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2, default=str) + "\n")
    width = max(len(r["measure"]) for r in rows)
    print(f"{'measure':<{width}}  median_s     min_s     max_s  note")
    for r in rows:
        print(
            f"{r['measure']:<{width}}  {r['median_s']:8.4f}  {r['min_s']:8.4f}  {r['max_s']:8.4f}  {r.get('note', '')}"
        )
    print(f"peak memory {peak_rss_mib():.0f} MiB; results in {path}")
    return path


def row(measure: str, median: float, times: list[float], note: str = "") -> dict[str, Any]:
    """Return one result row."""
    return {
        "measure": measure,
        "median_s": median,
        "min_s": min(times),
        "max_s": max(times),
        "runs": len(times),
        "note": note,
    }
