"""The report renders in a real browser: headless Chromium through Playwright.

Every image decodes, the page makes no network request and logs no console error, and a
full-page screenshot is saved in test-output/. Where Chromium or Playwright is missing the
test is skipped, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from e2e import FinishedRun

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output"


def _browser_or_skip() -> tuple[object, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = [name for name, ok in (("chromium", chromium), ("playwright", sync_playwright)) if not ok]
    if missing:
        message = f"browser test needs {' and '.join(missing)} (apt-get install chromium; pip install playwright)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright, chromium


def render(page_path: Path, screenshot: Path, user_data_dir: Path) -> dict[str, list]:
    sync_playwright, chromium = _browser_or_skip()
    requests, errors = [], []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth}))"
            )
            title = page.title()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
    return {"requests": requests, "errors": errors, "images": images, "title": [title]}


def test_report_renders_in_chromium(tmp_path, request: pytest.FixtureRequest) -> None:
    _browser_or_skip()
    tiny_run: FinishedRun = request.getfixturevalue("tiny_run")  # made only once the browser is known to be there
    seen = render(tiny_run.path / "report.html", SCREENSHOTS / "report.png", tmp_path / "profile")
    assert seen["images"], "the report has no images"
    broken = [i["alt"] for i in seen["images"] if not (i["complete"] and i["w"] > 0)]
    assert not broken, f"images that did not decode: {broken}"
    external = [u for u in seen["requests"] if not u.startswith(("file://", "data:"))]
    assert not external, f"network requests: {external}"
    assert not seen["errors"], f"console errors: {seen['errors']}"
    assert "tiny" in seen["title"][0]  # the run's name
    assert (SCREENSHOTS / "report.png").stat().st_size > 10_000


@pytest.mark.slow
def test_seeds_summary_renders_in_chromium(tmp_path) -> None:
    """The aggregate page of `run --seeds` (and a seed's report with the control's sections) in the browser."""
    _browser_or_skip()
    from distilens.config import load_config
    from distilens.seeds import run_seeds

    cfg = load_config(None, [
        "name=seeds", "teacher.args.width=8", "teacher.train.epochs=2", "student.args.width=4", "distill.epochs=2",
        "explain.n_samples=8", "explain.references=[teacher_reseed, init]", "explain.sanity=false",
    ])
    result = run_seeds(cfg, [0, 1], out=tmp_path / "seeds")
    for page, shot in ((result.path / "summary.html", "summary.png"), (result.runs[1] / "report.html", "report-seed.png")):
        seen = render(page, SCREENSHOTS / shot, tmp_path / "profile")
        broken = [i["alt"] for i in seen["images"] if not (i["complete"] and i["w"] > 0)]
        assert seen["images"] and not broken, f"{page.name}: images that did not decode: {broken}"
        external = [u for u in seen["requests"] if not u.startswith(("file://", "data:"))]
        assert not external, f"{page.name}: network requests: {external}"
        assert not seen["errors"], f"{page.name}: console errors: {seen['errors']}"
    assert "2 seeds" in render(result.path / "summary.html", SCREENSHOTS / "summary.png", tmp_path / "profile")["title"][0]
