"""The agreement report that gates PRECISION=int8, and the check at start."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from app.model.files import ModelError
from app.model.pins import PinnedModel

from .agreement import too_few_boxes, wilson_interval
from .cpu_class import cpu_class

if TYPE_CHECKING:
    from app.inference.onnx_export.cache import ExportPaths


class NotCalibrated(ModelError):
    """A precision change (int8, bf16) asked, but no passing calibration on this CPU class."""


class Int8NotCalibrated(NotCalibrated):
    """PRECISION=int8 asked, but no calibrated model with a passing report exists."""


class CalibrationChanged(ModelError):
    """A report or model only calibrate makes is not what it wrote (or not what
    CALIBRATION_SHA256 pins): never a reason to serve something else quietly."""


@dataclass
class PhotoAgreement:
    photo: str
    fp32_counts: dict[str, int]
    int8_counts: dict[str, int]
    fp32_boxes: int
    matched_boxes: int  # fp32 boxes with an int8 box of the same class at IoU >= 0.5

    @property
    def same_counts(self) -> bool:
        return self.fp32_counts == self.int8_counts


@dataclass
class AgreementReport:
    model: dict[str, str]
    calibration_photos: list[str]
    held_out: list[PhotoAgreement]
    fp32_nodes: list[str]  # layers kept in fp32
    pass_mark: float
    settings: dict[str, object] = field(default_factory=dict)
    # The same comparison on the calibration photos: not the gate (int8 was fitted to
    # them), but with few photos a second look at how much int8 moves the boxes.
    calibration_check: list[PhotoAgreement] = field(default_factory=list)
    # Where the agreement holds: int8 kernels differ between CPU classes (cpu_class.py).
    cpu_class: str = ""
    scheme: str = ""  # the quantization scheme chosen (schemes.py), and why
    scheme_reason: str = ""
    schemes: list[dict] = field(default_factory=list)  # every candidate as measured
    fp32_forward_ms: float = 0.0
    # Every engine and precision measured against onnxruntime fp32 on this machine
    # (candidates.py's CandidateResult), the reference itself first: what PRECISION=auto
    # chooses from, and what gates openvino's bf16 and int8.
    candidates: list[dict] = field(default_factory=list)
    # sha256 of the files it was made from and of each model it wrote, as written: cfg,
    # weights, export (the fp32 ONNX), int8, openvino_int8.xml, openvino_int8.bin. Every
    # model is checked against it at load; under MODEL_SHA256 the report itself is pinned.
    files_sha256: dict[str, str] = field(default_factory=dict)
    # Accuracy control (accuracy_control.py), per int8 candidate it ran on: the layers
    # put back in fp32, the agreement on the calibration photos after each, the ranking.
    restored_fp32: dict[str, dict] = field(default_factory=dict)

    @property
    def fp32_boxes(self) -> int:
        return sum(photo.fp32_boxes for photo in self.held_out)

    @property
    def matched_share(self) -> float:
        return matched_share(self.held_out)

    @property
    def matched_boxes(self) -> int:
        return sum(photo.matched_boxes for photo in self.held_out)

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson score interval around matched_share."""
        return wilson_interval(self.matched_boxes, self.fp32_boxes)

    @property
    def refusal(self) -> str | None:
        """Why no verdict can be drawn at all, whatever the share (too few boxes)."""
        return too_few_boxes(self.fp32_boxes)

    def passes(self, pass_mark: float) -> bool:
        return self.refusal is None and self.matched_share >= pass_mark

    def to_json(self) -> str:
        content = asdict(self)
        for key in ("held_out", "calibration_check"):
            for photo, entry in zip(getattr(self, key), content[key], strict=True):
                entry["same_counts"] = photo.same_counts
        content.update(
            fp32_boxes=self.fp32_boxes,
            held_out_photos=len(self.held_out),
            matched_share=round(self.matched_share, 6),
            agreement_interval=[round(bound, 6) for bound in self.interval],
            refused=self.refusal,
            photos_with_same_counts=sum(photo.same_counts for photo in self.held_out),
            passed=self.passes(self.pass_mark),
            calibration_check_matched_share=round(matched_share(self.calibration_check), 6),
        )
        return json.dumps(content, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> AgreementReport:
        content = json.loads(text)
        photos = {
            key: [
                PhotoAgreement(**{name: entry[name] for name in PhotoAgreement.__dataclass_fields__})
                for entry in content.get(key, [])
            ]
            for key in ("held_out", "calibration_check")
        }
        fields = {key: content[key] for key in cls.__dataclass_fields__ if key not in photos and key in content}
        return cls(**photos, **fields)


def matched_share(photos: list[PhotoAgreement]) -> float:
    """Share of fp32 boxes matched; no fp32 box at all proves nothing: 0."""
    boxes = sum(photo.fp32_boxes for photo in photos)
    return sum(photo.matched_boxes for photo in photos) / boxes if boxes else 0.0


HOW_TO_CALIBRATE = "run `python -m app calibrate [PHOTO_DIR]` with MODEL_DIR set to this model"


def read_report(paths: ExportPaths, pinned: PinnedModel | None = None) -> AgreementReport | None:
    """The calibration report of these model files; None when there is none. An
    unreadable one is an error: it was meant to say something. pinned: under
    MODEL_SHA256 a report is read only when CALIBRATION_SHA256 pins it, and then only
    the bytes that match: anyone who can write the cache directory can write a report."""
    path = paths.int8_report
    if not path.is_file():
        if pinned is not None and pinned.pins.calibration:
            raise CalibrationChanged(f"CALIBRATION_SHA256 is set but {path} is missing; {HOW_TO_CALIBRATE}")
        return None
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise NotCalibrated(f"{path} is not a readable agreement report ({exc}); {HOW_TO_CALIBRATE}") from None
    if pinned is not None:
        digest = hashlib.sha256(content).hexdigest()
        if not pinned.pins.calibration:
            raise NotCalibrated(
                f"MODEL_SHA256 is set and the calibration report {path.name} is not pinned: set CALIBRATION_SHA256 "
                "to the sha256 `python -m app calibrate` printed for it"
            )
        if digest != pinned.pins.calibration:
            raise CalibrationChanged(
                f"{path}: sha256 {digest} does not match CALIBRATION_SHA256={pinned.pins.calibration} (changed "
                "after calibrate wrote it, or calibrated again: pin the sha256 calibrate printed)"
            )
    try:
        return AgreementReport.from_json(content.decode())
    except (ValueError, KeyError, TypeError) as exc:
        raise NotCalibrated(f"{path} is not a readable agreement report ({exc}); {HOW_TO_CALIBRATE}") from None


def calibrated_int8_model(
    paths: ExportPaths, min_agreement: float, pinned: PinnedModel | None = None
) -> AgreementReport:
    """The report that lets paths.int8 serve, or Int8NotCalibrated saying what to run."""
    if not paths.int8.is_file() or not paths.int8_report.is_file():
        raise Int8NotCalibrated(f"PRECISION=int8 but this model has no calibrated int8 version ({HOW_TO_CALIBRATE})")
    try:
        report = read_report(paths, pinned)
    except NotCalibrated as exc:
        raise Int8NotCalibrated(str(exc)) from None
    here = cpu_class()
    if report.cpu_class != here:
        measured = f"on a {report.cpu_class} CPU" if report.cpu_class else "on a CPU it does not name"
        raise Int8NotCalibrated(
            f"PRECISION=int8 refused: int8 agreement was measured {measured}, this CPU is {here} "
            f"(int8 kernels differ between them); run `python -m app calibrate [PHOTO_DIR]` on this machine"
        )
    if report.refusal is not None:
        raise Int8NotCalibrated(
            f"PRECISION=int8 refused: its agreement with fp32 {report.refusal} (report: {paths.int8_report})"
        )
    if not report.passes(min_agreement):
        raise Int8NotCalibrated(
            f"PRECISION=int8 refused: int8 matched {report.matched_share:.1%} of {report.fp32_boxes} fp32 boxes "
            f"on the held-out photos, INT8_MIN_AGREEMENT is {min_agreement:.1%} (report: {paths.int8_report}); "
            "calibrate on more of your own photos or serve fp32"
        )
    return report


def calibrated_candidate(
    paths: ExportPaths, engine: str, precision: str, min_agreement: float, pinned: PinnedModel | None = None
) -> AgreementReport:
    """The report whose entry lets a precision change other than onnxruntime's int8
    (openvino's bf16 and int8) serve, or NotCalibrated saying why it may not: the same
    gate, on the same CPU class, against the same onnxruntime fp32 boxes."""
    asked = f"BACKEND={engine} PRECISION={precision}"
    report = read_report(paths, pinned)
    if report is None:
        raise NotCalibrated(f"{asked} but this model has no calibration report ({HOW_TO_CALIBRATE})")
    here = cpu_class()
    if report.cpu_class != here:
        raise NotCalibrated(
            f"{asked} refused: its agreement was measured on a {report.cpu_class or 'unnamed'} CPU, this CPU is "
            f"{here}; run `python -m app calibrate [PHOTO_DIR]` on this machine"
        )
    entry = next((c for c in report.candidates if (c["engine"], c["precision"]) == (engine, precision)), None)
    if entry is None:
        raise NotCalibrated(f"{asked} refused: the calibration did not measure it on this machine ({HOW_TO_CALIBRATE})")
    if too_few_boxes(entry["fp32_boxes"]) is not None:
        raise NotCalibrated(f"{asked} refused: its agreement {too_few_boxes(entry['fp32_boxes'])}")
    if not entry["matched_share"] >= min_agreement:
        raise NotCalibrated(
            f"{asked} refused: it matched {entry['matched_share']:.1%} of {entry['fp32_boxes']} onnxruntime fp32 "
            f"boxes on the held-out photos, INT8_MIN_AGREEMENT is {min_agreement:.1%} (report: {paths.int8_report})"
        )
    return report
