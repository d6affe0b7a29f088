"""The ONNX export computes the same function as OpenCV DNN's darknet importer, on the
real yolov3-tiny and on each YOLO architecture with random weights."""

import numpy as np
import onnx
import onnxruntime
import pytest
from support import DATA, photo_rgb

from app.inference.engines.opencv_engine import OpenCVEngine
from app.inference.onnx_export import INPUT_NAME, UnsupportedLayer, WeightsError, export_darknet
from app.inference.onnx_export.weights import WeightsHeader, read_weights, write_weights
from app.model.darknet_cfg import parse_cfg
from app.model.files import load_model_description
from app.vision.preprocess import fit_to_network
from synthetic.architectures import ARCHITECTURES, write_random_model, yolov3_tiny

SAMPLE_PHOTOS = sorted(path.name for path in DATA.glob("*.jpg"))
# On the real model: two photos in the fast tier, the rest in the e2e tier (CI runs it once).
FAST_PHOTOS = ("dog.jpg", "horses.jpg")


def both_implementations(model, exported: onnx.ModelProto):
    session = onnxruntime.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    return session, OpenCVEngine(model, threads=2)


def raw_outputs(model, exported: onnx.ModelProto, image: np.ndarray, implementations=None):
    """The rows of every [yolo] layer from both implementations, in OpenCV's order."""
    blob, _ = fit_to_network(image, model.network)
    session, opencv = implementations or both_implementations(model, exported)
    ours = [output[0] for output in session.run(None, {INPUT_NAME: blob})]
    opencv._net.setInput(blob)
    return ours, list(opencv._net.forward(opencv._outputs))


def assert_same_rows(ours, theirs):
    assert [o.shape for o in ours] == [t.shape for t in theirs]
    for mine, reference in zip(ours, theirs, strict=True):
        # 1e-3 relative; values near zero (far below any threshold) within 1e-5.
        np.testing.assert_allclose(mine, reference, rtol=1e-3, atol=1e-5)


@pytest.fixture(scope="module")
def demo(model_dir):
    model = load_model_description(model_dir)
    return model, export_darknet(model.cfg_sections, model.files.weights)


@pytest.fixture(scope="module")
def demo_implementations(demo):
    """The export's session and OpenCV's net, loaded once for every photo."""
    return both_implementations(*demo)


@pytest.mark.parametrize(
    "photo", [p if p in FAST_PHOTOS else pytest.param(p, marks=pytest.mark.e2e) for p in SAMPLE_PHOTOS]
)
def test_real_yolov3_tiny_matches_opencv(demo, demo_implementations, photo):
    model, exported = demo
    assert_same_rows(*raw_outputs(model, exported, photo_rgb(photo), demo_implementations))


def test_nodes_are_named_after_their_cfg_layers(demo):
    _, exported = demo
    names = {node.name for node in exported.graph.node}
    assert {"conv_0", "maxpool_1", "conv_15", "route_17", "upsample_19", "route_20", "conv_22"} <= names
    assert [output.name for output in exported.graph.output] == ["yolo_16", "yolo_23"]


def test_flops_are_darknets_count(demo):
    # darknet prints 5.571 BFLOPs for yolov3-tiny at 416 (2 x multiply-adds of the convolutions).
    _, exported = demo
    flops = int({prop.key: prop.value for prop in exported.metadata_props}["flops"])
    assert flops == pytest.approx(5.571e9, rel=0.002)


ARCHITECTURE_CASES = {
    **{name: (build, {}) for name, build in ARCHITECTURES.items()},
    "yolov3-tiny-relu": (yolov3_tiny, {"activation": "relu"}),
    "yolov4-csp-swish": (ARCHITECTURES["yolov4-csp"], {"activation": "swish"}),
}


@pytest.mark.parametrize("name", ARCHITECTURE_CASES)
def test_each_architecture_with_random_weights_matches_opencv(name, tmp_path):
    build, options = ARCHITECTURE_CASES[name]
    # A small input and a quarter of the filters keep every layer and the test fast;
    # 3 classes, 8 values per row.
    cfg = build(size=256, classes=3, width=0.25, **options)
    model = load_model_description(write_random_model(tmp_path, cfg))
    exported = export_darknet(model.cfg_sections, model.files.weights)
    ours, theirs = raw_outputs(model, exported, photo_rgb("dog.jpg"))
    assert_same_rows(ours, theirs)
    assert max(np.abs(rows[:, 5:]).max() for rows in theirs) > 0.01  # not a network of zeros


@pytest.mark.parametrize(
    "header", [WeightsHeader(0, 1, 0, 123), WeightsHeader(0, 2, 5, 2**40), WeightsHeader(1, 0, 0, 7)]
)
def test_every_weights_header_version_reads_the_same_floats(header, tmp_path):
    values = np.arange(10, dtype=np.float32)
    write_weights(tmp_path / "w.weights", values, header)
    read_header, read_values = read_weights(tmp_path / "w.weights")
    assert read_header == header
    np.testing.assert_array_equal(read_values, values)


def test_weights_that_do_not_fit_the_cfg_name_the_layer(model_dir, tmp_path):
    model = load_model_description(model_dir)
    _, values = read_weights(model.files.weights)
    write_weights(tmp_path / "short.weights", values[: len(values) // 2])
    with pytest.raises(WeightsError, match=r"short.weights ends at layer conv_\d+"):
        export_darknet(model.cfg_sections, tmp_path / "short.weights")


def test_weights_longer_than_the_cfg_reads_are_refused_by_the_exporter_too(model_dir, tmp_path):
    model = load_model_description(model_dir)
    header, values = read_weights(model.files.weights)
    write_weights(tmp_path / "long.weights", np.concatenate([values, np.ones(7, np.float32)]), header)
    with pytest.raises(WeightsError) as error:
        export_darknet(model.cfg_sections, tmp_path / "long.weights")
    assert str(error.value) == (
        f"long.weights holds {len(values) + 7} floats, the cfg needs {len(values)}: "
        "the weights were trained for another cfg (classes, filters or layers differ)"
    )


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("activation=leaky", "activation=elu", r"layer 0 \[convolutional\] \(cfg line \d+\): activation=elu"),
        ("layers = -1, 8", "layers = -1, 30", r"line 157: \[route\] layers=-1,30 refers to layer 30, not one of"),
        ("stride=2", "stride=0", r"line 35: \[maxpool\] stride=0 must be at least 1"),
        ("[upsample]", "[reorg]", r"layer 19 \[reorg\] .*does not support \[reorg\]"),
        ("[maxpool]", "[maxpool]\nmaxpool_depth=1", r"layer 1 \[maxpool\] .*maxpool_depth=1"),
        # Weights darknet reads otherwise than in file order: refused, so BACKEND=auto takes OpenCV.
        ("[convolutional]", "[convolutional]\ndontloadscales=1", r"layer 0 \[convolutional\] .*dontloadscales=1"),
        ("[convolutional]", "[convolutional]\nshare_index=0", r"layer 0 \[convolutional\] .*share_index"),
    ],
)
def test_an_unsupported_layer_is_a_clear_error_naming_it(model_dir, old, new, message):
    model = load_model_description(model_dir)
    text = (model_dir / "yolov3-tiny.cfg").read_text().replace(old, new, 1)
    with pytest.raises(UnsupportedLayer, match=message):
        export_darknet(parse_cfg(text), model.files.weights)
