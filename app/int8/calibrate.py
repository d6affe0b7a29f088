"""`python -m app calibrate [PHOTO_DIR]`: quantize the ONNX export to int8 on the user's
own photos and measure, on photos held out of the calibration, how far its detections
agree with fp32's. The int8 model and the report go next to the fp32 export; the
service serves int8 only when the report passes (app/int8/report.py).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..detection import DetectOptions
from ..detector import Detector
from ..engines.onnxruntime_engine import OnnxRuntimeEngine
from ..images import ImageTooLarge, InvalidImage, decode_image, photos_in
from ..model_files import ModelDescription
from ..onnx_export import INPUT_NAME
from ..onnx_export.cache import ExportPaths, ensure_export, export_paths, write_atomically
from ..postprocess import count_by_class
from ..preprocess import fit_to_network
from ..tiling import should_tile, tile_grid
from .agreement import matched_boxes
from .report import AgreementReport, PhotoAgreement

MAX_TILES_PER_PHOTO = 8  # calibration sees tiles as the service does, a sample of them
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


class CalibrationError(ValueError):
    """The photos or options do not allow a calibration."""


@dataclass(frozen=True)
class CalibrationOptions:
    holdout: float = 0.3  # share of the photos kept out of calibration, to measure on
    pass_mark: float = 0.98
    method: str = "minmax"
    keep_fp32: tuple[str, ...] = ()  # more layers to leave in fp32, by node name (conv_12)
    threads: int = 1
    max_pixels: int = 100_000_000


def calibrate(
    model: ModelDescription, photo_dir: Path, options: CalibrationOptions
) -> tuple[AgreementReport, ExportPaths]:
    photos = _read_photos(photo_dir, options.max_pixels)
    calibration, held_out = split_photos(sorted(photos), options.holdout)
    paths = export_paths(model)
    fp32_path = ensure_export(model)
    fp32_model = onnx.load(str(fp32_path))
    keep = sorted(set(output_layers(fp32_model)) | set(options.keep_fp32))
    unknown = set(options.keep_fp32) - {node.name for node in fp32_model.graph.node}
    if unknown:
        raise CalibrationError(f"--keep-fp32: no layer named {', '.join(sorted(unknown))} in the export")
    with tempfile.TemporaryDirectory(dir=paths.int8.parent, prefix=".calibrate-") as workdir:
        int8_path = Path(workdir) / "int8.onnx"
        _quantize(fp32_path, int8_path, [photos[name] for name in calibration], model, keep, options)
        fp32 = Detector(OnnxRuntimeEngine(model, fp32_path, options.threads, "cpu"), model)
        int8 = Detector(OnnxRuntimeEngine(model, int8_path, options.threads, "cpu", "int8"), model)
        report = AgreementReport(
            model={"cfg": model.files.cfg.name, "weights": model.files.weights.name, "export": fp32_path.name},
            calibration_photos=calibration,
            held_out=[_compare(name, photos[name], fp32, int8) for name in held_out],
            calibration_check=[_compare(name, photos[name], fp32, int8) for name in calibration],
            fp32_nodes=keep,
            pass_mark=options.pass_mark,
            settings={
                "method": options.method,
                "holdout": options.holdout,
                "created": time.strftime("%FT%TZ", time.gmtime()),
            },
        )
        write_atomically(paths.int8, int8_path.read_bytes())
    write_atomically(paths.int8_report, report.to_json().encode())
    return report, paths


def split_photos(names: list[str], holdout: float) -> tuple[list[str], list[str]]:
    """Held-out photos chosen by a hash of their name: stable when photos are added."""
    if len(names) < 2:
        raise CalibrationError(
            f"{len(names)} photo(s): calibration needs at least 2 (some to calibrate, some to check)"
        )
    count = min(len(names) - 1, max(1, round(len(names) * holdout)))
    by_hash = sorted(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    held_out = sorted(by_hash[:count])
    return [name for name in names if name not in held_out], held_out


def output_layers(model: onnx.ModelProto) -> list[str]:
    """The convolutions that feed the [yolo] layers, and the decoding itself: the
    box coordinates and scores come straight out of them, so they stay in fp32."""
    producers = {output: node for node in model.graph.node for output in node.output}
    keep = []
    for node in model.graph.node:
        if node.name.startswith("yolo_"):
            keep.append(node.name)
            source = producers.get(node.input[0])
            if source is not None and not source.name.startswith("yolo_"):
                layer = source.name.split("/")[0]
                keep += [other.name for other in model.graph.node if other.name.split("/")[0] == layer]
    return keep


def _quantize(
    source: Path, target: Path, photos: list[np.ndarray], model: ModelDescription, keep: list[str], options
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._blobs = _calibration_inputs(photos, model)

        def get_next(self):
            blob = next(self._blobs, None)
            return None if blob is None else {INPUT_NAME: blob}

    # onnxruntime's recommended preparation (shape inference, folding); the symbolic pass
    # is skipped, the batch dimension is the only symbolic one and needs no inference.
    prepared = target.with_name("prepared.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=keep,
        calibrate_method={
            "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy,
        }[options.method],
    )


def _calibration_inputs(photos: list[np.ndarray], model: ModelDescription) -> Iterator[np.ndarray]:
    """What the network sees in service: each whole photo and, on big photos, tiles."""
    network = (model.network.width, model.network.height)
    for image in photos:
        yield fit_to_network(image, model.network)[0]
        size = (image.shape[1], image.shape[0])
        if should_tile("auto", size, network):
            tiles = tile_grid(size, network)
            for tile in tiles[:: max(1, len(tiles) // MAX_TILES_PER_PHOTO)][:MAX_TILES_PER_PHOTO]:
                crop = image[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width]
                yield fit_to_network(crop, model.network)[0]


def _compare(name: str, image: np.ndarray, fp32: Detector, int8: Detector) -> PhotoAgreement:
    reference, candidate = fp32.detect(image, DetectOptions()), int8.detect(image, DetectOptions())
    return PhotoAgreement(
        photo=name,
        fp32_counts=count_by_class(reference, fp32.class_names),
        int8_counts=count_by_class(candidate, int8.class_names),
        fp32_boxes=len(reference),
        matched_boxes=matched_boxes(reference, candidate),
    )


def _read_photos(directory: Path, max_pixels: int) -> dict[str, np.ndarray]:
    if not directory.is_dir():
        raise CalibrationError(f"{directory} is not a directory of photos")
    photos = {}
    for path in photos_in([directory]):
        try:
            photos[str(path.relative_to(directory))] = decode_image(path.read_bytes(), max_pixels)
        except (OSError, InvalidImage, ImageTooLarge) as exc:
            raise CalibrationError(f"{path}: {exc}") from None
    return photos
