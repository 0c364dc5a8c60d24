"""The daily report in a real headless Chromium: the chart renders, no console errors, no requests fail."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.integration.test_cli import marginwatch
from tests.report_fixture import AS_OF, build_warehouse

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def chromium_path() -> str | None:
    """Return the system Chromium (Debian's `chromium` package), if installed."""
    found = shutil.which("chromium")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)


def artifacts_dir() -> Path:
    """Return where screenshots are kept: $MARGINWATCH_TEST_ARTIFACTS, else test-artifacts/ in the repository."""
    folder = Path(os.environ.get("MARGINWATCH_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Yield a headless system Chromium driven by Playwright; skip when there is none."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium on this machine: install Debian's `chromium` package to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as playwright:
        # Playwright's own browser builds are never downloaded: the system Chromium is used as it is.
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


def non_background_share(png: bytes, background: tuple[int, int, int] = (255, 255, 255)) -> float:
    """Return the share of pixels of a screenshot that differ from the background colour."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    drawn = np.abs(pixels - np.array(background, dtype=np.int16)).max(axis=2) > 16  # beyond anti-aliasing noise
    return float(drawn.mean())


def show_report(browser: Any, html: Path, name: str) -> str:
    """Open the report, check that its chart renders and that nothing failed; keep screenshots; return its text."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    requested: list[str] = []
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}: {r.failure}"))
    page.on("request", lambda r: requested.append(r.url))
    page.goto(html.as_uri(), wait_until="load")

    chart = page.locator("img#chart")
    assert chart.evaluate("img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0"), "chart not decoded"
    box = chart.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 300, box
    shot = chart.screenshot()  # just the image's bounding box
    folder = artifacts_dir()
    (folder / f"{name}-chart.png").write_bytes(shot)
    page.screenshot(path=str(folder / f"{name}-full-page.png"), full_page=True)
    assert non_background_share(shot) > 0.05, "the chart's area is blank"
    assert page.get_attribute("html", "lang") == "en" and chart.get_attribute("alt")
    text = str(page.locator("main").inner_text())
    page.close()
    assert problems == []
    assert [url for url in requested if not url.startswith(("file:", "data:"))] == []
    return text


def test_report_renders_in_chromium_with_its_chart_and_no_errors(browser: Any, tmp_path: Path) -> None:
    from marginwatch.report import write_report

    files = write_report(build_warehouse(tmp_path / "book.duckdb"), None, None, timeout=10)
    text = show_report(browser, files.html, "report")
    assert text.startswith("Margin loan report") and f"As of {AS_OF}" in text
    assert "Stress at" in text and "MARGIN CALL WITHIN" in text.upper()  # headers are upper-cased by CSS


def test_report_of_a_real_pipeline_run_renders_in_chromium(browser: Any, tmp_path: Path) -> None:
    run = marginwatch("run", "--as-of", "2026-06-30", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    made = marginwatch("report", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    html = tmp_path / "marginwatch-reports" / "report-2026-06-30.html"
    assert made.stdout.splitlines() == [
        f"report: {html.relative_to(tmp_path)}",
        "chart: marginwatch-reports/report-2026-06-30.png",
    ]
    text = show_report(browser, html, "report-pipeline")
    assert "As of 2026-06-30" in text and "sbg-arm-usd" in text and "sbg-arm-jpy" in text
    # The risk tables are filled by the daily flow where it computes them; the report says so when it does not.
    assert "PRICE SHOCK" in text.upper() or "Stress scenarios: not computed" in text
