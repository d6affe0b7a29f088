"""The rows a YOLO network answers, one per box (cx, cy, w, h, objectness, then class
scores, in network pixels): cut to those worth keeping and placed back on the photo.
OpenCV's darknet importer and the project's ONNX export answer the same rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from app.model.darknet_cfg import NetworkInput
from app.vision.detection import Candidates
from app.vision.preprocess import Placement, fit_to_network

BOX_AND_OBJECTNESS = 5
MAX_BATCH = 8  # tiles per run: bounds the activations' memory on big photos


def candidates(rows: np.ndarray, placement: Placement, min_score: float) -> Candidates:
    rows = rows[rows[:, BOX_AND_OBJECTNESS:].max(axis=1) > min_score]
    return Candidates(boxes=placement.to_image_boxes(rows[:, :4]), scores=rows[:, BOX_AND_OBJECTNESS:])


def predict_in_batches(
    images: list[np.ndarray],
    network: NetworkInput,
    min_score: float,
    run: Callable[[np.ndarray], Sequence[np.ndarray]],
) -> list[Candidates]:
    """`run` takes a batch of blobs and returns the network's outputs, each indexed by
    the photo's place in the batch."""
    results = []
    for start in range(0, len(images), MAX_BATCH):
        fitted = [fit_to_network(image, network) for image in images[start : start + MAX_BATCH]]
        outputs = run(np.concatenate([blob for blob, _ in fitted]))
        for number, (_, placement) in enumerate(fitted):
            results.append(candidates(np.concatenate([output[number] for output in outputs]), placement, min_score))
    return results
