"""One darknet network: load, predict from numpy memory, free. Thread-safe by a lock,
since darknet keeps per-network state (layer outputs, workspace) that calls share."""

from __future__ import annotations

import ctypes
import threading
from ctypes import POINTER, byref, c_float, c_int
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .library import ALEXEYAB, DarknetLibrary, LibraryError
from .structs import Image

HIER_THRESHOLD = 0.5  # darknet's default; only YOLO9000-style tree models use it


@dataclass(frozen=True)
class RawDetections:
    """Boxes darknet found, before NMS: cx, cy, w, h relative to the photo (0..1),
    and objectness x class probability per class (0 where not above min_score)."""

    boxes: np.ndarray
    scores: np.ndarray


class Network:
    def __init__(
        self,
        library: DarknetLibrary,
        cfg: Path,
        weights: Path,
        classes: int,
        letter_box: bool = False,
        use_gpu: bool = False,
        batch: int = 1,
    ):
        if use_gpu and not library.has_gpu:
            raise LibraryError(f"{library.path} is a CPU-only build: it cannot run on the GPU")
        if batch > 1 and not library.has_batch:
            raise LibraryError(f"{library.path} has no network_predict_batch: batch must be 1")
        self._lib, self._c = library, library.cdll
        self.classes, self.letter_box, self.batch = classes, letter_box, batch
        self._lock = threading.Lock()
        if library.has_gpu:
            # gpu_index < 0 keeps a CUDA build on the CPU (both flavours read it as the
            # network is made); CUDA_VISIBLE_DEVICES picks the card.
            ctypes.c_int.in_dll(self._c, "gpu_index").value = 0 if use_gpu else -1
            if use_gpu and library.alexeyab_api:
                self._c.cuda_set_device(0)
        if library.alexeyab_api:
            self._net = self._c.load_network_custom(str(cfg).encode(), str(weights).encode(), 0, batch)
        else:
            self._net = self._c.load_network(str(cfg).encode(), str(weights).encode(), 0)
            if self._net:
                self._c.set_batch_network(self._net, 1)
        if not self._net:
            raise LibraryError(f"darknet could not load {cfg.name} with {weights.name}")
        self.width, self.height = self._c.network_width(self._net), self._c.network_height(self._net)
        # Fails loudly now, not with garbage later, if the struct layout is not the bound one.
        try:
            self.predict(np.full((self.height, self.width, 3), 127, dtype=np.uint8), min_score=0.0)
        except Exception:
            self.close()  # BACKEND=auto may fall back to OpenCV: do not keep this net loaded (where it can be freed)
            raise

    def predict(self, image: np.ndarray, min_score: float) -> RawDetections:
        """RGB uint8 HxWx3 -> raw detections, resized/letterboxed by darknet itself."""
        if self.batch > 1:  # the network reads `batch` inputs whatever it is given
            return self._predict_chunk([image], min_score)[0]
        height, width = image.shape[:2]
        planar = _planar(image)
        with self._lock:
            fitted = self._fit(_image_struct(planar))
            try:
                self._forward(fitted.data)
            finally:
                self._c.free_image(fitted)
            count = c_int(0)
            # Letterboxed: darknet undoes the margins from the photo size. Plain resize:
            # boxes relative to the network input are already relative to the photo
            # (pjreddie always undoes a letterbox, so it is given the network size).
            box_w, box_h = (width, height) if self.letter_box else (self.width, self.height)
            args = [self._net, box_w, box_h, min_score, HIER_THRESHOLD, None, 1, byref(count)]
            if self._lib.alexeyab_api:
                args.append(int(self.letter_box))
            detections = self._c.get_network_boxes(*args)
            try:
                return self._read(detections, count.value)
            finally:
                self._c.free_detections(detections, count.value)

    def predict_batch(self, images: list[np.ndarray], min_score: float) -> list[RawDetections]:
        """Equal-sized photos (tiles) through one batched forward pass per `batch` photos."""
        if self.batch == 1:
            return [self.predict(image, min_score) for image in images]
        sizes = {image.shape[:2] for image in images}
        if len(sizes) > 1:
            raise ValueError("predict_batch needs photos of one size")
        results = []
        for start in range(0, len(images), self.batch):
            results += self._predict_chunk(images[start : start + self.batch], min_score)
        return results

    def close(self) -> None:
        """Frees the network where the library can. AlexeyAB's 2019 API has no
        free_network_ptr, only free_network(network) taking the struct by value, whose
        layout differs between builds: its network is not freed but forgotten. A service
        worker loads one network and keeps it until it exits, so that costs nothing
        there; a process that loads many (tests) keeps each one's memory."""
        with self._lock:
            if self._net:
                if self._lib.can_free:
                    free = self._c.free_network_ptr if self._lib.flavour == ALEXEYAB else self._c.free_network
                    free(self._net)
                self._net = None

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _predict_chunk(self, images: list[np.ndarray], min_score: float) -> list[RawDetections]:
        height, width = images[0].shape[:2]
        plane = 3 * self.width * self.height
        stacked = np.zeros(self.batch * plane, dtype=np.float32)  # unused slots stay black
        with self._lock:
            for slot, image in enumerate(images):
                planar = _planar(image)  # must outlive the call: the struct holds a bare pointer
                fitted = self._fit(_image_struct(planar))
                try:
                    stacked[slot * plane : (slot + 1) * plane] = np.ctypeslib.as_array(fitted.data, shape=(plane,))
                finally:
                    self._c.free_image(fitted)
            box_w, box_h = (width, height) if self.letter_box else (self.width, self.height)
            batch_image = Image(self.width, self.height, 3, stacked.ctypes.data_as(POINTER(c_float)))
            pairs = self._c.network_predict_batch(
                self._net,
                batch_image,
                self.batch,
                box_w,
                box_h,
                min_score,
                HIER_THRESHOLD,
                None,
                1,
                int(self.letter_box),
            )
            try:
                return [self._read(pairs[slot].dets, pairs[slot].num) for slot in range(len(images))]
            finally:
                self._c.free_batch_detections(pairs, self.batch)

    def _fit(self, source: Image) -> Image:
        fit = self._c.letterbox_image if self.letter_box else self._c.resize_image
        return fit(source, self.width, self.height)

    def _forward(self, data) -> None:
        if self._lib.alexeyab_api:
            self._c.network_predict_ptr(self._net, data)
        else:
            self._c.network_predict(self._net, data)

    def _read(self, detections, count: int) -> RawDetections:
        boxes = np.empty((count, 4), dtype=np.float32)
        scores = np.empty((count, self.classes), dtype=np.float32)
        if count:
            array = ctypes.cast(detections, POINTER(self._lib.detection_type * count)).contents
            for index, detection in enumerate(array):
                # A wrong struct stride shows here first, before any pointer is followed.
                if detection.classes != self.classes or not 0.0 <= detection.objectness <= 1.0:
                    raise LibraryError(
                        f"{self._lib.path}: detection {index} reads classes={detection.classes}, "
                        f"objectness={detection.objectness}; the library's detection struct is not the "
                        f"{self._lib.flavour} layout this binding was written for"
                    )
                box = detection.bbox
                boxes[index] = (box.x, box.y, box.w, box.h)
                scores[index] = np.ctypeslib.as_array(detection.prob, shape=(self.classes,))
        return RawDetections(boxes, scores)


def _planar(image: np.ndarray) -> np.ndarray:
    """darknet's layout: float32 planes (C, H, W) scaled to 0..1."""
    planar = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    planar *= 1.0 / 255.0
    return planar


def _image_struct(planar: np.ndarray) -> Image:
    """A view for darknet: it does not keep `planar` alive, the caller must."""
    channels, height, width = planar.shape
    return Image(width, height, channels, planar.ctypes.data_as(POINTER(c_float)))
