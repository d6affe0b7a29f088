import numpy as np
import pytest

from app.model.darknet_cfg import NetworkInput
from app.vision.preprocess import fit_to_network


def test_plain_resize_fills_the_network_input():
    image = np.full((300, 600, 3), 255, dtype=np.uint8)
    blob, placement = fit_to_network(image, NetworkInput(416, 416, 3, letter_box=False))
    assert blob.shape == (1, 3, 416, 416) and blob.dtype == np.float32
    assert blob.min() == pytest.approx(1.0)
    box = placement.to_image_boxes(np.array([[0.5, 0.5, 0.5, 0.5]], dtype=np.float32))
    assert box.tolist() == [[150.0, 75.0, 300.0, 150.0]]


def test_letterbox_keeps_aspect_and_maps_boxes_back():
    image = np.full((300, 600, 3), 255, dtype=np.uint8)
    blob, placement = fit_to_network(image, NetworkInput(416, 416, 3, letter_box=True))
    # 600x300 -> 416x208, centred: grey 0.5 margins above and below, as darknet.
    assert (placement.scaled_width, placement.scaled_height) == (416, 208)
    assert blob[0, :, :104].max() == pytest.approx(0.5)
    assert blob[0, :, 104:312].min() == pytest.approx(1.0)
    # The whole image, in network coordinates, maps back to the whole image.
    whole = placement.to_image_boxes(np.array([[0.5, 0.5, 1.0, 208 / 416]], dtype=np.float32))
    assert whole[0] == pytest.approx([0.0, 0.0, 600.0, 300.0], abs=1e-3)
