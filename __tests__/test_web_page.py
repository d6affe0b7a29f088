"""The web page in a real browser: Debian's Chromium, driven by Playwright."""

import shutil

import pytest
from support import DATA

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (./test.sh installs Debian's chromium when run as root)"
)


@pytest.fixture(scope="module")
def page(live_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # No network beyond loopback here: keep Chromium from trying.
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page()
        yield page
        browser.close()


def test_a_person_counts_a_photo_in_the_page(page, live_server):
    page.goto(live_server.url + "/")
    page.set_input_files("#photo", str(DATA / "dog.jpg"))
    page.click("#count")
    page.wait_for_selector("#counts tr[data-class='dog']", timeout=30_000)
    counts = {
        row.get_attribute("data-class"): int(row.locator("td.count").inner_text())
        for row in page.locator("#counts tr").all()
    }
    assert counts["dog"] >= 1 and counts["bicycle"] >= 1
    assert page.locator("#annotated").evaluate("img => img.naturalWidth") == 768
    assert page.locator("#took").inner_text().endswith(("ms", "s"))
    assert page.locator("#error").is_hidden()


def test_the_page_lists_the_model(page, live_server):
    page.goto(live_server.url + "/")
    page.wait_for_function("document.querySelectorAll('#model-classes li').length > 0", timeout=10_000)
    assert page.locator("#model-classes li").count() == 80
    summary = page.locator("#model-summary").inner_text()
    assert "416×416" in summary and "onnxruntime (fp32)" in summary


def test_an_unreadable_file_is_explained_in_plain_words(page, live_server, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("these are my lab notes, not a photo")
    page.goto(live_server.url + "/")
    page.set_input_files("#photo", str(notes))
    page.click("#count")
    page.wait_for_selector("#error", state="visible", timeout=10_000)
    assert page.locator("#error").inner_text().startswith("The photo could not be counted:")


def test_the_page_loads_nothing_from_outside(page, live_server):
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(live_server.url + "/")
    page.wait_for_load_state("networkidle")
    assert requested and all(url.startswith(live_server.url) for url in requested)
