"""One deadline bounds every wait of a photo: the engine, the batcher, the pixel budget
and the tiles, on a fixed engine (no model file)."""

import threading
import time

import numpy as np
import pytest
from fakes import FAKE_STAT, FixedEngine, fake_detector
from support import photo_bytes

from app.http.pixel_budget import BudgetExhausted, PixelBudget
from app.inference.detector import DeadlineExceeded, EngineBusy
from app.pipeline import PhotoLimits, process_photo
from app.settings import ConfigError, Settings
from app.vision.detection import DetectOptions

PHOTO = np.zeros((480, 640, 3), dtype=np.uint8)


class SlowEngine(FixedEngine):
    """Takes `seconds` a pass: long enough for another photo to wait on it."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.started = threading.Event()

    def predict(self, image, min_score):
        self.started.set()
        time.sleep(self.seconds)
        return super().predict(image, min_score)


def test_a_busy_engine_is_waited_for_until_the_deadline_and_no_longer(tmp_path):
    detector = fake_detector(tmp_path, SlowEngine(0.6))
    holder = threading.Thread(target=detector.detect, args=(PHOTO,))
    holder.start()
    detector.engine.started.wait(5)
    began = time.monotonic()
    with pytest.raises(EngineBusy, match="busy until the request's deadline"):
        detector.detect(PHOTO, deadline=time.monotonic() + 0.1)
    assert time.monotonic() - began < 0.5  # not the engine's 0.6 s: the deadline's 0.1
    holder.join()
    # Time left: it waits its turn and is counted.
    assert len(detector.detect(PHOTO, deadline=time.monotonic() + 5)) == sum(FAKE_STAT.values())


def test_the_batcher_waits_until_the_same_deadline(tmp_path):
    detector = fake_detector(tmp_path, SlowEngine(0.6), max_batch=2)
    holder = threading.Thread(target=detector.detect, args=(PHOTO,))
    holder.start()
    detector.engine.started.wait(5)
    with pytest.raises(EngineBusy):
        detector.detect(PHOTO, deadline=time.monotonic() + 0.1)
    holder.join()


def test_without_a_deadline_a_photo_waits_as_long_as_it_takes(tmp_path):
    detector = fake_detector(tmp_path, SlowEngine(0.3))
    holder = threading.Thread(target=detector.detect, args=(PHOTO,))
    holder.start()
    detector.engine.started.wait(5)
    assert len(detector.detect(PHOTO)) == sum(FAKE_STAT.values())  # the count command's case
    holder.join()


def test_tiles_past_the_deadline_stop_the_photo(tmp_path):
    detector = fake_detector(tmp_path, SlowEngine(0.05))
    big = np.zeros((3000, 4000, 3), dtype=np.uint8)  # dozens of tiles
    big[::50] = 255  # lines in every tile: a plain one is not run (tile_skipping.py)
    with pytest.raises(DeadlineExceeded, match="tiles"):
        detector.detect(big, DetectOptions(tiling="on"), deadline=time.monotonic() + 0.2)


def test_the_pixel_budget_is_waited_for_until_the_photos_deadline(tmp_path):
    detector = fake_detector(tmp_path)
    budget = PixelBudget(500_000)  # dog.jpg is 768x576: one at a time
    limits = PhotoLimits(max_pixels=10**8, deadline=time.monotonic() + 0.1, hold_pixels=budget.hold)
    with budget.hold(400_000, time.monotonic() + 5), pytest.raises(BudgetExhausted):
        process_photo(photo_bytes("dog.jpg"), detector, DetectOptions(), limits)
    later = PhotoLimits(max_pixels=10**8, deadline=time.monotonic() + 5, hold_pixels=budget.hold)
    assert process_photo(photo_bytes("dog.jpg"), detector, DetectOptions(), later).counts == FAKE_STAT


def test_inference_wait_s_is_gone_and_says_so():
    with pytest.raises(ConfigError, match="INFERENCE_WAIT_S is gone: REQUEST_DEADLINE_S now bounds every wait"):
        Settings.from_env({"INFERENCE_WAIT_S": "30"})
