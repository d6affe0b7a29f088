"""The int8 quantization schemes calibration tries, and how one is chosen.

Which scheme keeps the counts depends on the CPU (cpu_class.py): u8 activations x s8
weights is the fastest everywhere, but without VNNI its kernels saturate 16-bit sums
and lose boxes; 7-bit weights (reduce_range) or u8 weights avoid the overflow at some
cost in speed or precision. Rather than guess from the CPU, calibration measures each
candidate on this machine and keeps the fastest that passes the gate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Timings within this share of each other are a tie on a shared machine: the tie goes
# to the scheme listed first (full-range s8 weights, the most precise).
SPEED_TIE = 0.05


@dataclass(frozen=True)
class QuantScheme:
    name: str
    weights_unsigned: bool  # u8 weights instead of s8
    reduce_range: bool  # 7-bit weights: no 16-bit saturation in u8 x s8 kernels
    description: str


SCHEMES = (
    QuantScheme("u8s8", False, False, "uint8 activations, int8 weights"),
    QuantScheme("u8s8-reduced", False, True, "uint8 activations, int8 weights in 7 bits (reduce_range)"),
    QuantScheme("u8u8", True, False, "uint8 activations, uint8 weights"),
)
SCHEME_NAMES = tuple(scheme.name for scheme in SCHEMES)


@dataclass
class SchemeResult:
    """One candidate as measured on this machine."""

    scheme: str
    matched_share: float  # held-out fp32 boxes matched: the gate's number
    calibration_matched_share: float
    photos_with_same_counts: int
    forward_ms: float  # median forward pass on the held-out photos
    passed: bool


def choose(results: Iterable[SchemeResult]) -> tuple[SchemeResult, str]:
    """The fastest candidate that passes (ties to the earlier listed); when none
    passes, the one that agrees best, so the report says how far off int8 is."""
    order = {name: index for index, name in enumerate(SCHEME_NAMES)}
    results = sorted(results, key=lambda result: order.get(result.scheme, len(order)))
    passing = [result for result in results if result.passed]
    if not passing:
        best = max(results, key=lambda result: result.matched_share)
        return best, f"no scheme passed; {best.scheme} agreed best"
    fastest = min(result.forward_ms for result in passing)
    chosen = next(result for result in passing if result.forward_ms <= fastest * (1 + SPEED_TIE))
    others = [result.scheme for result in passing if result is not chosen]
    why = f"fastest of the schemes that passed ({', '.join([chosen.scheme, *others])})"
    failed = [result.scheme for result in results if not result.passed]
    if failed:
        why += f"; {', '.join(failed)} lost boxes on this CPU"
    return chosen, why


def quantize(source: Path, target: Path, reader, scheme: QuantScheme, method: str, keep_fp32: list[str]) -> None:
    """Static QDQ quantization of the prepared fp32 model with per-channel weights."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(source),
        str(target),
        reader,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QUInt8 if scheme.weights_unsigned else QuantType.QInt8,
        per_channel=True,
        reduce_range=scheme.reduce_range,
        nodes_to_exclude=keep_fp32,
        calibrate_method={
            "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy,
        }[method],
    )
