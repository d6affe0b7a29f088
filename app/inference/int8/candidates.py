"""PRECISION=auto: of every engine and precision `python -m app calibrate` measured on
this machine against onnxruntime fp32, the fastest whose boxes pass the gate.

A lower precision is a change of numbers like int8's: bf16 on an AMX or AVX512_BF16
CPU, NNCF's int8 through OpenVINO, onnxruntime's int8 schemes. Each is measured the
same way (held-out photos, boxes matched at IoU >= 0.5), and kept only on the CPU class
it was measured on. Pure functions of the report: tested without an engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .agreement import too_few_boxes
from .schemes import SPEED_TIE

REFERENCE = ("onnxruntime", "fp32")  # the service as it always was, what the others match
# Ties (within SPEED_TIE) go to the more precise.
PRECISION_RANK = {"fp32": 0, "bf16": 1, "int8": 2}


@dataclass
class CandidateResult:
    """One engine and precision as measured on this machine."""

    engine: str
    precision: str
    detail: str  # onnxruntime int8: its quantization scheme
    matched_share: float  # held-out onnxruntime fp32 boxes matched: the gate's number
    fp32_boxes: int
    calibration_matched_share: float
    photos_with_same_counts: int
    photos: int
    forward_ms: float  # median whole-photo pass, timed in turns with the others
    passed: bool
    fp32_layers: list[str] = field(default_factory=list)  # put back in fp32 by accuracy control

    @property
    def label(self) -> str:
        return f"{self.engine} {self.precision}"


@dataclass(frozen=True)
class ServingChoice:
    backend: str  # an engine's name, or "auto" for BACKEND=auto's own order
    precision: str
    reason: str


def passes(entry: dict, min_agreement: float) -> bool:
    """A choice nobody asked for by name keeps the counts on every photo measured: the
    held-out ones (the gate) and the calibration ones too. int8 was fitted to the latter,
    and one that still loses boxes there is no safe default (onnxruntime's u8s8-reduced
    matched 88% of them on data/ while passing on the held-out two). And the verdict must
    rest on enough held-out boxes that one box cannot tip it (agreement.MIN_GATE_BOXES)."""
    if (entry["engine"], entry["precision"]) == REFERENCE:
        return True
    return (
        too_few_boxes(entry["fp32_boxes"]) is None
        and entry["matched_share"] >= min_agreement
        and entry["calibration_matched_share"] >= min_agreement
    )


def serving_plan(
    candidates: list[dict] | None,
    measured_on: str,
    here: str,
    backend: str,
    min_agreement: float,
    bf16_here: bool,
) -> list[ServingChoice]:
    """What to try in order, each with the one line that says why; the last is always
    fp32 on BACKEND's own choice, the service as it was.

    candidates: the report's (None: no report); measured_on: the CPU class it was made
    on; here: this CPU's class; bf16_here: this CPU computes bf16 (cpu_has_bf16)."""
    calibrate = "`python -m app calibrate` measures the faster ones on this machine"
    if candidates is None:
        return [ServingChoice(backend, "fp32", f"fp32: no calibration report for this model ({calibrate})")]
    if measured_on != here:
        return [
            ServingChoice(
                backend,
                "fp32",
                f"fp32: the calibration was measured on a {measured_on or 'unnamed'} CPU, this one is {here} "
                f"({calibrate})",
            )
        ]
    if not candidates:
        return [
            ServingChoice(
                backend,
                "fp32",
                f"fp32: the calibration report predates PRECISION=auto (it measured int8 only; {calibrate})",
            )
        ]
    entries = [entry for entry in candidates if backend in ("auto", entry["engine"])]
    reference = next((entry for entry in candidates if (entry["engine"], entry["precision"]) == REFERENCE), None)
    base_ms = reference["forward_ms"] if reference else 0.0
    usable, refused = [], []
    for entry in entries:
        if entry["precision"] == "bf16" and not bf16_here:
            refused.append(f"{_label(entry)}: no bf16 instructions on this CPU")
        elif passes(entry, min_agreement):
            usable.append(entry)
        elif (entry["engine"], entry["precision"]) != REFERENCE and too_few_boxes(entry["fp32_boxes"]):
            refused.append(f"{_label(entry)}: its agreement {too_few_boxes(entry['fp32_boxes'])}")
        else:
            refused.append(
                f"{_label(entry)} matched {entry['matched_share']:.1%} held out, "
                f"{entry['calibration_matched_share']:.1%} calibration"
            )
    plan = []
    if usable:
        fastest = min(entry["forward_ms"] for entry in usable)
        ties = [entry for entry in usable if entry["forward_ms"] <= fastest * (1 + SPEED_TIE)]
        chosen = min(ties, key=lambda entry: PRECISION_RANK.get(entry["precision"], len(PRECISION_RANK)))
        ordered = [chosen, *sorted((e for e in usable if e is not chosen), key=lambda e: e["forward_ms"])]
        for number, entry in enumerate(ordered):
            why = _why(entry, base_ms, here, min_agreement, refused if number == 0 else [])
            plan.append(ServingChoice(entry["engine"], entry["precision"], why))
    gate = f"agreement with onnxruntime fp32 below {min_agreement:.0%}" if refused else "nothing faster measured"
    plan.append(
        ServingChoice(
            backend,
            "fp32",
            f"fp32: no faster engine kept the counts on this {here} CPU ({'; '.join(refused) or gate})",
        )
    )
    return plan


def _why(entry: dict, base_ms: float, here: str, min_agreement: float, refused: list[str]) -> str:
    speed = f"{entry['forward_ms'] / base_ms:.2f}x onnxruntime fp32's time" if base_ms else "fastest"
    if (entry["engine"], entry["precision"]) == REFERENCE:
        kept = "the reference"
    else:
        kept = (
            f"{entry['matched_share']:.1%} of its boxes matched held out, "
            f"{entry['calibration_matched_share']:.1%} on the calibration photos, gate {min_agreement:.0%}"
        )
    line = f"{_label(entry)}: the fastest that kept the counts on this {here} CPU ({speed}; {kept})"
    return line + (f"; refused: {', '.join(refused)}" if refused else "")


def _label(entry: dict) -> str:
    detail = f" ({entry['detail']})" if entry.get("detail") else ""
    return f"{entry['engine']} {entry['precision']}{detail}"
