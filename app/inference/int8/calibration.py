"""`python -m app calibrate [PHOTO_DIR]`: quantize the ONNX export to int8 on the user's
own photos and measure, on photos held out of the calibration, how far its detections
agree with fp32's. The int8 model and the report go next to the fp32 export; the
service serves int8 only when the report passes (app/inference/int8/report.py).

Beside onnxruntime's int8 schemes it measures OpenVINO's f32, bf16 and NNCF int8
(openvino_calibration.py) the same way, and times every candidate in turns with
onnxruntime fp32: the report's candidates are what PRECISION=auto chooses from.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization.shape_inference import quant_pre_process

from app.inference.detector import Detector
from app.inference.engines.onnxruntime_engine import OnnxRuntimeEngine
from app.inference.int8.accuracy_control import (
    CONTROL_ERRORS,
    RANKING_INPUTS,
    CalibrationAgreement,
    RestoredLayers,
    control_onnxruntime,
)
from app.inference.int8.agreement import matched_boxes, too_few_boxes, wilson_interval
from app.inference.int8.candidates import REFERENCE, CandidateResult
from app.inference.int8.cpu_class import cpu_class
from app.inference.int8.openvino_calibration import alternating_ms, install_int8_model, openvino_candidates
from app.inference.int8.report import AgreementReport, PhotoAgreement, matched_share
from app.inference.int8.schemes import SCHEMES, SPEED_TIE, QuantScheme, SchemeResult, choose, quantize
from app.inference.onnx_export import INPUT_NAME
from app.inference.onnx_export.cache import (
    ExportPaths,
    ensure_export,
    export_paths,
    export_stamp,
    pinned_export,
    stamp,
    write_atomically,
)
from app.model.files import ModelDescription, file_digest
from app.vision.detection import Detection, DetectOptions
from app.vision.images import ImageTooLarge, InvalidImage, decode_image, photos_in
from app.vision.postprocess import count_by_class
from app.vision.preprocess import fit_to_network
from app.vision.tiling import DEFAULT_OVERLAP, should_tile, tile_grid

MAX_TILES_PER_PHOTO = 8  # calibration sees tiles as the service does, a sample of them
MAX_TIMED_PHOTOS = 4  # forward passes are timed on the first held-out photos
TIMING_ROUNDS = 5


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
    tile_overlap: float = DEFAULT_OVERLAP  # the service's TILE_OVERLAP: tiles as it cuts them
    schemes: tuple[QuantScheme, ...] = field(default=SCHEMES)  # the candidates to measure
    accuracy_control: bool = True  # layers that move the counts go back to fp32 (accuracy_control.py)
    photo_source: str = ""  # where the photos came from, for the report: a folder, or the made-up set


def calibrate(
    model: ModelDescription, photo_dir: Path, options: CalibrationOptions
) -> tuple[AgreementReport, ExportPaths, str]:
    """Quantize with each candidate scheme, measure each against fp32 on this machine,
    keep the one schemes.choose picks; the report records the CPU class it holds on, and
    the sha256 of the files it measured and wrote. Also returns the report's own sha256
    (CALIBRATION_SHA256), of the bytes written: a copy read back could be another's."""
    photos = _read_photos(photo_dir, options.max_pixels)
    calibration, held_out = split_photos(sorted(photos), options.holdout)
    paths = export_paths(model)
    # The export as checked (under MODEL_SHA256, the pinned files' own), copied where only
    # this run writes: every candidate is made from, and compared with, these bytes.
    exported = pinned_export(model) if model.pinned is not None else ensure_export(model).read_bytes()
    fp32_model = onnx.load_from_string(exported)
    keep = sorted(set(output_layers(fp32_model)) | set(options.keep_fp32))
    unknown = set(options.keep_fp32) - {node.name for node in fp32_model.graph.node}
    if unknown:
        raise CalibrationError(f"--keep-fp32: no layer named {', '.join(sorted(unknown))} in the export")
    with tempfile.TemporaryDirectory(dir=paths.int8.parent, prefix=".calibrate-") as workdir:
        fp32_path = Path(workdir) / paths.fp32.name
        fp32_path.write_bytes(exported)
        fp32 = _detector(model, fp32_path, options)
        reference = {name: fp32.detect(image, DetectOptions()) for name, image in photos.items()}
        timed = [photos[name] for name in held_out[:MAX_TIMED_PHOTOS]]
        prepared = Path(workdir) / "prepared.onnx"
        # onnxruntime's recommended preparation (shape inference, folding); the symbolic
        # pass is skipped: the batch dimension is the only symbolic one.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        inputs = [photos[name] for name in calibration]
        detectors, int8_paths = {}, {}
        for scheme in options.schemes:
            int8_paths[scheme.name] = Path(workdir) / f"{scheme.name}.onnx"
            quantize(prepared, int8_paths[scheme.name], _Reader(inputs, model, options), scheme, options.method, keep)
            detectors[scheme.name] = _detector(model, int8_paths[scheme.name], options, "int8")
        agreement = CalibrationAgreement(photos, reference, calibration, options.pass_mark)
        restored, notes = {}, []
        if options.accuracy_control:
            try:
                controlled = _control_onnxruntime(
                    model, options, fp32, detectors, int8_paths, prepared, agreement, timed, keep, Path(workdir)
                )
            except CONTROL_ERRORS as exc:
                # A graph the surgery does not know (or onnxruntime refuses): int8 as quantized.
                controlled, notes = None, [f"onnxruntime int8 accuracy control: not run: {exc}"]
            if controlled is not None:
                name, restored["onnxruntime int8"] = controlled
                detectors[name] = _detector(model, int8_paths[name], options, "int8")
        openvino = openvino_candidates(
            model,
            fp32_path,
            _calibration_inputs(inputs, model, options.tile_overlap),
            keep,
            options.threads,
            Path(workdir),
            lambda engine: Detector(engine, model, tile_overlap=options.tile_overlap),
            agreement if options.accuracy_control else None,
        )
        detectors |= openvino.detectors
        if openvino.restored is not None:
            restored["openvino int8"] = openvino.restored
        compared = {
            name: (
                [_compare(photo, photos[photo], reference[photo], detector) for photo in held_out],
                [_compare(photo, photos[photo], reference[photo], detector) for photo in calibration],
            )
            for name, detector in detectors.items()
        }
        # Every candidate and the reference timed in turns: the choice rests on their ratios.
        timings = alternating_ms({REFERENCE_NAME: fp32, **detectors}, timed, TIMING_ROUNDS)
        results = {name: _result(name, *compared[name], timings[name], options.pass_mark) for name in detectors}
        schemes = [name for name in int8_paths]
        chosen, why = choose(results[name] for name in schemes)
        held, check = compared[chosen.scheme]
        candidates = [
            _reference_entry(reference, held_out, calibration, timings[REFERENCE_NAME]),
            _candidate("onnxruntime", "int8", chosen.scheme, results[chosen.scheme], held, restored),
            *(_candidate(*name.split(), "", results[name], compared[name][0], restored) for name in openvino.detectors),
        ]
        int8 = stamp(onnx.load(str(int8_paths[chosen.scheme])), model).SerializeToString()
        made_from = export_stamp(model)
        report = AgreementReport(
            model={"cfg": model.files.cfg.name, "weights": model.files.weights.name, "export": paths.fp32.name},
            calibration_photos=calibration,
            held_out=held,
            calibration_check=check,
            # With accuracy control's model chosen, its layers back in fp32 too.
            fp32_nodes=keep + (restored["onnxruntime int8"].layers if chosen.scheme.endswith(CONTROLLED) else []),
            pass_mark=options.pass_mark,
            cpu_class=cpu_class(),
            scheme=chosen.scheme,
            scheme_reason=why,
            schemes=[asdict(results[name]) for name in schemes],
            restored_fp32={label: asdict(layers) for label, layers in restored.items()},
            fp32_forward_ms=round(timings[REFERENCE_NAME], 3),
            candidates=[_with_interval(asdict(candidate)) for candidate in candidates],
            settings={
                "method": options.method,
                "holdout": options.holdout,
                "tile_overlap": options.tile_overlap,
                "photos": options.photo_source or str(photo_dir),
                "created": time.strftime("%FT%TZ", time.gmtime()),
                "not_measured": notes + openvino.notes,
            },
            files_sha256={
                "cfg": made_from["source_cfg_sha256"],
                "weights": made_from["source_weights_sha256"],
                "export": _sha256(exported),
                "int8": _sha256(int8),
            },
        )
        write_atomically(paths.int8, int8)
        if openvino.int8_model is not None:
            for suffix in (".xml", ".bin"):  # hashed here, in this run's own directory, then moved
                report.files_sha256[f"openvino_int8{suffix}"] = file_digest(openvino.int8_model.with_suffix(suffix))
            install_int8_model(openvino.int8_model, paths)
    written = report.to_json().encode()
    write_atomically(paths.int8_report, written)
    return report, paths, _sha256(written)


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


REFERENCE_NAME = "onnxruntime fp32"


def _result(name: str, held: list, check: list, ms: float, pass_mark: float) -> SchemeResult:
    return SchemeResult(
        scheme=name,
        matched_share=round(matched_share(held), 6),
        calibration_matched_share=round(matched_share(check), 6),
        photos_with_same_counts=sum(photo.same_counts for photo in held),
        forward_ms=round(ms, 3),
        passed=too_few_boxes(sum(photo.fp32_boxes for photo in held)) is None and matched_share(held) >= pass_mark,
    )


def _candidate(
    engine: str, precision: str, detail: str, result: SchemeResult, held: list, restored: dict
) -> CandidateResult:
    layers = restored[f"{engine} {precision}"].layers if f"{engine} {precision}" in restored else []
    if engine == "onnxruntime" and not detail.endswith(CONTROLLED):
        layers = []  # a plain scheme was chosen: accuracy control's model is not this one
    if layers:
        detail = ", ".join(filter(None, [detail.removesuffix(CONTROLLED), f"{len(layers)} layers in fp32"]))
    return CandidateResult(
        engine=engine,
        precision=precision,
        detail=detail,
        fp32_layers=layers,
        matched_share=result.matched_share,
        fp32_boxes=sum(photo.fp32_boxes for photo in held),
        calibration_matched_share=result.calibration_matched_share,
        photos_with_same_counts=result.photos_with_same_counts,
        photos=len(held),
        forward_ms=result.forward_ms,
        passed=result.passed,
    )


CONTROLLED = "+control"  # the scheme name of onnxruntime int8 after accuracy control


def _control_onnxruntime(
    model: ModelDescription,
    options: CalibrationOptions,
    fp32: Detector,
    detectors: dict[str, Detector],
    int8_paths: dict[str, Path],
    prepared: Path,
    agreement: CalibrationAgreement,
    timed: list[np.ndarray],
    keep: list[str],
    workdir: Path,
) -> tuple[str, RestoredLayers] | None:
    """When no scheme keeps the counts on the calibration photos, accuracy control on the
    one worth it: of the schemes faster than fp32 here (a short timing in turns), the one
    that agrees best. None when a scheme passes already or none is faster."""
    shares = {name: agreement.share(detector) for name, detector in detectors.items()}
    if max(shares.values()) >= options.pass_mark:
        return None
    quick = alternating_ms({REFERENCE_NAME: fp32, **detectors}, timed, 1)
    faster = [name for name in detectors if quick[name] < quick[REFERENCE_NAME] * (1 - SPEED_TIE)]
    if not faster:
        return None
    scheme = max(faster, key=lambda name: (shares[name], -quick[name]))
    name = scheme + CONTROLLED
    photos = agreement.photos()
    # The ranking's inputs: one per photo of a spread, the whole photo or one of its tiles
    # in turn (every tile of every photo of a big network would be gigabytes).
    sample = []
    for number, photo in enumerate(photos[:: max(1, len(photos) // RANKING_INPUTS)][:RANKING_INPUTS]):
        inputs = list(_calibration_inputs([photo], model, options.tile_overlap))
        sample.append(inputs[number % len(inputs)])
    restored = control_onnxruntime(
        int8_paths[scheme],
        prepared,
        sample,
        keep,
        lambda path: agreement.share_or_bound(_detector(model, path, options, "int8")),
        lambda path: _faster(_detector(model, path, options, "int8"), fp32, timed),
        shares[scheme],
        options.pass_mark,
        workdir / f"{name}.onnx",
        options.threads,
    )
    int8_paths[name] = workdir / f"{name}.onnx"  # a candidate only once control finished
    return name, restored


def _faster(candidate: Detector, fp32: Detector, timed: list[np.ndarray]) -> bool:
    """Faster than fp32 at all, in a short timing in turns (three rounds on one photo): a
    step is stopped only once nothing faster can come of it."""
    quick = alternating_ms({REFERENCE_NAME: fp32, "candidate": candidate}, timed[:1], 3)
    return quick["candidate"] < quick[REFERENCE_NAME]


def _reference_entry(reference: dict, held_out: list[str], calibration: list[str], ms: float) -> CandidateResult:
    boxes = sum(len(reference[name]) for name in held_out)
    return CandidateResult(
        *REFERENCE, "", 1.0, boxes, 1.0 if calibration else 0.0, len(held_out), len(held_out), round(ms, 3), True
    )


def _with_interval(entry: dict) -> dict:
    """The 95% Wilson interval around the entry's share of the held-out fp32 boxes."""
    matched = round(entry["matched_share"] * entry["fp32_boxes"])
    return entry | {"agreement_interval": [round(bound, 6) for bound in wilson_interval(matched, entry["fp32_boxes"])]}


def _detector(model: ModelDescription, path: Path, options: CalibrationOptions, precision: str = "fp32") -> Detector:
    engine = OnnxRuntimeEngine(model, path, options.threads, "cpu", precision)
    return Detector(engine, model, tile_overlap=options.tile_overlap)


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


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: network inputs one by one."""

    def __init__(self, photos: list[np.ndarray], model: ModelDescription, options: CalibrationOptions):
        self._blobs = _calibration_inputs(photos, model, options.tile_overlap)

    def get_next(self):
        blob = next(self._blobs, None)
        return None if blob is None else {INPUT_NAME: blob}


def _calibration_inputs(photos: list[np.ndarray], model: ModelDescription, overlap: float) -> Iterator[np.ndarray]:
    """What the network sees in service: each whole photo and, on big photos, tiles."""
    network = (model.network.width, model.network.height)
    for image in photos:
        yield fit_to_network(image, model.network)[0]
        size = (image.shape[1], image.shape[0])
        if should_tile("auto", size, network):
            tiles = tile_grid(size, network, overlap)
            for tile in tiles[:: max(1, len(tiles) // MAX_TILES_PER_PHOTO)][:MAX_TILES_PER_PHOTO]:
                crop = image[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width]
                yield fit_to_network(crop, model.network)[0]


def _compare(name: str, image: np.ndarray, reference: list[Detection], int8: Detector) -> PhotoAgreement:
    candidate = int8.detect(image, DetectOptions())
    return PhotoAgreement(
        photo=name,
        fp32_counts=count_by_class(reference, int8.class_names),
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
