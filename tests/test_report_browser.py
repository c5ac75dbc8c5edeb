"""The report renders in a real browser: headless Chromium through Playwright.

Every image decodes, the page makes no network request and logs no console error, and a
full-page screenshot is saved in test-output/. The image-folder run's page is also checked for
what a reviewer reads: attributions drawn over the input across the page's width, a sample of
several classes, a caption under every figure, no figure text drawn over other text, and a
layout that fits an 800 px window (screenshots at 1400 and 800 px). Where Chromium or
Playwright is missing the test is skipped, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from e2e import FinishedRun

from distilens.report.build import write_run_report
from distilens.report.figures import collect_text_overlaps

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


# What the layout test reads from the page: each figure's image and caption, the widths.
LAYOUT_JS = """() => ({
  page: document.documentElement.scrollWidth,
  window: window.innerWidth,
  body: document.body.getBoundingClientRect().width,
  figures: Array.from(document.images).map(i => ({
    alt: i.alt, width: i.getBoundingClientRect().width, inFigure: !!i.closest('figure'),
    caption: (i.closest('figure')?.querySelector('figcaption')?.textContent || '').trim(),
    container: i.closest('figure')?.getBoundingClientRect().width || 0})),
  tableRight: Math.max(0, ...Array.from(document.querySelectorAll('table.metrics')).map(t => t.getBoundingClientRect().right)),
})"""


def render(page_path: Path, screenshot: Path, user_data_dir: Path, width: int | None = None) -> dict[str, list]:
    """Open the page (``width`` px wide when given), screenshot it; what the browser saw and the layout."""
    sync_playwright, chromium = _browser_or_skip()
    requests, errors = [], []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = context.new_page()
            if width:
                page.set_viewport_size({"width": width, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth}))"
            )
            title = page.title()
            layout = page.evaluate(LAYOUT_JS)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
    return {"requests": requests, "errors": errors, "images": images, "title": [title], "layout": [layout]}


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


def test_report_reads_at_1400_and_800_px(tmp_path, request: pytest.FixtureRequest) -> None:
    """Overlays across the page, a multi-class sample, captions, no overlapping figure text, 800 px fit."""
    _browser_or_skip()
    run: FinishedRun = request.getfixturevalue("finished_runs").copy("imagefolder", tmp_path)  # 3 classes, sorted split
    with collect_text_overlaps() as overlaps:
        write_run_report(run.path)
    assert not overlaps, f"figure texts drawn over each other: {overlaps}"
    for width in (1400, 800):
        seen = render(run.path / "report.html", SCREENSHOTS / f"report-{width}.png", tmp_path / "profile", width)
        assert not seen["errors"], f"console errors: {seen['errors']}"
        layout = seen["layout"][0]
        assert layout["page"] <= layout["window"], f"{width} px: the page is {layout['page']} px wide"
        assert layout["tableRight"] <= layout["window"], f"{width} px: the metrics table ends at {layout['tableRight']} px"
        figures = layout["figures"]
        assert figures and all(f["inFigure"] and f["caption"] for f in figures), [f["alt"] for f in figures if not f["caption"]]
        overlays = [f for f in figures if "over the input" in f["alt"]]
        assert overlays, "no attribution overlays on the page"
        for f in overlays:  # the gallery uses the content column's full width
            assert f["width"] >= 0.95 * f["container"] and f["width"] >= 0.8 * min(layout["body"], 1150), f
        shown = [f["caption"].split("Classes shown: ", 1)[-1] for f in overlays if "Classes shown: " in f["caption"]]
        assert shown and len(shown[0].rstrip(".").split(", ")) >= 2, f"the sample shows one class only: {shown}"


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
