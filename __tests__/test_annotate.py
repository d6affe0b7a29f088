import numpy as np
import pytest

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


@pytest.mark.parametrize(("longest", "at_least"), [(800, 1), (4000, 5)])
def test_box_lines_are_thick_enough_to_see_on_a_photo_of_any_size(longest, at_least):
    # The page's pictures are these too (its downloads are the service's own): on a 4000 px
    # photo shown whole on a screen, a 1-2 px line would vanish.
    photo = np.full((longest * 3 // 4, longest, 3), 255, np.uint8)
    box = Detection(0, "Rotifer", 0.9, (longest / 2, longest / 4, longest / 10, longest / 10))
    drawn = annotate(photo, [box], {"Rotifer": 1})
    row = drawn[longest // 4 + longest // 20]  # across the box's middle: its left and right edges
    coloured = np.flatnonzero((row != 255).any(axis=1))
    left_edge = coloured[coloured < longest / 2 + longest / 20]
    assert at_least <= len(left_edge) <= round(longest / 700) + 1  # cv2 draws an even width one wider
