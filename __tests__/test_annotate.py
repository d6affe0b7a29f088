import numpy as np

from app.vision.annotate import PALETTE, annotate, class_colour
from app.vision.detection import Detection


def rotifer(x, y, size=12, confidence=0.9):
    return Detection(0, "Rotifer", confidence, (float(x), float(y), float(size), float(size)))


def test_keeps_size_and_leaves_the_input_untouched():
    image = np.full((600, 800, 3), 255, dtype=np.uint8)
    out = annotate(image, [rotifer(400, 300)], {"Rotifer": 1, "Dead": 0})
    assert out.shape == image.shape
    assert (image == 255).all()
    assert not (out == image).all()


def test_boxes_drawn_in_the_class_colour():
    image = np.full((600, 800, 3), 255, dtype=np.uint8)
    out = annotate(image, [rotifer(400, 300, size=100)], {"Rotifer": 1})
    assert out[350, 400].tolist() == list(PALETTE[0])  # left edge of the box


def test_hundreds_of_small_objects_stay_readable():
    image = np.full((2000, 2000, 3), 200, dtype=np.uint8)
    crowd = [rotifer(100 + 30 * (i % 60), 300 + 30 * (i // 60), size=20) for i in range(300)]
    out = annotate(image, crowd, {"Rotifer": 300})
    inside = out[300 + 30 * 2 + 8, 100 + 30 * 2 + 8]  # the centre of an organism
    assert inside.tolist() == [200, 200, 200]  # no label painted over it


def test_colours_are_distinct_for_many_classes():
    colours = {class_colour(i) for i in range(40)}
    assert len(colours) == 40


def test_bgr_canvas_is_the_same_picture_for_the_jpeg_encoder():
    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    detections = [rotifer(50, 60, size=40), Detection(3, "Dead", 0.5, (200.0, 100.0, 60.0, 30.0))]
    counts = {"Rotifer": 1, "Dead": 1}
    rgb = annotate(image, detections, counts)
    bgr = annotate(image, detections, counts, channels="BGR")
    assert (bgr[:, :, ::-1] == rgb).all()
