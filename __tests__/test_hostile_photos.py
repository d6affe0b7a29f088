"""Hostile photos over real HTTP to a real gunicorn: only camera formats are decoded,
damage is an error and not a count, work and memory per worker are bounded, and the
worker stays up. The photos are made on the fly (synthetic/hostile_photos.py), none is committed."""

import contextlib
import threading
import time

import cv2
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import RunningService, photo_bytes, started, wait_until, worker_pids

from app.http.pixel_budget import BudgetExhausted, PixelBudget
from app.vision.images import DamagedImage, InvalidImage, decode_image
from bench.hostile import send_at_once, worker_memory_mb
from synthetic.hostile_photos import (
    dds_with_unknown_flags,
    exif_with_values,
    gif_growing_canvas,
    icns_holding_png,
    ico_holding_png,
    jpeg_claiming,
    jpeg_cut_with_end_marker,
    jpeg_with_app_segments,
    jpeg_with_repeated_scans,
    padded_png,
    png,
    png_with_empty_chunks,
    png_with_exif,
    png_with_text,
    tiff_with_strips,
    webp_lossless,
)

# name -> (maker, status, code); made when sent: some are tens of MB.
REFUSED_BEFORE_DECODING = {
    "ICO holding a 20000x20000 PNG": (lambda: ico_holding_png(20_000, 20_000), 400, "invalid_image"),
    "ICNS holding a 20000x20000 PNG": (lambda: icns_holding_png(20_000, 20_000), 400, "invalid_image"),
    "DDS with unknown pixel format": (dds_with_unknown_flags, 400, "invalid_image"),
    "JPEG header claiming 10000x10000": (lambda: jpeg_claiming(10_000, 10_000), 400, "damaged_image"),
    "progressive JPEG, a scan x10000": (jpeg_with_repeated_scans, 400, "damaged_image"),
    "JPEG cut to a third + end marker": (jpeg_cut_with_end_marker, 400, "damaged_image"),
    # Round 3: structure and canvases bounded from the header.
    "GIF of 35 bytes growing to 9001x9001": (gif_growing_canvas, 400, "decompression_bomb"),
    "lossless WebP 10000x10000 in a few KB": (lambda: webp_lossless(10_000, 10_000), 400, "decompression_bomb"),
    "TIFF of 3M strips": (tiff_with_strips, 400, "damaged_image"),
    "JPEG of 6M APP segments": (jpeg_with_app_segments, 400, "damaged_image"),
    "PNG of 3.5M empty chunks": (png_with_empty_chunks, 400, "damaged_image"),
    "PNG whose EXIF claims 10M values": (lambda: png_with_exif(exif_with_values()), 400, "damaged_image"),
    # Round 4: padding pays no pixels.
    "GIF growing to 9001x9001, 84 KB of comments": (
        lambda: gif_growing_canvas(padding=84_000),
        400,
        "decompression_bomb",
    ),
    "1-bit PNG 10000x10000, 120 KB of text chunks": (
        lambda: png_with_text(10_000, 10_000, 120_000),
        400,
        "decompression_bomb",
    ),
}


@pytest.fixture(scope="module")
def service(model_dir, tmp_path_factory):
    """The default deployment: one worker, default limits."""
    with started({"MODEL_DIR": str(model_dir), "WORKERS": "1"}, tmp_path_factory.mktemp("h") / "log") as running:
        yield running


@pytest.mark.e2e
@pytest.mark.parametrize("case", REFUSED_BEFORE_DECODING)
def test_hostile_photos_are_a_4xx_and_never_counted(service, case):
    make, status, code = REFUSED_BEFORE_DECODING[case]
    photo = make()
    workers = worker_pids(service.process.pid)
    response = requests.post(
        f"{service.url}/invocations", data=photo, headers={"Content-Type": "image/jpeg"}, timeout=60
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert worker_pids(service.process.pid) == workers  # nothing crashed
    assert (
        requests.post(
            f"{service.url}/invocations",
            data=photo_bytes("dog.jpg"),
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        ).json()["stat"]["dog"]
        == 1
    )


@pytest.mark.e2e
def test_three_hostile_structures_at_once_cost_the_worker_no_memory(model_dir, tmp_path):
    """Three TIFFs of 3 million strips took 60-76 s each and the worker to 4.8 GB, then
    a 503; now each is a 400 from its header, and the worker stays at its resting size."""
    running = RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "1"}, tmp_path / "log")
    try:
        running.wait_ready()
        _, resting = worker_memory_mb(running.process.pid)
        for photo, content_type in ((tiff_with_strips(), "image/tiff"), (png_with_empty_chunks(), "image/png")):
            responses = send_at_once(running.url, photo, content_type, 3, {})
            assert [response.status_code for response in responses] == [400] * 3
        peak, _ = worker_memory_mb(running.process.pid)
        assert running.post_photo("dog.jpg").json()["stat"]["dog"] == 1
    finally:
        running.stop()
    # The bodies themselves (27-43 MB, three at once) are all the worker held.
    assert peak < resting + 600, f"worker peak RSS {peak:.0f} MB, {resting:.0f} MB at rest"


@pytest.mark.e2e
def test_three_padded_gifs_at_once_are_refused_in_milliseconds_at_no_memory(model_dir, tmp_path):
    """An 81 MP canvas grown by a 1x1 frame, paid for with 84 KB of comments (958 pixels a
    byte of file): accepted, it took the worker 800 MB and 60 s of engine time, then a 503.
    Its pixel data is 2 bytes: a 400 from the header, no pixel decoded."""
    padded = gif_growing_canvas(padding=84_000)
    running = RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "1"}, tmp_path / "log")
    try:
        running.wait_ready()
        _, resting = worker_memory_mb(running.process.pid)
        started = time.perf_counter()
        responses = send_at_once(running.url, padded, "application/x-image", 3, {})
        seconds = time.perf_counter() - started
        peak, _ = worker_memory_mb(running.process.pid)
    finally:
        running.stop()
    assert [response.json()["error"]["code"] for response in responses] == ["decompression_bomb"] * 3
    assert "2 bytes of pixel data" in responses[0].json()["error"]["message"]
    assert seconds < 5, f"{seconds:.1f} s"  # milliseconds of work; the rest is three HTTP round trips
    assert peak < resting + 50, f"worker peak RSS {peak:.0f} MB, {resting:.0f} MB at rest"  # 81 MP is 243 MB as RGB


@pytest.mark.e2e
def test_four_in_limit_memory_bombs_at_once_stay_within_the_pixel_budget(model_dir, tmp_path):
    """Four 100 MP lossless WebPs (a few bytes each) took the worker to 7.8 GB when
    they decoded together; with the budget they take their turn. Those are refused now
    (pixels per byte): these PNGs pay enough bytes to pass, and the budget holds them."""
    bomb = padded_png(10_000, 10_000, 200_000)
    running = RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "1"}, tmp_path / "log")
    try:
        running.wait_ready()
        responses = send_at_once(running.url, bomb, "image/png", 4, {"tiling": "off"})
        assert [response.status_code for response in responses] == [200] * 4
        peak, _ = worker_memory_mb(running.process.pid)
        with contextlib.suppress(AssertionError):  # given back within seconds: asserted below
            wait_until(lambda: worker_memory_mb(running.process.pid)[1] < 1200, timeout=10)
        _, after = worker_memory_mb(running.process.pid)
    finally:
        running.stop()
    assert peak < 4000, f"worker peak RSS {peak:.0f} MB"  # about one 100 MP photo's worth (2.7 GB), not four
    assert after < 1200, f"worker RSS {after:.0f} MB after the photos"  # given back


@pytest.mark.e2e
def test_a_photo_past_its_deadline_is_a_503_and_frees_the_engine(model_dir, tmp_path):
    """A 4000x3000 photo, tiled at full resolution, with a 1 s deadline: it stops
    between tiles instead of holding the engine; the next photo is served."""
    lines = np.zeros((3000, 4000, 3), np.uint8)
    lines[::50] = 255  # in every tile: a plain tile is not run (app/vision/tile_skipping.py)
    big = cv2.imencode(".png", lines)[1].tobytes()
    running = RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "1", "REQUEST_DEADLINE_S": "1"}, tmp_path / "log")
    try:
        running.wait_ready()
        refused = requests.post(
            f"{running.url}/invocations",
            data=big,
            headers={"Content-Type": "image/png"},
            params={"tiling": "on"},
            timeout=120,
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "deadline_exceeded" and "tiling=off" in refused.text
        assert refused.headers["Retry-After"]
        dog = requests.post(
            f"{running.url}/invocations",
            data=photo_bytes("dog.jpg"),
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
        assert dog.status_code == 200 and dog.json()["stat"]["dog"] == 1
    finally:
        running.stop()


def test_the_budget_serves_in_arrival_order_and_refuses_at_the_deadline():
    budget = PixelBudget(100)
    order = []
    with budget.hold(80, time.monotonic() + 5):

        def later(name, pixels):
            with budget.hold(pixels, time.monotonic() + 5):
                order.append(name)

        big = threading.Thread(target=later, args=("big", 90))
        big.start()
        wait_until(lambda: budget._turns.waiting == 1)
        small = threading.Thread(target=later, args=("small", 10))  # would fit now, but waits its turn
        small.start()
        wait_until(lambda: budget._turns.waiting == 2)
        assert order == [] and budget.used == 80
        with pytest.raises(BudgetExhausted, match="deadline"), budget.hold(10, time.monotonic() + 0.1):
            pass
    big.join(5)
    small.join(5)
    assert order == ["big", "small"] and budget.used == 0
    with budget.hold(1000, time.monotonic() + 1):  # bigger than the whole budget: runs alone
        assert budget.used == 100


# Decoder damage as a property: any cut of a real photo, with or without an end marker,
# and any flipped bytes, is an InvalidImage or a photo, never another exception.
DOG = photo_bytes("dog.jpg")
PNG_PHOTO = png(64, 48)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=st.sampled_from([DOG, PNG_PHOTO, webp_lossless(64, 48)]),
    cut=st.floats(0.05, 1.0, allow_subnormal=False),  # a library in the process may flush subnormals
    end_marker=st.booleans(),
    flips=st.lists(st.tuples(st.floats(0, 1, allow_subnormal=False), st.integers(0, 255)), max_size=4),
)
def test_damaged_photos_never_raise_anything_but_invalid_image(source, cut, end_marker, flips):
    data = bytearray(source[: max(1, int(len(source) * cut))])
    for where, value in flips:
        data[min(len(data) - 1, int(len(data) * where))] = value
    if end_marker:
        data += b"\xff\xd9"
    with contextlib.suppress(InvalidImage):
        decode_image(bytes(data), 100_000_000)


def test_a_jpeg_cut_short_with_an_end_marker_is_damaged_not_grey():
    with pytest.raises(DamagedImage, match=r"premature end|Corrupt"):
        decode_image(jpeg_cut_with_end_marker(), 100_000_000)


def test_a_small_photo_of_a_client_holding_nothing_passes_a_big_one_waiting_for_the_budget():
    """One client's 100 MP photo holds the whole budget and its next waits: another
    client's camera photo takes the reserve at once instead of waiting a minute; a
    second photo of that client, or a big one, still waits its turn."""
    budget = PixelBudget(100)
    with budget.hold(100, time.monotonic() + 5, client="hostile"):
        waiting = threading.Thread(
            target=lambda: budget.hold(90, time.monotonic() + 5, client="hostile").__enter__(), daemon=True
        )
        waiting.start()
        wait_until(lambda: budget._turns.waiting == 1)
        with budget.hold(10, time.monotonic() + 1, client="normal"):
            assert budget.used == 110  # in the reserve (an eighth: 12)
            with pytest.raises(BudgetExhausted), budget.hold(10, time.monotonic() + 0.2, client="normal"):
                pass
        with pytest.raises(BudgetExhausted), budget.hold(20, time.monotonic() + 0.2, client="other"):
            pass  # bigger than the reserve
