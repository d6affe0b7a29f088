"""The opencv engine on the real yolov3-tiny and the real sample photos."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fakes import FixedEngine, fake_detector
from support import photo_rgb, wait_until

from app.inference.detector import TILES_PER_CHECK
from app.vision.detection import DetectOptions
from app.vision.postprocess import count_by_class
from app.vision.tiling import tile_grid

# Hand-drawn boxes (x1, y1, x2, y2) around the objects in Debian's dog.jpg (768x576).
DOG_JPG_OBJECTS = {
    "dog": (128, 220, 315, 540),
    "bicycle": (125, 125, 570, 430),
    "vehicle": (465, 72, 690, 172),  # a white pick-up: COCO's car and truck both fit
}


def overlap(box, known) -> float:
    """IoU of an x, y, w, h box with an x1, y1, x2, y2 box."""
    x, y, w, h = box
    ix = max(0.0, min(x + w, known[2]) - max(x, known[0]))
    iy = max(0.0, min(y + h, known[3]) - max(y, known[1]))
    inter = ix * iy
    return inter / (w * h + (known[2] - known[0]) * (known[3] - known[1]) - inter)


def test_dog_jpg_counts_and_boxes(detector):
    detections = detector.detect(photo_rgb("dog.jpg"))
    counts = count_by_class(detections, detector.class_names)
    assert len(counts) == 80 and list(counts) == list(detector.class_names)
    assert counts["dog"] >= 1 and counts["bicycle"] >= 1 and counts["car"] + counts["truck"] >= 1
    assert sum(counts.values()) <= 5
    for detection in detections:
        x, y, w, h = detection.box
        known = DOG_JPG_OBJECTS.get(detection.class_name, DOG_JPG_OBJECTS["vehicle"])
        assert known[0] < x + w / 2 < known[2] and known[1] < y + h / 2 < known[3], detection
    for name in ("dog", "bicycle"):
        best = max((d for d in detections if d.class_name == name), key=lambda d: d.confidence)
        assert overlap(best.box, DOG_JPG_OBJECTS[name]) >= 0.45, best


@pytest.mark.parametrize(
    ("photo", "expected"),
    [
        ("person.jpg", {"person": 1, "dog": 2}),
        ("horses.jpg", {"horse": 6}),
        ("eagle.jpg", {"bird": 1}),
        ("kite.jpg", {"kite": 2, "person": 2}),
    ],
)
def test_sample_photos(detector, photo, expected):
    # One whole-image pass, as darknet does (kite.jpg would be tiled otherwise: test_tiling.py).
    counts = count_by_class(detector.detect(photo_rgb(photo), DetectOptions(tiling="off")), detector.class_names)
    assert {name: counts[name] for name in expected} == expected


def test_threshold_below_opencvs_own_floor_is_honoured(detector):
    # OpenCV zeroes scores under 0.2 unless the engine lifts that floor.
    low = detector.detect(photo_rgb("dog.jpg"), DetectOptions(threshold=0.05))
    assert min(d.confidence for d in low) < 0.2
    assert len(low) > len(detector.detect(photo_rgb("dog.jpg")))


def test_concurrent_calls_match_serial_calls(detector):
    photos = ["dog.jpg", "person.jpg", "horses.jpg", "eagle.jpg"] * 3
    images = {name: photo_rgb(name) for name in set(photos)}
    serial = {name: detector.detect(image) for name, image in images.items()}
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda name: (name, detector.detect(images[name])), photos))
    for name, detections in parallel:
        assert detections == serial[name]


def test_an_image_smaller_than_the_network_works(detector):
    assert detector.detect(np.zeros((1, 1, 3), dtype=np.uint8)) == []


class LoggedEngine(FixedEngine):
    """A fixed engine that logs its passes, ("photo", width) or ("tiles", how many), and
    stays in its first run of tiles until `go` is set: long enough for a photo to arrive."""

    def __init__(self):
        super().__init__()
        self.passes = []
        self.in_tiles = threading.Event()
        self.go = threading.Event()

    def predict(self, image, min_score):
        self.passes.append(("photo", image.shape[1]))
        return super().predict(image, min_score)

    def predict_many(self, images, min_score):
        self.passes.append(("tiles", len(images)))
        if not self.in_tiles.is_set():
            self.in_tiles.set()
            assert self.go.wait(30)
        return [FixedEngine.predict(self, image, min_score) for image in images]


def test_a_photo_arriving_during_a_big_tiled_one_takes_the_engine_between_its_tiles(tmp_path):
    """The engine was held for a whole tiled photo: a 100 MP one kept a camera photo
    waiting for a minute. Now the big photo gives it back between runs of tiles. The
    turns are the detector's, whatever the engine: a fixed one, whose passes are logged."""
    engine = LoggedEngine()
    detector = fake_detector(tmp_path, engine)
    big = np.zeros((3456, 4608, 3), np.uint8)  # 4608x3456: some 150 tiles
    big[::50] = 255  # lines in every tile: a plain one is not run (tile_skipping.py)
    dog = np.zeros((576, 768, 3), np.uint8)
    with ThreadPoolExecutor(2) as pool:
        try:
            tiled = pool.submit(detector.detect, big, DetectOptions(tiling="on"))
            assert engine.in_tiles.wait(30)  # the big photo is at work on its first run of tiles
            small = pool.submit(detector.detect, dog, DetectOptions(tiling="off"))
            wait_until(lambda: len(detector._lock._line) == 1)  # the dog waits for the engine
        finally:
            engine.go.set()
        small.result(60)
        tiled.result(60)
    tiles = len(tile_grid((4608, 3456), (416, 416)))
    runs = -(-tiles // TILES_PER_CHECK)
    # The dog's pass comes after the big photo's first run of tiles, not after its last.
    assert engine.passes[:3] == [("photo", 4608), ("tiles", TILES_PER_CHECK), ("photo", 768)]
    assert [kind for kind, _ in engine.passes[3:]] == ["tiles"] * (runs - 1) and runs > 10
    assert sum(count for kind, count in engine.passes if kind == "tiles") == tiles


def test_the_engine_goes_to_the_caller_with_the_fewest_turns_then_the_first_come():
    from app.inference.engine_turns import EngineTurns

    turns = EngineTurns()
    turns.acquire()
    order = []

    def take(name, had):
        turns.acquire(turns_had=had)
        order.append(name)
        turns.release()

    waiting = []
    callers = (("tiles of a", 5), ("tiles of b", 3), ("new", 0), ("later tiles of b", 3))
    for count, (name, had) in enumerate(callers, start=1):
        waiting.append(threading.Thread(target=take, args=(name, had)))
        waiting[-1].start()
        wait_until(lambda count=count: len(turns._line) == count)
    assert not turns.acquire(timeout=0.05)  # held: a timeout, as threading.Lock's
    turns.release()
    for thread in waiting:
        thread.join(5)
    assert order == ["new", "tiles of b", "later tiles of b", "tiles of a"]
