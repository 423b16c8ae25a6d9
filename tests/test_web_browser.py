"""The review web app in a real headless Chromium (Playwright), against the real server.

Skipped when Debian's Chromium is absent. Set ``RIBIN_WEB_SCREENSHOTS=docs/img`` to write the
pages' screenshots for the examiner guide (otherwise they go to a temporary folder).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from web_support import CHROMIUM, CHROMIUM_ARGS, ODD_ID, QUERY, build_store, running_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"headless Chromium not at {CHROMIUM}"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")

VIEW = {"width": 1360, "height": 900}


@pytest.fixture(scope="module")
def store(tmp_path_factory, synthetic_dir) -> Path:
    return build_store(tmp_path_factory.mktemp("web-browser") / "store", synthetic_dir)


@pytest.fixture(scope="module")
def server(store):
    with running_server(store) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport=VIEW)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.console_errors = errors  # a test expecting an HTTP error status clears them
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield opened
    context.close()
    assert not errors, errors  # no script error, no refused (CSP) or missing resource


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("RIBIN_WEB_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def images_loaded(page, selector: str = "img") -> list[int]:
    """naturalWidth of every image matched, after each has finished loading."""
    # polled from here: the page's CSP (rightly) forbids the eval of wait_for_function
    deadline = time.monotonic() + 240
    while not page.eval_on_selector_all(selector, "els => els.every(e => e.complete)"):
        assert time.monotonic() < deadline, f"images {selector} still loading"
        time.sleep(0.2)
    return page.eval_on_selector_all(selector, "els => els.map(e => e.naturalWidth)")


def shoot(page, path: Path, full: bool = False) -> None:
    """A screenshot, kept small: 256 colours are plenty for a page's text and figures."""
    from PIL import Image

    page.screenshot(path=str(path), full_page=full)
    with Image.open(path) as shot:
        small = shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    assert path.stat().st_size > 10_000


def test_search_by_upload_shows_the_ranked_list(page, server, synthetic_dir, shots):
    page.goto(f"{server}/search")
    page.set_input_files("#casing", str(synthetic_dir / QUERY))
    page.select_option("#country", "BB")
    page.select_option("#scope", "country")
    page.click("#run-search")
    page.wait_for_selector("#results", timeout=300_000)
    rows = page.locator("table.ranked tbody tr")
    assert rows.count() >= 2
    assert rows.nth(0).inner_text().split("\t")[2] in ("F01-1", "F01-2")
    widths = images_loaded(page, "table.ranked img")
    assert widths and all(w > 0 for w in widths)
    shoot(page, shots / "web-search.png")
    # open a candidate from the list: the compare view with the uploaded query
    page.locator("table.ranked tbody tr").nth(0).get_by_text("compare").click()
    page.wait_for_selector("[data-viewer]", timeout=300_000)
    assert all(w > 0 for w in images_loaded(page, ".stage img"))


def test_a_bad_upload_shows_the_one_line_error(page, server, tmp_path):
    bad = tmp_path / "scratched.x3p"
    bad.write_bytes(b"PK\x03\x04 this is not an X3P file")
    page.goto(f"{server}/search")
    page.set_input_files("#casing", str(bad))
    page.select_option("#country", "BB")
    page.click("#run-search")
    error = page.wait_for_selector("#error", timeout=60_000).inner_text()
    assert error.startswith("scratched.x3p: ") and "\n" not in error.strip()
    assert page.console_errors == [
        "Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"
    ]
    page.console_errors.clear()


def test_exhibit_page_renders_its_images(page, server, shots):
    page.goto(f"{server}/exhibits")
    page.get_by_role("link", name=ODD_ID).click()  # an ID that needs escaping in the URL
    page.wait_for_selector("h1")
    assert ODD_ID in page.inner_text("h1")
    page.goto(f"{server}/exhibits/BB/F01-1")
    widths = images_loaded(page, ".stage img")
    assert len(widths) == 2 and all(w > 0 for w in widths)
    shoot(page, shots / "web-exhibit.png")


def test_compare_view_zooms_and_fades(page, server, shots):
    page.goto(f"{server}/compare?a=BB/F01-1&b=BB/F01-2", timeout=300_000)
    viewer = page.locator("[data-viewer]").first
    assert all(w > 0 for w in images_loaded(page, ".stage img"))
    # the report's figures load lazily as the examiner scrolls: ask for them all now
    page.eval_on_selector_all("img[loading=lazy]", "els => els.forEach(e => e.loading = 'eager')")
    widths = images_loaded(page, "img")
    assert len(widths) == 2 * 2 + 2 * 4 and all(w > 0 for w in widths)
    stage = viewer.locator("[data-stage]")
    before = stage.evaluate("e => e.style.transform")
    viewer.scroll_into_view_if_needed()
    box = viewer.locator(".viewport").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)
    page.wait_for_timeout(300)
    after = stage.evaluate("e => e.style.transform")
    assert after != before and "scale" in after
    viewer.locator("[data-opacity]").fill("100")
    assert viewer.locator("[data-top]").evaluate("e => e.style.opacity") == "1"
    viewer.locator("[data-zoom=reset]").click()
    assert stage.evaluate("e => e.style.transform") == before
    viewer.locator("[data-opacity]").fill("50")
    page.mouse.wheel(0, -500)
    page.wait_for_timeout(300)
    shoot(page, shots / "web-overlay.png")
    page.evaluate("() => window.scrollTo(0, 0)")
    shoot(page, shots / "web-compare.png")
