"""The instruction-set class of this CPU, as onnxruntime's int8 kernels tell CPUs apart.

int8 convolutions run on different kernels per class, and they do not compute the same
numbers: without VNNI, the u8 x s8 kernels sum pairs of products in 16 bits with
saturation (VPMADDUBSW), so a quantization that keeps every box on a VNNI or AMX CPU
can lose boxes on an AVX2 one. An agreement measured on one class says nothing about
another; the classes are told apart by CPU feature flags, never by vendor.
"""

from __future__ import annotations

import platform
from pathlib import Path

# Best first: the first class whose flags this CPU has is its class.
X86_CLASSES = (
    ("amx", {"amx_int8", "amx_tile"}),
    ("avx512_vnni", {"avx512_vnni", "avx512bw"}),
    ("avx_vnni", {"avx_vnni", "avx2"}),
    ("avx512", {"avx512bw"}),
    ("avx2", {"avx2", "fma"}),
)


def cpu_class(cpuinfo: str | None = None) -> str:
    """'amx', 'avx512_vnni', 'avx_vnni', 'avx512', 'avx2', 'x86_64' (older), or the
    machine name elsewhere ('aarch64')."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return machine or "unknown"
    flags = _flags(cpuinfo if cpuinfo is not None else _read_cpuinfo())
    for name, needed in X86_CLASSES:
        if needed <= flags:
            return name
    return "x86_64"


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """bf16 arithmetic in hardware: AMX's bf16 tiles or AVX512_BF16's dot products.
    Told by the flags, as the classes are: a Zen 4 has AVX512_BF16 without AMX."""
    flags = _flags(cpuinfo if cpuinfo is not None else _read_cpuinfo())
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags to read, the class is the machine's alone
        return ""


def _flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()
