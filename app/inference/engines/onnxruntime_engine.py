"""onnxruntime: the darknet model through the project's own ONNX export (fp32), or its
calibrated int8 quantization; CPU, CUDA or TensorRT execution providers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime

from app.inference.onnx_export import INPUT_NAME
from app.inference.onnx_export.cache import ExportMismatch, check_stamp
from app.model.files import ModelDescription, ModelError
from app.vision.detection import Candidates

from .base import Engine, EngineUnavailable
from .onnx_files import prepare_onnx_model
from .yolo_rows import predict_in_batches

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def load_onnxruntime_engine(
    model: ModelDescription, threads: int, device: str, precision: str, min_agreement: float
) -> OnnxRuntimeEngine:
    if precision == "int8":
        # Its gate measured this CPU's int8 kernels (int8/cpu_class.py), not a GPU's.
        if device == "cuda":
            raise EngineUnavailable("PRECISION=int8 runs on the CPU only, where its agreement was measured")
        device = "cpu"
    source = prepare_onnx_model(model, precision, min_agreement)
    engine = OnnxRuntimeEngine(model, source.path, threads, device, precision, source.content)
    try:  # what was loaded, not what was checked a moment before: the file could be swapped
        check_stamp(source.path, engine.metadata, model)
    except ExportMismatch as exc:
        raise ModelError(str(exc)) from None
    return engine


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(
        self,
        model: ModelDescription,
        path: Path,
        threads: int,
        device: str = "auto",
        precision="fp32",
        content: bytes | None = None,
    ):
        """content: the model's bytes as checked (onnx_files.py), loaded instead of the path."""
        wanted = choose_providers(device, onnxruntime.get_available_providers())
        self.precision = precision
        self.model_path = path
        self._network = model.network
        options = onnxruntime.SessionOptions()
        # Workers share the cores: each session gets its share, no second thread pool.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        # Idle pool threads sleep instead of spinning: between forward passes the cores
        # belong to the request threads decoding and encoding the queued photos.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            model_bytes_or_path = str(path) if content is None else content
            self._session = onnxruntime.InferenceSession(model_bytes_or_path, options, providers=list(wanted))
        except Exception as exc:  # onnxruntime's own error types; a corrupt cached file lands here
            raise EngineUnavailable(f"onnxruntime cannot load {path}: {exc}") from None
        # A GPU provider that cannot start (no driver, no TensorRT) falls back to the
        # CPU inside onnxruntime: say what runs, not what was asked for.
        self.providers = tuple(self._session.get_providers())
        self.device = "cuda" if self.providers[0] in GPU_PROVIDERS else "cpu"
        if device == "cuda" and self.device != "cuda":
            raise EngineUnavailable(f"DEVICE=cuda but onnxruntime could start only {', '.join(self.providers)}")

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._session.get_modelmeta().custom_metadata_map)

    def predict(self, image: np.ndarray, min_score: float) -> Candidates:
        return self.predict_many([image], min_score)[0]

    def predict_many(self, images: list[np.ndarray], min_score: float) -> list[Candidates]:
        return predict_in_batches(images, self._network, min_score, self._run)

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, {INPUT_NAME: batch})


def choose_providers(device: str, available: list[str]) -> tuple[str, ...]:
    """Best first: a GPU's providers where DEVICE allows and this onnxruntime has them
    (onnxruntime-gpu), else the CPU's."""
    gpu = tuple(provider for provider in GPU_PROVIDERS if provider in available)
    if device == "cuda" and not gpu:
        raise EngineUnavailable(f"DEVICE=cuda but this onnxruntime has only {', '.join(available)}")
    if device == "cpu" or not gpu:
        return ("CPUExecutionProvider",)
    return (*gpu, "CPUExecutionProvider")
