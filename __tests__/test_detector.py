"""The opencv engine on the real yolov3-tiny and the real sample photos."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from support import photo_rgb, wait_until

from app.vision.detection import DetectOptions
from app.vision.postprocess import count_by_class

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


def test_a_photo_arriving_during_a_big_tiled_one_takes_the_engine_between_its_tiles(detector):
    """The engine was held for a whole tiled photo: a 100 MP one kept a camera photo
    waiting for a minute. Now the big photo gives it back between runs of tiles."""
    big = np.tile(photo_rgb("dog.jpg"), (6, 6, 1))  # 4608x3456: some 150 tiles
    dog = photo_rgb("dog.jpg")
    finished = []

    def run(name, image, options):
        detector.detect(image, options)
        finished.append(name)

    with ThreadPoolExecutor(2) as pool:
        tiled = pool.submit(run, "big", big, DetectOptions(tiling="on"))
        wait_until(lambda: detector._lock._held, timeout=30)  # the big photo is at work
        pool.submit(run, "dog", dog, DetectOptions(tiling="off")).result(60)
        assert not tiled.done()
        tiled.result(300)
    assert finished == ["dog", "big"]


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
