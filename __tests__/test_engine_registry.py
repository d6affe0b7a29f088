"""The registry of engines: BACKEND=auto's choice and the device each engine is asked
for, onnxruntime's execution providers, and settings that follow the table."""

from pathlib import Path

import pytest

from app.inference.engines import (
    DeviceUnavailable,
    EngineUnavailable,
    create_engine,
    darknet_engine,
    onnx_files,
    openvino_engine,
    prepare_engine,
)
from app.inference.engines import onnxruntime_engine as ort
from app.inference.engines.registry import ENGINES, auto_candidates
from app.settings import BACKENDS, ConfigError, Settings

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def unavailable(*args):
    raise EngineUnavailable("not on this machine")


def test_auto_asks_onnxruntime_for_the_device_asked_so_it_can_take_the_gpu(demo_model, monkeypatch):
    asked = []

    def record(model, threads, device, precision, min_agreement):
        asked.append(device)
        raise EngineUnavailable("recorded")

    monkeypatch.setattr(darknet_engine, "load_darknet_engine", unavailable)
    monkeypatch.setattr(ort, "load_onnxruntime_engine", record)
    monkeypatch.setattr(openvino_engine, "load_openvino_engine", unavailable)
    assert create_engine("auto", demo_model, threads=1).name == "opencv"
    assert asked == ["auto"]


def test_precision_auto_tries_a_missing_gpu_once_and_says_why_once(demo_model, monkeypatch, caplog):
    # The GPU image on a machine without its GPU: darknet refuses the GPU; PRECISION=auto
    # asks the GPU first and the CPU plan's last step would ask it again.
    calls = []

    def no_driver(model, threads, device, precision, min_agreement):
        calls.append(device)
        raise DeviceUnavailable("a CUDA build but no NVIDIA driver on this machine")

    monkeypatch.setattr(darknet_engine, "load_darknet_engine", no_driver)
    engine = create_engine("auto", demo_model, threads=1, device="auto", precision="auto")
    assert engine.name in ("onnxruntime", "openvino") and engine.device == "cpu"
    assert calls == ["cuda"]
    said = [r.getMessage() for r in caplog.records if "cannot use a GPU" in r.getMessage()]
    assert len(said) == 1 and "no NVIDIA driver" in said[0]
    assert engine.selection  # the loop's one writer: why this engine


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("auto", [("darknet", "cuda"), ("onnxruntime", "auto"), ("openvino", "cpu"), ("opencv", "cpu")]),
        ("cpu", [("onnxruntime", "cpu"), ("openvino", "cpu"), ("opencv", "cpu")]),
        ("cuda", [("darknet", "cuda"), ("onnxruntime", "cuda")]),
    ],
)
def test_auto_tries_darknet_only_on_cuda_and_opencv_only_on_the_cpu(device, expected):
    assert [(entry.name, asked) for entry, asked in auto_candidates(device, "fp32")] == expected


def test_auto_with_int8_tries_only_the_engines_that_serve_it():
    assert [entry.name for entry, _ in auto_candidates("auto", "int8")] == ["onnxruntime", "openvino"]
    assert [entry.name for entry, _ in auto_candidates("auto", "bf16")] == ["openvino"]


@pytest.mark.parametrize(
    ("device", "available", "expected"),
    [
        ("auto", [CUDA, CPU], (CUDA, CPU)),
        ("auto", [TRT, CUDA, CPU], (TRT, CUDA, CPU)),
        ("auto", [CPU], (CPU,)),
        ("cpu", [TRT, CUDA, CPU], (CPU,)),
        ("cuda", [CUDA, CPU], (CUDA, CPU)),
    ],
)
def test_onnxruntime_takes_a_gpu_provider_when_the_device_allows(device, available, expected):
    assert ort.choose_providers(device, available) == expected


def test_onnxruntime_refuses_cuda_without_a_gpu_provider():
    with pytest.raises(EngineUnavailable, match="DEVICE=cuda but this onnxruntime has only CPUExecutionProvider"):
        ort.choose_providers("cuda", [CPU])


def test_int8_stays_on_the_cpu_where_its_gate_was_measured(demo_model):
    with pytest.raises(EngineUnavailable, match="PRECISION=int8 runs on the CPU only"):
        create_engine("onnxruntime", demo_model, threads=1, device="cuda", precision="int8")


@pytest.mark.skipif(
    bool(set(ort.GPU_PROVIDERS) & set(ort.onnxruntime.get_available_providers())), reason="onnxruntime-gpu: a GPU here"
)
def test_auto_on_a_gpu_less_machine_is_onnxruntime_on_the_cpu(demo_model):
    engine = create_engine("auto", demo_model, threads=1)
    assert (engine.name, engine.device, engine.providers) == ("onnxruntime", "cpu", (CPU,))


@pytest.mark.skipif(
    bool(set(ort.GPU_PROVIDERS) & set(ort.onnxruntime.get_available_providers())), reason="onnxruntime-gpu: a GPU here"
)
def test_auto_under_device_cuda_without_a_gpu_names_each_engines_reason(demo_model):
    """The one refusal line says what each engine lacked, not only that none started."""
    with pytest.raises(EngineUnavailable) as refused:
        create_engine("auto", demo_model, threads=1, device="cuda", precision="auto")
    assert "no engine of BACKEND=auto could start on a GPU" in str(refused.value)
    assert "onnxruntime: DEVICE=cuda but this onnxruntime has only" in str(refused.value)
    assert "darknet: " in str(refused.value)


def test_an_engine_is_refused_a_precision_the_table_does_not_list(demo_model):
    with pytest.raises(EngineUnavailable, match="the opencv engine has no int8 precision"):
        create_engine("opencv", demo_model, threads=1, precision="int8")
    with pytest.raises(EngineUnavailable, match="unknown backend 'tensorflow'"):
        create_engine("tensorflow", demo_model, threads=1)


def test_prepare_runs_only_the_preparation_the_table_lists(demo_model, monkeypatch):
    prepared = []
    monkeypatch.setattr(onnx_files, "prepare_onnx_model", lambda *args: prepared.append(args))
    prepare_engine("opencv", demo_model, "fp32", 0.98)
    assert prepared == []
    prepare_engine("auto", demo_model, "int8", 0.5)
    prepare_engine("onnxruntime", demo_model, "fp32", 0.98)
    assert prepared == [(demo_model, "int8", 0.5), (demo_model, "fp32", 0.98)]


def test_settings_offer_the_registrys_engines_and_auto():
    assert BACKENDS[0] == "auto" and BACKENDS[1:] == tuple(ENGINES)


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_settings_refuse_int8_with_an_engine_the_table_lists_no_int8_for(name):
    if "int8" in ENGINES[name].precisions:
        assert Settings(model_dir=Path("/m"), backend=name, precision="int8").backend == name
        return
    with pytest.raises(ConfigError, match=f"PRECISION=int8 needs BACKEND=onnxruntime or openvino or auto, not {name}"):
        Settings(model_dir=Path("/m"), backend=name, precision="int8")
