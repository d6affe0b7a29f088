"""The table of inference engines: one row each, the one place that names them.

Light on purpose (nothing but the standard library): settings reads the names from
here, and an engine's module, with its library (libdarknet.so, cv2, onnxruntime), is
imported only when that engine is chosen, so a machine without one still serves with
the others.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineEntry:
    name: str
    # "module:function" in app.inference.engines, called with
    # (model, threads, device, precision, min_agreement) and returning an Engine.
    load: str
    precisions: tuple[str, ...] = ("fp32",)
    # BACKEND=auto tries it only on the device where it is the fastest; None: on the
    # device DEVICE asks for (the engine itself then picks, with DEVICE=auto).
    auto_device: str | None = None
    # "module:function" run once per machine before the workers fork (gunicorn's
    # master), with (model, precision, min_agreement); it must not start the library.
    prepare: str | None = None


# In BACKEND=auto's order for a fixed PRECISION. darknet wins only on a GPU; onnxruntime on
# our ONNX export is the reference on a CPU and takes a GPU's providers when it has them;
# OpenCV's DNN is the fallback for models the exporter does not cover. PRECISION=auto
# reorders them by what calibrate measured on this machine (int8/candidates.py).
ENGINES = {
    entry.name: entry
    for entry in (
        EngineEntry("darknet", "darknet_engine:load_darknet_engine", auto_device="cuda"),
        EngineEntry(
            "onnxruntime",
            "onnxruntime_engine:load_onnxruntime_engine",
            precisions=("fp32", "int8"),
            prepare="onnx_files:prepare_onnx_model",
        ),
        # OpenVINO on the same export, CPU only: after onnxruntime in a fixed precision (the
        # reference); PRECISION=auto takes it first where calibrate measured it faster.
        EngineEntry(
            "openvino",
            "openvino_engine:load_openvino_engine",
            precisions=("fp32", "bf16", "int8"),
            auto_device="cpu",
            prepare="onnx_files:prepare_openvino_model",
        ),
        EngineEntry("opencv", "opencv_engine:load_opencv_engine", auto_device="cpu"),
    )
}


def engines_serving(precision: str) -> tuple[str, ...]:
    return tuple(name for name, entry in ENGINES.items() if precision in entry.precisions)


def auto_candidates(device: str, precision: str) -> list[tuple[EngineEntry, str]]:
    """BACKEND=auto: the engines to try in order, each with the device to ask it for."""
    candidates = []
    for entry in ENGINES.values():
        if precision not in entry.precisions:
            continue
        if entry.auto_device is None:
            candidates.append((entry, device))
        elif device in ("auto", entry.auto_device):
            candidates.append((entry, entry.auto_device))
    return candidates
