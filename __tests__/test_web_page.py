"""The web page in a real browser: Debian's Chromium, driven by Playwright.

Each test gets a fresh browser context (its own IndexedDB history and session); the
screenshots go to the test's tmp_path and their paths are printed (`pytest -rA`)."""

import base64
import csv
import io
import os
import re
import shutil
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import requests
from PIL import Image
from support import DATA, DEMO_MODEL, ROOT, RunningService, needs_tool, run_count

from app.model.threshold import save_threshold
from app.vision.images import PHOTO_SUFFIXES, photos_in

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.e2e,
    needs_tool(CHROMIUM is not None, "Chromium is not installed", "chromium"),
]
FINISHED = "#results tbody tr:is([data-status=done], [data-status=failed])"
STATIC = ROOT / "app" / "http" / "static"
MODULES = sorted(path.name for path in STATIC.glob("*.js"))  # page.js and the modules it imports


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # No network beyond loopback here: keep Chromium from trying.
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def wait_counted(page, rows: int, timeout: float = 30_000) -> None:
    page.wait_for_function(
        f"document.querySelectorAll('{FINISHED}').length === {rows} && document.querySelector('#stop').hidden",
        timeout=timeout,
    )


def table(page) -> list[dict]:
    """The results table as data: a dict per row."""
    return page.evaluate(
        """() => [...document.querySelectorAll('#results tbody tr')].map((tr) => ({
            file: tr.dataset.file, status: tr.dataset.status,
            counts: Object.fromEntries([...tr.querySelectorAll('td[data-class]')]
                .map((td) => [td.dataset.class, Number(td.textContent)]).filter(([, n]) => n > 0)),
            total: tr.querySelector('.total').textContent, threshold: tr.querySelector('.threshold').textContent,
            time: tr.querySelector('.time').textContent, error: tr.querySelector('.error').textContent,
        }))"""
    )


def found(live_server, name: str, threshold: float = 0.25) -> dict[str, int]:
    """What the API itself counts on the photo: the page must show the same."""
    stat = live_server.post_photo(name, threshold=threshold).json()["stat"]
    return {cls: n for cls, n in stat.items() if n}


def screenshot(page, path) -> None:
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def count_photos(page, live_server, *names: str) -> None:
    count_photos_from(page, live_server, *(DATA / name for name in names))


def count_photos_from(page, live_server, *paths) -> None:
    page.goto(live_server.url + "/")
    page.set_input_files("#photo", [str(path) for path in paths])
    wait_counted(page, len(paths))


def test_a_person_counts_a_photo_in_the_page(page, live_server):
    count_photos(page, live_server, "dog.jpg")
    (row,) = table(page)
    assert row["file"] == "dog.jpg" and row["threshold"] == "0.25" and row["error"] == ""
    assert row["counts"] == found(live_server, "dog.jpg")
    assert row["time"].endswith(("ms", "s"))
    # The viewer says which photo and threshold it shows, with the counts beside it.
    assert page.locator("#viewer-title").inner_text() == "dog.jpg"
    assert "Threshold 0.25" in page.locator("#viewer-caption").inner_text()
    legend = {
        li.get_attribute("data-class"): int(li.locator(".n").inner_text()) for li in page.locator("#counts li").all()
    }
    assert legend == row["counts"]
    assert page.locator("#annotated").evaluate("img => img.naturalWidth") == 768
    assert page.locator("#error").is_hidden()


def test_the_page_lists_the_model(page, live_server):
    page.goto(live_server.url + "/")
    page.wait_for_function("document.querySelectorAll('#model-classes li').length > 0", timeout=10_000)
    assert page.locator("#model-classes li").count() == 80
    summary = page.locator("#model-summary").inner_text()
    assert "416×416" in summary and "onnxruntime (fp32)" in summary


def test_several_photos_are_counted_in_turn_each_on_its_own_row(page, live_server, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("these are my lab notes, not a photo")
    readme = tmp_path / "readme.txt"
    readme.write_text("not a photo either")
    page.goto(live_server.url + "/")
    # Every line the progress shows, as it changes.
    page.evaluate(
        """() => { window.progress = [];
        new MutationObserver(() => window.progress.push(document.querySelector('#progress').textContent))
            .observe(document.querySelector('#progress'), {childList: true, characterData: true, subtree: true}); }"""
    )
    photos = ["dog.jpg", "person.jpg", "horses.jpg"]
    page.set_input_files("#photo", [str(DATA / "dog.jpg"), str(notes), str(DATA / "person.jpg"), str(readme)])
    page.set_input_files("#photo", str(DATA / "horses.jpg"))  # more, while the first ones count
    wait_counted(page, 4)
    rows = {row["file"]: row for row in table(page)}
    assert list(rows) == ["dog.jpg", "notes.jpg", "person.jpg", "horses.jpg"]
    for name in photos:
        assert rows[name]["status"] == "done" and rows[name]["error"] == ""
        assert rows[name]["counts"] == found(live_server, name), name
        assert rows[name]["total"] == str(sum(rows[name]["counts"].values()))
    bad = rows["notes.jpg"]
    assert bad["status"] == "failed" and bad["counts"] == {} and bad["total"] == ""
    assert bad["error"].startswith("The photo could not be counted:")
    assert page.locator("#skipped").inner_text() == (
        f"Skipped 1 file that is not a photo ({' '.join(sorted(PHOTO_SUFFIXES))}): readme.txt."
    )
    # "1 of 3: dog.jpg", then the others in turn (horses joined the batch, or began its own).
    seen = [re.fullmatch(r"\d+ of \d+: (.+)", line) for line in page.evaluate("window.progress")]
    assert page.evaluate("window.progress")[0] == "1 of 3: dog.jpg"
    assert [match[1] for match in seen if match] == ["dog.jpg", "notes.jpg", "person.jpg", "horses.jpg"]
    assert page.locator("#progress").inner_text().endswith("1 failed (the reason stands under the file's name).")
    assert page.locator("#error").is_hidden()
    # The failed photo shows its error, never the previous photo's counts.
    page.click("#results tr[data-file='notes.jpg'] button.file")
    assert page.locator("#viewer-title").inner_text() == "notes.jpg"
    assert page.locator("#viewer-caption").inner_text().startswith("Not counted: The photo could not be counted:")
    assert page.locator("#counts li[data-class]").count() == 0
    assert page.locator("#boxes rect").count() == 0
    screenshot(page, tmp_path / "several-photos.png")


def test_a_folder_and_dropped_files_are_taken_photos_only(page, live_server, tmp_path):
    folder = tmp_path / "culture-3"
    (folder / "day2").mkdir(parents=True)
    (folder / ".thumbnails").mkdir()
    shutil.copy(DATA / "giraffe.jpg", folder)
    shutil.copy(DATA / "kite.jpg", folder / "day2")
    shutil.copy(DATA / "giraffe.jpg", folder / "._giraffe.jpg")  # macOS's resource data on a USB stick
    shutil.copy(DATA / "giraffe.jpg", folder / ".thumbnails")
    (folder / "notes.txt").write_text("day 3")
    page.goto(live_server.url + "/")
    page.set_input_files("#folder", str(folder))
    wait_counted(page, 2)
    # In the order python -m app count takes them, hidden ones left out as it leaves them.
    assert [row["file"] for row in table(page)] == ["culture-3/day2/kite.jpg", "culture-3/giraffe.jpg"]
    assert "notes.txt" in page.locator("#skipped").inner_text()
    assert "Skipped 2 hidden files (._ files and hidden folders)." in page.locator("#skipped").inner_text()
    # A drop of two files, as a browser's drag and drop delivers them.
    page.evaluate(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, type, base64] of files) {
                const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, { type }));
            }
            document.querySelector('#drop').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer }));
        }""",
        [
            ["eagle.jpg", "image/jpeg", base64.b64encode((DATA / "eagle.jpg").read_bytes()).decode()],
            ["list.csv", "text/csv", base64.b64encode(b"a,b\n").decode()],
        ],
    )
    wait_counted(page, 3)
    assert [row["file"] for row in table(page)] == ["culture-3/day2/kite.jpg", "culture-3/giraffe.jpg", "eagle.jpg"]
    assert "list.csv" in page.locator("#skipped").inner_text()


def test_the_page_takes_from_a_folder_the_photos_count_takes(page, live_server, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    # Every type of the one list, and types that are not in it.
    for suffix in (*sorted(PHOTO_SUFFIXES), ".JPG", ".jfif", ".jpe", ".mpo", ".heic", ".txt", ".csv"):
        shutil.copy(DATA / "dog.jpg", folder / f"photo{suffix}")
    page.route("**/invocations", lambda route: None)  # which files become rows is all this asks
    page.goto(live_server.url + "/")
    page.set_input_files("#folder", str(folder))
    page.wait_for_function("document.querySelectorAll('#results tbody tr').length > 0")
    taken = sorted(row["file"].removeprefix("mixed/") for row in table(page))
    assert taken == sorted(path.name for path in photos_in([folder]))  # what count takes
    assert page.evaluate("async () => (await import('./static/intake.js')).PHOTO_SUFFIXES") == sorted(PHOTO_SUFFIXES)
    skipped = page.locator("#skipped").inner_text()
    assert all(name in skipped for name in ("photo.heic", "photo.txt"))
    assert "photo.jfif" not in skipped  # a JPEG by another name: on the one list


def test_the_table_downloads_as_the_apis_csv(page, live_server, tmp_path):
    count_photos(page, live_server, "dog.jpg", "person.jpg")
    with page.expect_download() as download:
        page.click("#download-csv")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.suffix == ".csv"
    text = path.read_text()
    lines = list(csv.DictReader(io.StringIO(text)))
    api = live_server.post_photo("dog.jpg", format="csv", filename="dog.jpg").text
    # The header of the API (and of python -m app count), and the same values but the time.
    assert text.splitlines()[0] == api.splitlines()[0]
    (api_row,) = list(csv.DictReader(io.StringIO(api)))
    assert {k: v for k, v in lines[0].items() if k != "ms"} == {k: v for k, v in api_row.items() if k != "ms"}
    classes = requests.get(live_server.url + "/model", timeout=10).json()["classes"]
    rows = table(page)
    assert [line["file"] for line in lines] == [row["file"] for row in rows]
    for line, row in zip(lines, rows, strict=True):
        assert {name: int(line[name]) for name in classes if line[name] != "0"} == row["counts"]
        assert (line["threshold"], line["total"], line["error"]) == ("0.25", row["total"], "")
        assert float(line["ms"]) > 0 and len(line["model"]) == 12


def test_a_photo_without_exif_gets_its_files_time_as_count_gives_it(page, live_server, model_dir, tmp_path):
    photo = tmp_path / "drop-7.jpg"
    shutil.copy(DATA / "giraffe.jpg", photo)  # no EXIF date, as most microscope photos
    when = datetime(2025, 3, 4, 5, 6, 7).timestamp()
    os.utime(photo, (when, when))
    count_photos_from(page, live_server, photo)
    with page.expect_download() as download:
        page.click("#download-csv")
    (row,) = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    (counted,) = list(csv.DictReader(io.StringIO(run_count(str(photo), model_dir=model_dir).stdout)))
    assert row["date"] == counted["date"] == "2025-03-04T05:06:07"


def test_the_annotated_photos_download_one_by_one_and_as_a_zip(page, live_server, tmp_path):
    count_photos(page, live_server, "dog.jpg", "person.jpg")
    with page.expect_download() as download:
        page.click("#download-zip")
    path = tmp_path / "photos.zip"
    download.value.save_as(path)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None  # every CRC-32 right
        assert archive.namelist() == ["dog.annotated.jpg", "person.annotated.jpg"]  # as count --annotate names them
        for name, original in zip(archive.namelist(), ["dog.jpg", "person.jpg"], strict=True):
            assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED
            picture = Image.open(io.BytesIO(archive.read(name)))
            with Image.open(DATA / original) as photo:
                width, height = photo.size
            # The photo's own size, as the API's and the count command's pictures.
            assert picture.format == "JPEG" and picture.size == (width, height)
            (tmp_path / name).write_bytes(archive.read(name))
            print(f"annotated: {tmp_path / name}")
            # The service's own picture, byte for byte: the API's for the same photo and settings.
            assert archive.read(name) == live_server.post_photo(original, format="jpeg").content, name
    with page.expect_download() as download:
        page.click("#results tr[data-file='dog.jpg'] button.save")
    assert download.value.suggested_filename == "dog.annotated.jpg"
    download.value.save_as(tmp_path / "one.jpg")
    api = live_server.post_photo("dog.jpg", threshold=0.25, tiling="auto", auto_crop="false", format="jpeg")
    assert (
        (tmp_path / "one.jpg").read_bytes()
        == api.content
        == base64.b64decode(live_server.post_photo("dog.jpg").json()["img"])
    )  # the API's `img` too


def test_a_picture_counted_with_other_settings_is_the_apis_for_those_settings(page, live_server, tmp_path):
    count_photos(page, live_server, "person.jpg")
    for selector, script in (
        ("#threshold", "s => { s.value = '0.6'; s.dispatchEvent(new Event('change')); }"),
        ("#auto-crop", "s => { s.checked = true; s.dispatchEvent(new Event('change')); }"),
    ):
        page.eval_on_selector(selector, script)
        page.wait_for_function("document.querySelector('#results tbody tr').dataset.status === 'done'")
    wait_counted(page, 1)
    with page.expect_download() as download:
        page.click("#download-one")
    download.value.save_as(tmp_path / "person.annotated.jpg")
    api = live_server.post_photo("person.jpg", threshold=0.6, auto_crop="true", format="jpeg")
    assert (tmp_path / "person.annotated.jpg").read_bytes() == api.content
    # With the service gone, the page says so instead of drawing a picture of its own.
    page.route("**/invocations", lambda route: route.abort())
    page.click("#download-one")
    page.wait_for_selector("#error", state="visible")
    assert page.locator("#error").inner_text() == (
        "person.jpg: the picture could not be made: the service could not be reached"
    )


def test_the_history_survives_a_reload_and_clears_with_one_button(page, live_server):
    count_photos(page, live_server, "dog.jpg", "horses.jpg")
    before = table(page)
    page.reload()
    page.wait_for_function(f"document.querySelectorAll('{FINISHED}').length === 2", timeout=10_000)
    assert table(page) == before
    # The last photo is in the viewer again, drawn from what the history kept.
    assert page.locator("#viewer-title").inner_text() == "horses.jpg"
    page.wait_for_function("document.querySelector('#annotated').naturalWidth === 773", timeout=10_000)
    assert page.locator("#boxes rect").count() == int(before[1]["total"])
    page.click("#clear-history")
    page.wait_for_function("document.querySelectorAll('#results tbody tr').length === 0")
    assert page.locator("#viewer").is_hidden()
    page.reload()
    page.wait_for_load_state("networkidle")
    assert page.locator("#results tbody tr").count() == 0


def test_a_new_threshold_recounts_the_photo_in_view(page, live_server):
    count_photos(page, live_server, "person.jpg")
    page.eval_on_selector("#threshold", "s => { s.value = '0.9'; s.dispatchEvent(new Event('change')); }")
    page.wait_for_function(
        "document.querySelector('#results tbody tr .threshold').textContent === '0.90'"
        " && document.querySelector('#results tbody tr').dataset.status === 'done'",
        timeout=30_000,
    )
    (row,) = table(page)
    assert row["counts"] == found(live_server, "person.jpg", threshold=0.9)
    assert "Threshold 0.90" in page.locator("#viewer-caption").inner_text()


def test_the_viewer_zooms_and_hides_a_class(page, live_server, tmp_path):
    count_photos(page, live_server, "person.jpg")
    counts = table(page)[0]["counts"]
    assert {"person", "dog"} <= set(counts)
    page.wait_for_function("document.querySelector('#annotated').naturalWidth === 640")
    boxes = page.locator("#boxes g[data-class='dog'] rect")
    assert boxes.count() == counts["dog"] and boxes.first.is_visible()
    page.uncheck("#counts input[data-class='dog']")
    assert not boxes.first.is_visible()
    assert page.locator("#boxes g[data-class='person'] rect").first.is_visible()
    # The legend stands beside the photo, not over it.
    stage, legend = page.locator("#stage").bounding_box(), page.locator("#legend").bounding_box()
    assert legend["x"] >= stage["x"] + stage["width"]
    fitted = page.locator("#zoom-level").inner_text()
    page.click("#zoom-in")
    page.click("#zoom-in")
    assert int(page.locator("#zoom-level").inner_text().rstrip("%")) > int(fitted.rstrip("%"))
    page.click("#full-size")
    assert page.locator("#viewer").evaluate("v => v.getBoundingClientRect().width") == 1280
    screenshot(page, tmp_path / "viewer-full-size.png")
    page.keyboard.press("Escape")
    page.check("#counts input[data-class='dog']")
    assert boxes.first.is_visible()


def test_at_phone_width_the_photo_fills_the_width(browser, live_server, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        count_photos(page, live_server, "horses.jpg", "kite.jpg")
        page.click("#results tr[data-file='horses.jpg'] button.file")
        page.wait_for_function("document.querySelector('#annotated').naturalWidth === 773")
        photo = page.locator("#annotated").bounding_box()
        assert photo["width"] >= 0.95 * 390
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, tmp_path / "phone-390.png")
    finally:
        context.close()


def test_the_api_key_is_asked_for_once_and_kept_for_the_session(browser, model_dir, tmp_path):
    service = RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "1", "API_KEYS": "lab-secret"}, tmp_path / "log")
    context = browser.new_context()
    try:
        service.wait_ready()
        page = context.new_page()
        page.goto(service.url + "/")
        page.set_input_files("#photo", [str(DATA / "dog.jpg"), str(DATA / "eagle.jpg")])
        page.wait_for_selector("#error", state="visible", timeout=10_000)
        assert page.locator("#error").inner_text() == (
            "This service needs an API key. Enter it above, then press “Count waiting photos”."
        )
        assert [row["status"] for row in table(page)] == ["waiting", "waiting"]
        page.fill("#api-key", "lab-secret")
        page.locator("#api-key").dispatch_event("change")
        page.click("#count")
        wait_counted(page, 2)
        assert page.locator("#error").is_hidden()
        page.reload()
        assert page.locator("#api-key").input_value() == "lab-secret"
        page.wait_for_function("document.querySelectorAll('#model-classes li').length === 80", timeout=10_000)
        # What the page itself needs is served without a key.
        for path in ("/", "/static/page.css", "/favicon.ico", *(f"/static/{name}" for name in MODULES)):
            assert requests.get(service.url + path, timeout=10).status_code == 200, path
    finally:
        context.close()
        service.stop()


def test_the_page_loads_nothing_from_outside(page, live_server):
    requested, errors = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: errors.append(error))  # a module that fails to load or link says so here
    page.goto(live_server.url + "/")
    page.wait_for_load_state("networkidle")
    assert requested and all(url.startswith(live_server.url) for url in requested)
    assets = {live_server.url + "/static/page.css", *(f"{live_server.url}/static/{name}" for name in MODULES)}
    assert assets <= set(requested)  # every module is in use, each loaded from here
    assert errors == []
    for name in MODULES:  # browsers run a module only when served as JavaScript
        served = requests.get(f"{live_server.url}/static/{name}", timeout=10)
        assert served.headers["Content-Type"].split(";")[0] in ("text/javascript", "application/javascript"), name
        # Nothing from the internet: the one URL is SVG's namespace name, never fetched.
        assert re.findall(r"https?://[^\s\"')]+", served.text) in ([], ["http://www.w3.org/2000/svg"]), name
    icon = requests.get(live_server.url + "/favicon.ico", timeout=10)
    assert icon.status_code == 200 and icon.headers["Content-Type"].startswith("image/svg+xml")


def test_a_file_name_is_shown_as_text_never_run_as_markup(page, live_server, tmp_path):
    name = "<img src=x onerror=window.__xss=1>.jpg"
    shutil.copy(DATA / "dog.jpg", tmp_path / name)
    count_photos_from(page, live_server, tmp_path / name)

    def shown_as_text():
        (row,) = table(page)
        assert row["file"] == name and row["status"] == "done"
        assert page.locator("#results tbody button.file").inner_text() == name
        assert page.locator("#viewer-title").inner_text() == name
        page.wait_for_load_state("networkidle")  # an <img src=x> made of the name would have failed by now
        assert page.locator("img[src='x']").count() == 0
        assert page.evaluate("typeof window.__xss") == "undefined"

    shown_as_text()
    page.reload()  # and as the history restores it
    page.wait_for_function(f"document.querySelectorAll('{FINISHED}').length === 1", timeout=10_000)
    shown_as_text()


def test_the_pages_csv_writes_a_hostile_file_name_as_text(page, live_server, tmp_path):
    """`x;=1+2;.jpg` is three cells where `;` separates them, the second a formula; an
    override (U+202E) makes a name show as another: the page's CSV is the API's."""
    name = "x;=1+2;\u202e.jpg"
    shutil.copy(DATA / "dog.jpg", tmp_path / name)
    count_photos_from(page, live_server, tmp_path / name)
    with page.expect_download() as download:
        page.click("#download-csv")
    path = tmp_path / "counts.csv"
    download.value.save_as(path)
    (line,) = csv.DictReader(io.StringIO(path.read_text()))
    api = live_server.post_photo("dog.jpg", format="csv", filename=name).text
    assert line["file"] == next(csv.DictReader(io.StringIO(api)))["file"] == "x;'=1+2;.jpg"


def test_no_module_writes_markup():
    # Names (files, classes from /model) reach the page only as text: no module parses HTML.
    for name in MODULES:
        source = (STATIC / name).read_text()
        assert not re.findall(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", source), name


def test_photos_named_alike_but_for_case_get_distinct_names_in_the_zip(page, live_server, tmp_path):
    # Extracted on Windows or macOS, Dog.annotated.jpg and dog.annotated.jpg would be one file.
    for name in ("Dog.jpg", "dog.jpg"):
        shutil.copy(DATA / "dog.jpg", tmp_path / name)
    count_photos_from(page, live_server, tmp_path / "Dog.jpg", tmp_path / "dog.jpg")
    with page.expect_download() as download:
        page.click("#download-zip")
    download.value.save_as(tmp_path / "photos.zip")
    with zipfile.ZipFile(tmp_path / "photos.zip") as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["Dog.annotated.jpg", "dog.annotated (2).jpg"]
    # Folders fold alike, and a name composed or decomposed (macOS) is one name.
    names = page.evaluate(
        """async (names) => (await import('./static/zip.js')).distinctNames(names)""",
        ["Day 1/a.jpg", "DAY 1/A.JPG", "caf\u00e9.jpg", "cafe\u0301.jpg", "notes"],
    )
    assert names == ["Day 1/a.jpg", "DAY 1/A (2).JPG", "caf\u00e9.jpg", "cafe\u0301 (2).jpg", "notes"]


def test_settings_and_photos_not_yet_counted_survive_a_reload_and_a_row_can_be_removed(page, live_server):
    page.goto(live_server.url + "/")
    for selector, script in (
        ("#threshold", "s => { s.value = '0.4'; s.dispatchEvent(new Event('change')); }"),
        ("#tiling", "s => { s.value = 'off'; s.dispatchEvent(new Event('change')); }"),
        ("#auto-crop", "s => { s.checked = true; s.dispatchEvent(new Event('change')); }"),
    ):
        page.eval_on_selector(selector, script)
    # The lab picks three photos and closes the page before any is counted.
    page.route("**/invocations", lambda route: None)  # the answers never come
    page.set_input_files("#photo", [str(DATA / name) for name in ("dog.jpg", "eagle.jpg", "person.jpg")])
    page.wait_for_function("document.querySelector('#results tbody tr').dataset.status === 'counting'")
    page.reload()
    page.wait_for_function("document.querySelectorAll('#results tbody tr').length === 3", timeout=10_000)
    assert page.eval_on_selector("#threshold", "s => s.value") == "0.4"
    assert page.eval_on_selector("#tiling", "s => s.value") == "off"
    assert page.eval_on_selector("#auto-crop", "s => s.checked")
    assert [row["status"] for row in table(page)] == ["waiting"] * 3
    page.unroute("**/invocations")  # the service answers again
    page.click("#count")  # "Count 3 waiting photos"
    wait_counted(page, 3)
    assert [row["threshold"] for row in table(page)] == ["0.40"] * 3
    stat = live_server.post_photo("dog.jpg", threshold=0.4, tiling="off", auto_crop="true").json()["stat"]
    assert table(page)[0]["counts"] == {name: n for name, n in stat.items() if n}  # with the settings kept
    # Another tiling: the photo in view is counted again, and the others are offered.
    page.eval_on_selector("#tiling", "s => { s.value = 'auto'; s.dispatchEvent(new Event('change')); }")
    page.wait_for_function("!document.querySelector('#recount-all').hidden", timeout=30_000)
    assert "tiling auto" in page.locator("#recount-all").inner_text()
    wait_counted(page, 3)
    # One row goes, from the table and from the history.
    page.click("#results tr[data-file='eagle.jpg'] button.remove")
    page.wait_for_function("document.querySelectorAll('#results tbody tr').length === 2")
    page.reload()
    page.wait_for_function(f"document.querySelectorAll('{FINISHED}').length === 2", timeout=10_000)
    assert [row["file"] for row in table(page)] == ["dog.jpg", "person.jpg"]


def test_when_the_service_stops_mid_batch_the_page_pauses_and_goes_on_when_it_is_back(page, model_dir, tmp_path):
    photos = []
    for round_ in range(2):
        for name in ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg"):
            photos.append(tmp_path / f"{round_}-{name}")
            shutil.copy(DATA / name, photos[-1])
    service = RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "1"}, tmp_path / "first.log")
    again = None
    try:
        service.wait_ready()
        page.goto(service.url + "/")
        page.set_input_files("#photo", [str(path) for path in photos])
        page.wait_for_function("document.querySelectorAll('#results tbody tr[data-status=done]').length >= 1")
        assert service.stop() == 0  # the lab's server goes down with photos still to count
        page.wait_for_function("document.querySelector('#progress').textContent.startsWith('Paused')", timeout=30_000)
        assert "goes on by itself when it is back" in page.locator("#progress").inner_text()
        assert not [row for row in table(page) if row["status"] == "failed"]
        again = RunningService(
            {"MODEL_DIR": str(model_dir), "WORKERS": "1", "PORT": str(service.port)}, tmp_path / "again.log"
        )
        again.port, again.url = service.port, service.url
        again.wait_ready()
        wait_counted(page, len(photos), timeout=120_000)
        assert [row["status"] for row in table(page)] == ["done"] * len(photos)  # none failed for the pause
        assert page.locator("#progress").inner_text().startswith(f"Counted {len(photos)} photos")
    finally:
        service.stop()
        if again:
            again.stop()


def test_the_slider_starts_at_the_models_own_threshold(page, model_dir, tmp_path):
    service = RunningService(
        {"MODEL_DIR": str(model_dir), "WORKERS": "1", "DEFAULT_THRESHOLD": "0.4"}, tmp_path / "service.log"
    )
    try:
        service.wait_ready()
        page.goto(service.url + "/")
        page.wait_for_function("document.querySelector('#threshold').value === '0.4'", timeout=10_000)
        page.set_input_files("#photo", str(DATA / "dog.jpg"))
        wait_counted(page, 1)
        assert table(page)[0]["threshold"] == "0.40"
        assert service.post_photo("dog.jpg", format="csv").text.splitlines()[1].split(",")[-6] == "0.4"  # the API too
    finally:
        service.stop()


def slider(page) -> str:
    return page.eval_on_selector("#threshold", "s => s.value")


def test_the_untouched_slider_follows_the_models_threshold_as_evaluate_saves_it(page, model_copy, tmp_path):
    for onnx in DEMO_MODEL.glob("*.onnx"):  # the export, made once already: no wait for another
        (model_copy / onnx.name).symlink_to(onnx)
    weights = model_copy / "yolov3-tiny.weights"
    service = RunningService({"MODEL_DIR": str(model_copy), "WORKERS": "1"}, tmp_path / "service.log")
    try:
        service.wait_ready()
        sha256 = requests.get(service.url + "/model", timeout=10).json()["files"][weights.name]
        page.goto(service.url + "/")
        page.wait_for_function("document.querySelectorAll('#model-classes li').length > 0", timeout=10_000)
        # Another control changed: the slider's 0.25 is kept as nobody's choice.
        page.eval_on_selector("#tiling", "s => { s.value = 'off'; s.dispatchEvent(new Event('change')); }")
        assert "threshold" not in page.evaluate("localStorage.getItem('count-organisms.settings')")
        save_threshold(weights, sha256, 0.37, "evaluate")  # as evaluate --save-threshold writes it
        # The page open all along: its next photo is counted with the model's new threshold, and the slider follows.
        page.set_input_files("#photo", str(DATA / "dog.jpg"))
        wait_counted(page, 1)
        assert table(page)[0]["threshold"] == "0.37" and slider(page) == "0.37"
        assert page.locator("#recount-all").is_hidden()  # counted at what the slider shows
        # Opened again later: the model's threshold of then.
        save_threshold(weights, sha256, 0.33, "evaluate")
        page.reload()
        page.wait_for_function("document.querySelector('#threshold').value === '0.33'", timeout=10_000)
        # A browser whose older page stored the untouched 0.25 follows the model too.
        page.evaluate("""localStorage.setItem('count-organisms.settings',
            JSON.stringify({threshold: 0.25, tiling: 'auto', autoCrop: false}))""")
        page.reload()
        page.wait_for_function("document.querySelector('#threshold').value === '0.33'", timeout=10_000)
        # Moved by the person: theirs from then on, whatever the model says, with a way back.
        page.eval_on_selector("#threshold", "s => { s.value = '0.5'; s.dispatchEvent(new Event('change')); }")
        save_threshold(weights, sha256, 0.3, "evaluate")
        page.reload()
        page.wait_for_selector("#threshold-model", state="visible", timeout=10_000)
        assert slider(page) == "0.5" and page.locator("#threshold-model").inner_text() == "Use the model's 0.30"
        page.click("#threshold-model")
        assert slider(page) == "0.3" and page.locator("#threshold-model").is_hidden()
        assert "threshold" not in page.evaluate("localStorage.getItem('count-organisms.settings')")
        page.wait_for_function(
            "document.querySelector('#results tbody tr .threshold').textContent === '0.30'"
            " && document.querySelector('#results tbody tr').dataset.status === 'done'"
        )
    finally:
        service.stop()


def test_box_lines_scale_with_the_photo_on_screen_and_the_crop_shows_on_a_white_dish(page, live_server):
    count_photos(page, live_server, "horses.jpg")
    page.wait_for_function("document.querySelector('#annotated').naturalWidth === 773")
    on_screen = """() => {
        const rect = document.querySelector('#boxes g rect');
        const photoPixels = parseFloat(getComputedStyle(rect).strokeWidth);
        return photoPixels * rect.getScreenCTM().a;  // the photo's pixels to the screen's
    }"""
    fitted = page.evaluate(on_screen)
    for _ in range(3):
        page.click("#zoom-in")
    zoomed = page.evaluate(on_screen)
    assert fitted >= 0.99 and zoomed > 2.5 * fitted  # the line grows with the photo, as in its JPEG
    crop_filter = page.evaluate(
        """() => { const probe = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
        probe.setAttribute('class', 'crop'); document.querySelector('#boxes').append(probe);
        const style = getComputedStyle(probe); const shown = [style.stroke, style.filter];
        probe.remove(); return shown; }"""
    )
    assert crop_filter[0] == "rgb(255, 255, 255)" and "drop-shadow" in crop_filter[1]  # white dashes, dark edge


def made_up_answers(page, classes: list[str], failing: str) -> None:
    """The service's answers, made up where only the table is tested: every class counted
    once (80 columns for the COCO model), and a 400 for the file named `failing`."""

    def answer(route):
        name = re.search(rb'name="filename"\r\n\r\n([^\r]*)', route.request.post_data_buffer)[1].decode()
        if name == failing:
            error = {"code": "damaged_image", "message": "the photo is cut short: copy it again from the camera"}
            route.fulfill(status=400, json={"error": error})
            return
        counts = dict.fromkeys(classes, 1)
        line = {"file": name, "date": None, "width": 768, "height": 576, "crop": None, "counts": counts}
        line |= {"total": len(counts), "threshold": 0.25, "model": "0123456789ab", "ms": 5.0, "error": ""}
        route.fulfill(status=200, json={**line, "detections": []})

    page.route("**/invocations", answer)


def error_in_view(page, name: str) -> bool:
    """The failed row's reason is on screen and on top, where the window shows it now."""
    return page.evaluate(
        """(name) => { const error = document.querySelector(`#results tr[data-file='${name}'] .error`);
        scrollTo(0, scrollY + error.getBoundingClientRect().top - innerHeight / 2);  // the page, never the table
        const box = error.getBoundingClientRect();
        const hit = document.elementFromPoint(box.left + Math.min(20, box.width / 2), box.top + box.height / 2);
        return box.width > 0 && box.left >= 0 && box.right <= innerWidth && error.contains(hit); }""",
        name,
    )


def test_with_80_classes_a_failed_rows_reason_is_in_view_without_scrolling_the_table(browser, live_server, tmp_path):
    classes = requests.get(live_server.url + "/model", timeout=10).json()["classes"]
    failing = "day 3/culture B, photo taken through the eyepiece 0017.jpg"
    (tmp_path / "day 3").mkdir()
    shutil.copy(DATA / "dog.jpg", tmp_path / "day 3" / "good.jpg")
    shutil.copy(DATA / "dog.jpg", tmp_path / failing)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        page.goto(live_server.url + "/")
        page.wait_for_function("document.querySelectorAll('#model-classes li').length === 80", timeout=10_000)
        made_up_answers(page, classes, failing)
        page.set_input_files("#folder", str(tmp_path / "day 3"))
        wait_counted(page, 2)
        assert page.locator("#results thead th .swatch").count() == 80
        wrap = page.locator(".table-wrap")
        assert wrap.evaluate("w => w.scrollWidth > 3 * w.clientWidth && w.scrollLeft === 0")  # 80 columns, unscrolled
        (row,) = [row for row in table(page) if row["status"] == "failed"]
        assert row["error"] == "The photo could not be counted: the photo is cut short: copy it again from the camera"
        assert error_in_view(page, failing)
        assert wrap.evaluate("w => w.scrollLeft") == 0
        screenshot(page, tmp_path / "80-classes-1400.png")
        # Scrolled to the far right, the file column and its reason stay; at phone width too.
        wrap.evaluate("w => { w.scrollLeft = w.scrollWidth; }")
        assert error_in_view(page, failing) and wrap.evaluate("w => w.scrollLeft") > 0
        page.set_viewport_size({"width": 390, "height": 844})
        wrap.evaluate("w => { w.scrollLeft = 0; }")
        assert error_in_view(page, failing)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, tmp_path / "80-classes-390.png")
    finally:
        context.close()
