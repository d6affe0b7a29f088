"""The ctypes binding against real libdarknet.so builds.

Debian's `darknet` package (pjreddie API) is installed by ./test.sh where it can be
and is required in CI. An AlexeyAB build, of the pinned commit or of 2019 (the original
service's copy), is tested when LIBDARKNET_PATH points at one (neither can be built in
CI: their source is not in the package registries).
"""

import ctypes
import dataclasses
import os
import resource
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from support import photo_rgb, require_tool

from app.inference.detector import Detector
from app.inference.engines import create_engine
from app.inference.engines.darknet_engine import DarknetEngine
from app.model.files import load_model_description
from app.vision.postprocess import classwise_nms, count_by_class
from darknet import LibraryError, Network, find_library, load_library
from darknet.library import ALEXEYAB, ALEXEYAB_2019, PJREDDIE, flavour_of
from darknet.structs import AlexeyABDetection, PjreddieDetection

DEBIAN_LIB = Path("/usr/lib/darknet/libdarknet.so")
# Two photos in the fast tier, the other three in the e2e tier (CI runs it once): a
# pass of Debian's CPU build takes a quarter of a second on an AVX2 CPU, and kite.jpg
# is tiled (13 passes of each engine).
AGREEMENT_PHOTOS = (
    "dog.jpg",
    "horses.jpg",
    *(pytest.param(p, marks=pytest.mark.e2e) for p in ("person.jpg", "eagle.jpg", "kite.jpg")),
)
# What LIBDARKNET_PATH must point at for a flavour's cases to run.
ENV_BUILDS = {
    ALEXEYAB: "an AlexeyAB libdarknet.so (it cannot be built in CI)",
    ALEXEYAB_2019: "an AlexeyAB libdarknet.so of 2019, such as the original service's (it cannot be built in CI)",
}


def _debian_library():
    require_tool(DEBIAN_LIB.is_file(), f"Debian's darknet is not installed (no {DEBIAN_LIB})", "darknet")
    return load_library(DEBIAN_LIB)


def _env_library(flavour: str):
    path = os.environ.get("LIBDARKNET_PATH", "")
    if not path or not Path(path).exists():
        pytest.skip(f"LIBDARKNET_PATH does not point at {ENV_BUILDS[flavour]}")
    library = load_library(find_library())
    if library.flavour != flavour:
        pytest.skip(f"LIBDARKNET_PATH={path} is the {library.flavour} flavour, not {flavour}")
    return library


@pytest.fixture(scope="module", params=["debian", ALEXEYAB, ALEXEYAB_2019])
def library(request):
    return _debian_library() if request.param == "debian" else _env_library(request.param)


@pytest.fixture(scope="module")
def small_cfg(model_dir, tmp_path_factory):
    """yolov3-tiny at 160x160: the same code paths as 416, a tenth of the time."""
    cfg = tmp_path_factory.mktemp("small") / "yolov3-tiny-160.cfg"
    cfg.write_text(
        (model_dir / "yolov3-tiny.cfg")
        .read_text()
        .replace("width=416", "width=160")
        .replace("height=416", "height=160")
    )
    return cfg


@pytest.fixture(scope="module")
def small_network(library, model_dir, small_cfg):
    with Network(library, small_cfg, model_dir / "yolov3-tiny.weights", classes=80) as network:
        yield network


def test_debian_library_is_the_pjreddie_flavour():
    library = _debian_library()
    assert library.flavour == PJREDDIE and not library.has_gpu and not library.has_batch and library.can_free


def test_flavours_are_told_apart_by_their_exports():
    pinned = {"load_network_custom", "network_predict_ptr", "free_network_ptr", "network_predict_batch"}
    of_2019 = {"load_network_custom", "network_predict_ptr", "load_network", "get_network_boxes", "free_network"}
    pjreddie = {"load_network", "get_network_boxes", "network_predict", "free_network"}
    assert flavour_of(pinned.__contains__) == ALEXEYAB
    assert flavour_of(of_2019.__contains__) == ALEXEYAB_2019
    assert flavour_of(pjreddie.__contains__) == PJREDDIE
    assert flavour_of({"sin", "cos"}.__contains__) is None


def test_the_2019_api_is_bound_with_its_own_struct_and_limits(model_dir, small_cfg):
    library = _env_library(ALEXEYAB_2019)
    six_fields = ["bbox", "classes", "prob", "mask", "objectness", "sort_class"]
    assert [name for name, _ in library.detection_type._fields_] == six_fields
    assert library.alexeyab_api and not library.has_batch and not library.can_free
    assert not hasattr(library.cdll, "free_network_ptr") and not hasattr(library.cdll, "network_predict_batch")
    with pytest.raises(LibraryError, match="has no network_predict_batch"):
        Network(library, small_cfg, model_dir / "yolov3-tiny.weights", classes=80, batch=2)
    network = Network(library, small_cfg, model_dir / "yolov3-tiny.weights", classes=80)
    network.close()  # forgotten, not freed: the 2019 API frees only by value
    network.close()


def test_a_detection_struct_that_is_not_the_librarys_is_refused_at_load(library, model_dir, small_cfg):
    """The load-time check is what proves a flavour's struct: read with another stride,
    the library's detection array fails it before any pointer in it is followed."""
    wrong = PjreddieDetection if library.detection_type is AlexeyABDetection else AlexeyABDetection
    misbound = dataclasses.replace(library, detection_type=wrong)
    with pytest.raises(LibraryError, match=rf"detection struct is not the {library.flavour} layout"):
        Network(misbound, small_cfg, model_dir / "yolov3-tiny.weights", classes=80)


@pytest.fixture(scope="module")
def darknet_and_opencv(library, model_dir):
    """Both engines on the demo model, loaded once for all the photos (a load reads the
    35 MB of weights)."""
    model = load_model_description(model_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIBDARKNET_PATH", str(library.path))
        darknet = Detector(create_engine("darknet", model, threads=2), model)
    return model, darknet, Detector(create_engine("opencv", model, threads=2), model)


@pytest.mark.parametrize("photo", AGREEMENT_PHOTOS)
def test_darknet_and_opencv_engines_agree(darknet_and_opencv, photo):
    model, darknet, opencv = darknet_and_opencv
    image = photo_rgb(photo)
    ours, theirs = darknet.detect(image), opencv.detect(image)
    assert count_by_class(ours, model.class_names) == count_by_class(theirs, model.class_names)
    for detection in ours:
        same_class = [d for d in theirs if d.class_name == detection.class_name]
        assert max(_iou(detection.box, d.box) for d in same_class) >= 0.8, detection


@pytest.mark.e2e  # a soak: minutes of darknet's CPU build, with the tests that run for long
def test_repeated_inference_does_not_leak(small_network):
    image = photo_rgb("dog.jpg")
    for _ in range(20):  # warm-up: allocators and caches settle
        small_network.predict(image, 0.25)
    before = _rss_mb()
    for _ in range(300):
        small_network.predict(image, 0.25)
    assert _rss_mb() - before < 20


def test_threads_share_one_network_safely(small_network):
    photos = {name: photo_rgb(name) for name in ("dog.jpg", "person.jpg", "eagle.jpg")}
    serial = {name: small_network.predict(image, 0.1) for name, image in photos.items()}
    names = list(photos) * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda name: (name, small_network.predict(photos[name], 0.1)), names))
    for name, raw in results:
        np.testing.assert_array_equal(raw.boxes, serial[name].boxes)
        np.testing.assert_array_equal(raw.scores, serial[name].scores)


def test_our_nms_is_darknets_do_nms_sort(library):
    """darknet's own NMS, fed boxes that keep only their best class, keeps exactly
    the boxes our class-wise NMS keeps: one object is one count, as darknet finds it."""
    rng = np.random.default_rng(7)
    count, classes = 60, 3
    centres = rng.uniform(0.2, 0.8, size=(count, 2))
    sizes = rng.uniform(0.05, 0.2, size=(count, 2))
    class_ids = rng.integers(0, classes, size=count)
    scores = rng.uniform(0.3, 1.0, size=count).astype(np.float32)
    probs = np.zeros((count, classes), dtype=np.float32)
    probs[np.arange(count), class_ids] = scores

    array = (library.detection_type * count)()
    for i, detection in enumerate(array):
        detection.bbox.x, detection.bbox.y = centres[i]
        detection.bbox.w, detection.bbox.h = sizes[i]
        detection.classes, detection.objectness = classes, 1.0
        detection.prob = probs[i].ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    library.cdll.do_nms_sort(array, count, classes, ctypes.c_float(0.45))
    # do_nms_sort reorders the array and zeroes the suppressed scores.
    theirs = {(round(d.bbox.x, 5), round(d.bbox.y, 5)) for d in array if max(d.prob[k] for k in range(classes)) > 0}

    boxes = np.hstack([centres - sizes / 2, sizes])
    kept = classwise_nms(boxes, scores, class_ids, 0.45)
    ours = {(round(float(centres[i, 0]), 5), round(float(centres[i, 1]), 5)) for i in kept}
    assert ours == theirs and 0 < len(ours) < count


def test_darknet_engine_serves_the_api(model_dir, monkeypatch):
    library = _debian_library()
    monkeypatch.setenv("LIBDARKNET_PATH", str(library.path))
    from app.http.factory import create_app
    from app.settings import Settings

    app = create_app(Settings(model_dir=model_dir, backend="darknet", engine_threads=2))
    assert isinstance(app.extensions["detector"].engine, DarknetEngine)
    response = app.test_client().post(
        "/invocations", data=(model_dir.parent / "data" / "dog.jpg").read_bytes(), content_type="image/jpeg"
    )
    stat = response.get_json()["stat"]
    assert stat["dog"] == 1 and stat["bicycle"] == 1
    # Which build serves: Debian's library has no darknet-build.txt beside it.
    assert app.test_client().get("/model").get_json()["engine_build"] == f"{library.path} (pjreddie)"


def test_a_build_says_what_it_is_beside_the_library(tmp_path):
    """darknet/build_darknet.sh writes darknet-build.txt next to libdarknet.so."""
    copy = tmp_path / "libdarknet.so"
    copy.write_bytes(_debian_library().path.read_bytes())
    (tmp_path / "darknet-build.txt").write_text("pjreddie/darknet 61c9d02e (Debian source package); GPU=0\n")
    library = load_library(copy)
    assert library.build == "pjreddie/darknet 61c9d02e (Debian source package); GPU=0"
    assert library.gpu_missing() == f"{copy} is a CPU-only build"


def test_a_missing_or_foreign_library_is_one_clear_error(tmp_path):
    with pytest.raises(LibraryError, match=r"LIBDARKNET_PATH=.*nothing\.so: no libdarknet\.so there"):
        find_library({"LIBDARKNET_PATH": str(tmp_path / "nothing.so")})
    libm = Path("/lib/x86_64-linux-gnu/libm.so.6")
    if libm.exists():
        with pytest.raises(LibraryError, match="not a known darknet"):
            load_library(libm)
    (tmp_path / "libdarknet.so").write_bytes(b"not an ELF file")
    with pytest.raises(LibraryError, match="cannot load"):
        load_library(find_library({"LIBDARKNET_PATH": str(tmp_path)}))


def test_cpu_only_library_refuses_cuda(model_dir, monkeypatch):
    library = _debian_library()
    monkeypatch.setenv("LIBDARKNET_PATH", str(library.path))
    model = load_model_description(model_dir)
    with pytest.raises(Exception, match="CPU-only build"):
        create_engine("darknet", model, threads=1, device="cuda")
    # BACKEND=auto with a CPU-only darknet takes a faster CPU engine.
    assert create_engine("auto", model, threads=1).name == "onnxruntime"


def test_alexeyab_batch_matches_single_predictions(model_dir, tmp_path):
    library = _env_library(ALEXEYAB)
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text((model_dir / "yolov3-tiny.cfg").read_text())
    tiles = [np.ascontiguousarray(photo_rgb("dog.jpg")[y : y + 288, x : x + 384]) for y in (0, 288) for x in (0, 384)]
    with Network(library, cfg, model_dir / "yolov3-tiny.weights", classes=80, batch=3) as batched:
        together = batched.predict_batch(tiles, 0.25)
    with Network(library, cfg, model_dir / "yolov3-tiny.weights", classes=80) as single:
        alone = [single.predict(tile, 0.25) for tile in tiles]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
