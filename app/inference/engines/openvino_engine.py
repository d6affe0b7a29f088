"""OpenVINO on the project's own ONNX export: f32, bf16 where the CPU has the
instructions for it (AMX or AVX512_BF16), and int8 from NNCF's post-training
quantization. Precision changes (bf16, int8) serve only behind the agreement gate of
`python -m app calibrate` (int8/report.py), as onnxruntime's int8 does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino

from app.inference.int8.cpu_class import cpu_has_bf16
from app.inference.onnx_export.cache import STAMP_KEYS, ExportMismatch, check_stamp, directory_lock
from app.model.files import ModelDescription, ModelError
from app.vision.detection import Candidates

from .base import Engine, EngineUnavailable
from .onnx_files import prepare_openvino_model
from .yolo_rows import predict_in_batches

# OpenVINO's own names. Its default on a CPU with bf16 instructions is bf16: f32 must be
# asked for, or "fp32" would quietly be a precision change.
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def load_openvino_engine(
    model: ModelDescription, threads: int, device: str, precision: str, min_agreement: float
) -> OpenVinoEngine:
    if device == "cuda":
        raise EngineUnavailable("the openvino engine runs on the CPU here (DEVICE=cuda asked)")
    files = prepare_openvino_model(model, precision, min_agreement)
    source = files.model

    def compiled(cache: Path | None = None) -> OpenVinoEngine:
        return OpenVinoEngine(
            model, source.path, threads, precision, cache, content=source.content, weights=source.weights
        )

    if files.compiled_cache is None:  # under MODEL_SHA256: a blob that nothing checks is not loaded
        return compiled()
    try:
        files.compiled_cache.mkdir(exist_ok=True)
    except OSError:  # no cache then: each worker compiles, as without one
        return compiled()
    # Workers start together: the first compiles and writes the blob, the others wait and read it.
    with directory_lock(files.compiled_cache):
        return compiled(files.compiled_cache)


class OpenVinoEngine(Engine):
    name = "openvino"
    device = "cpu"

    def __init__(
        self,
        model: ModelDescription,
        path: Path,
        threads: int,
        precision: str = "fp32",
        compiled_cache: Path | None = None,
        core: openvino.Core | None = None,
        content: bytes | None = None,
        weights: bytes | None = None,
    ):
        """content (and weights, an IR's .bin): the model's bytes as checked
        (onnx_files.py), compiled instead of the path."""
        core = core or openvino.Core()
        if precision == "bf16":
            check_bf16(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"), cpu_has_bf16())
        self.precision = precision
        self.model_path = path
        self._network = model.network
        config = {
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision],
            # Workers share the cores: each compiled model gets its share, one stream.
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            # Each worker is a process of its own: pinned, every one would take the same
            # first cores. Unpinned, as onnxruntime's threads, the kernel spreads them.
            "ENABLE_CPU_PINNING": False,
        }
        if compiled_cache is not None:
            # OpenVINO's own cache: the compiled blob, keyed inside by the model's content,
            # this config and the OpenVINO version; the directory's name carries the export's key.
            config["CACHE_DIR"] = str(compiled_cache)
        try:
            if content is not None:  # checked byte for byte: an ONNX export, or an IR with its .bin
                bin_tensor = None if weights is None else openvino.Tensor(np.frombuffer(weights, np.uint8))
                network = core.read_model(content) if bin_tensor is None else core.read_model(content, bin_tensor)
                if path.suffix == ".xml":
                    _check_ir_stamp(path, network, model)
                self._compiled = core.compile_model(network, "CPU", config)
            elif path.suffix == ".xml":  # NNCF's int8: its stamp is checked on what is loaded
                network = core.read_model(str(path))
                _check_ir_stamp(path, network, model)
                self._compiled = core.compile_model(network, "CPU", config)
            else:  # the export, stamp checked by prepare; with a cached blob it is not even parsed
                self._compiled = core.compile_model(str(path), "CPU", config)
        except RuntimeError as exc:  # OpenVINO's errors; a corrupt cached file lands here
            raise EngineUnavailable(f"openvino cannot load {path}: {str(exc).strip().splitlines()[0]}") from None
        self._request = self._compiled.create_infer_request()

    @classmethod
    def over_compiled(cls, compiled: openvino.CompiledModel, model: ModelDescription, precision: str) -> OpenVinoEngine:
        """An engine over a model compiled elsewhere: the one NNCF's accuracy control
        hands its validation function (app/inference/int8/openvino_calibration.py)."""
        engine = cls.__new__(cls)
        engine.precision, engine.model_path, engine._network = precision, None, model.network
        engine._compiled, engine._request = compiled, compiled.create_infer_request()
        return engine

    def predict(self, image: np.ndarray, min_score: float) -> Candidates:
        return self.predict_many([image], min_score)[0]

    def predict_many(self, images: list[np.ndarray], min_score: float) -> list[Candidates]:
        return predict_in_batches(images, self._network, min_score, self._infer)

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        self._request.infer({0: batch})
        return [self._request.get_output_tensor(index).data for index in range(len(self._compiled.outputs))]


def check_bf16(capabilities: list[str], cpu_has_instructions: bool) -> None:
    """bf16 only where the CPU computes it (AMX, AVX512_BF16): elsewhere OpenVINO would
    emulate it or quietly run f32, and the gate would have measured something else."""
    if not cpu_has_instructions or "BF16" not in capabilities:
        raise EngineUnavailable(
            "PRECISION=bf16 needs a CPU with AMX or AVX512_BF16 "
            f"(this one's OpenVINO offers {', '.join(capabilities) or 'nothing'})"
        )


def _check_ir_stamp(path: Path, network: openvino.Model, model: ModelDescription) -> None:
    found = {key: network.get_rt_info(key).astype(str) for key in STAMP_KEYS if network.has_rt_info(key)}
    try:
        check_stamp(path, found, model)
    except ExportMismatch as exc:
        raise ModelError(f"{exc}; run `python -m app calibrate` again") from None


def stamp_ir(network: openvino.Model, stamp: dict[str, str]) -> openvino.Model:
    """What calibrate writes into NNCF's model: the sha256 of the files it came from."""
    for key, value in stamp.items():
        network.set_rt_info(value, key)
    return network
