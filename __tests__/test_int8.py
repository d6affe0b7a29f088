"""int8 behind an accuracy gate: `python -m app calibrate`, its agreement report, and
the service that serves int8 only when the report passes."""

import json
import shutil
import subprocess
import sys

import pytest
import requests
from support import ROOT, RunningService, copy_model, photo_bytes, refusal, starts_processes

from app.inference.int8.agreement import MIN_GATE_BOXES, matched_boxes, too_few_boxes, wilson_interval
from app.inference.int8.calibration import CalibrationError, CalibrationOptions, _detector, split_photos
from app.inference.int8.candidates import serving_plan
from app.inference.int8.cpu_class import cpu_class, cpu_has_bf16
from app.inference.int8.report import AgreementReport, PhotoAgreement
from app.inference.int8.schemes import SCHEME_NAMES, SchemeResult, choose
from app.inference.onnx_export.cache import ensure_export, export_paths
from app.model.files import file_digest, load_model_description
from app.settings import ConfigError, Settings
from app.vision.detection import Detection, DetectOptions
from synthetic.calibration_photos import calibration_photos


def box(class_id, x, y, confidence=0.9):
    return Detection(class_id, f"c{class_id}", confidence, (x, y, 10.0, 10.0))


def result(scheme, share, ms, pass_mark=0.98):
    return SchemeResult(scheme, share, share, 1, ms, share >= pass_mark)


def test_the_fastest_passing_scheme_is_chosen_and_a_tie_goes_to_full_range_weights():
    # An AVX2 CPU without VNNI: u8s8 saturates and loses boxes (as measured on a Zen 3).
    chosen, why = choose([result("u8s8", 0.667, 45.0), result("u8s8-reduced", 1.0, 45.5), result("u8u8", 1.0, 60.0)])
    assert chosen.scheme == "u8s8-reduced"
    assert "u8s8 lost boxes on this CPU" in why
    # Within 5% is a tie on a shared machine: the first listed (most precise) wins.
    chosen, _ = choose([result("u8u8", 1.0, 20.0), result("u8s8-reduced", 1.0, 20.5), result("u8s8", 1.0, 20.9)])
    assert chosen.scheme == "u8s8"
    chosen, _ = choose([result("u8s8", 1.0, 30.0), result("u8u8", 1.0, 20.0)])
    assert chosen.scheme == "u8u8"
    # None passes: the report keeps the one that agreed best, and says so.
    chosen, why = choose([result("u8s8", 0.5, 10.0), result("u8u8", 0.9, 30.0)])
    assert (chosen.scheme, chosen.passed) == ("u8u8", False) and why == "no scheme passed; u8u8 agreed best"


ZEN3 = "flags\t\t: fpu sse2 ssse3 fma sse4_2 avx avx2 bmi2 sha_ni"
ZEN4 = ZEN3 + " avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni"
XEON = ZEN4 + " amx_bf16 amx_tile amx_int8"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (ZEN3, "avx2"),
        (ZEN3.replace(" avx512", "") + " avx512f avx512bw", "avx512"),
        (ZEN4, "avx512_vnni"),
        (XEON, "amx"),
        (ZEN3 + " avx_vnni", "avx_vnni"),
        ("flags\t\t: fpu sse2", "x86_64"),
    ],
)
def test_cpus_are_classed_by_their_int8_instructions_not_their_vendor(cpuinfo, expected, monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert cpu_class(f"vendor_id\t: AnyVendor\n{cpuinfo}\n") == expected


def test_boxes_match_by_class_and_iou_each_at_most_once():
    reference = [box(0, 0, 0), box(0, 100, 100), box(1, 50, 50)]
    assert matched_boxes(reference, reference) == 3
    assert matched_boxes(reference, [box(0, 1, 1)]) == 1  # IoU 0.68: one match, used once
    assert matched_boxes(reference, [box(0, 5, 5)]) == 0  # IoU 0.14
    assert matched_boxes(reference, [box(2, 50, 50)]) == 0  # right place, wrong class
    assert matched_boxes([], [box(0, 0, 0)]) == 0


def test_held_out_photos_are_stable_as_photos_are_added():
    names = [f"photo{i}.jpg" for i in range(10)]
    calibration, held_out = split_photos(names, 0.3)
    assert len(held_out) == 3 and not set(calibration) & set(held_out)
    assert split_photos(names[::-1], 0.3)[1] == held_out
    # One more photo, still 3 held out: at most the new photo takes one's place.
    _, later = split_photos([*names, "photo10.jpg"], 0.3)
    assert len(later) == 3 and len(set(later) - set(held_out) - {"photo10.jpg"}) == 0
    with pytest.raises(CalibrationError, match="at least 2"):
        split_photos(["one.jpg"], 0.3)


@pytest.mark.parametrize(
    ("matched", "total", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),  # the textbook example (statsmodels' proportion_confint, method="wilson")
        (0, 10, 0.0, 0.2775),  # z^2 / (n + z^2)
        (100, 100, 0.9630, 1.0),  # all matched: a 98% floor on this bound would need 189 boxes
        (24, 25, 0.8046, 0.9929),
    ],
)
def test_the_agreement_interval_is_wilsons_score_interval_at_95_percent(matched, total, low, high):
    assert wilson_interval(matched, total) == pytest.approx((low, high), abs=5e-5)


def test_an_interval_of_no_box_says_nothing():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def held_out(boxes, lost=0, photos=4):
    """Made-up held-out photos with `boxes` fp32 boxes in all, `lost` of them unmatched."""
    sizes = [boxes // photos + (number < boxes % photos) for number in range(photos)]
    return [
        PhotoAgreement(f"p{number}.jpg", {"dog": size}, {"dog": size}, size, size - (lost if number == 0 else 0))
        for number, size in enumerate(sizes)
    ]


def test_the_gate_refuses_a_verdict_that_rests_on_too_few_boxes():
    report = AgreementReport({}, ["c.jpg"], held_out(25), [], 0.98)
    assert report.matched_share == 1.0 and not report.passes(0.98)  # all matched, and still no verdict
    assert report.refusal == "rests on 25 boxes; at least 100 needed: add photos with --photos"
    content = json.loads(report.to_json())
    assert content["passed"] is False and content["refused"] == report.refusal
    assert (content["fp32_boxes"], content["held_out_photos"]) == (25, 4)
    assert content["agreement_interval"] == pytest.approx([0.8668, 1.0], abs=5e-5)
    assert too_few_boxes(MIN_GATE_BOXES - 1) and too_few_boxes(0)


def test_one_lost_box_moves_a_verdict_the_gate_accepts_by_at_most_one_percent():
    enough = AgreementReport({}, ["c.jpg"], held_out(MIN_GATE_BOXES), [], 0.98)
    assert enough.refusal is None and enough.passes(0.98)
    one_lost = AgreementReport({}, ["c.jpg"], held_out(MIN_GATE_BOXES, lost=1), [], 0.98)
    assert round(enough.matched_share - one_lost.matched_share, 9) <= 0.01 and one_lost.passes(0.98)
    three_lost = AgreementReport({}, ["c.jpg"], held_out(MIN_GATE_BOXES, lost=3), [], 0.98)
    assert three_lost.refusal is None and not three_lost.passes(0.98)  # enough boxes: a real FAIL
    assert AgreementReport.from_json(enough.to_json()).passes(0.98)


def test_the_default_photo_set_gives_the_gate_enough_boxes_with_the_demo_model(model_dir):
    """The photos calibrate makes from data/ when no --photos is given: the fp32
    reference alone, once, counts the boxes on the photos it holds out."""
    photos = calibration_photos()
    _, held = split_photos(sorted(photos), 0.3)
    model = load_model_description(model_dir)
    fp32 = _detector(model, ensure_export(model), CalibrationOptions(threads=2))
    boxes = sum(len(fp32.detect(photos[name][:, :, ::-1].copy(), DetectOptions())) for name in held)
    assert boxes >= MIN_GATE_BOXES
    assert len(photos) > 6 and all("/" not in name for name in photos)


def test_int8_only_through_onnxruntime(model_dir):
    with pytest.raises(ConfigError, match="PRECISION=int8 needs BACKEND=onnxruntime or openvino or auto, not opencv"):
        Settings.from_env({"MODEL_DIR": str(model_dir), "PRECISION": "int8", "BACKEND": "opencv"})
    with pytest.raises(ConfigError, match="INT8_MIN_AGREEMENT"):
        Settings.from_env({"MODEL_DIR": str(model_dir), "INT8_MIN_AGREEMENT": "1.5"})


@pytest.fixture(scope="module")
def model_copy(model_dir, tmp_path_factory):
    """The demo model in a directory of its own: calibration writes next to the weights."""
    return copy_model(model_dir, tmp_path_factory.mktemp("int8") / "model")


def calibrate(model_dir, *args):
    starts_processes("python -m app calibrate")
    return subprocess.run(
        [sys.executable, "-m", "app", "calibrate", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "MODEL_DIR": str(model_dir)},
        capture_output=True,
        text=True,
        timeout=900,  # the default set: 63 photos, every candidate on each
    )


def start(model_dir, tmp_path, **env):
    return RunningService({"MODEL_DIR": str(model_dir), "WORKERS": "1", **env}, tmp_path / "service.log")


@pytest.mark.e2e
def test_int8_is_refused_before_calibration(model_copy, tmp_path):
    message = refusal(start(model_copy, tmp_path, PRECISION="int8"))
    assert "PRECISION=int8 but this model has no calibrated int8 version" in message
    assert "python -m app calibrate" in message


@pytest.fixture(scope="module")
def calibrated(model_copy):
    # The default photos (made from data/), with a pass mark any int8 scheme clears on every
    # CPU class: what is tested here is the report and the service that reads it. With the
    # 98% gate, int8 failed on the Xeon (94.5% of 127 boxes at best): see performance.md.
    result = calibrate(model_copy, "--pass-mark", "0.5")
    assert result.returncode == 0, result.stdout + result.stderr
    reports = list(model_copy.glob("*.int8-report.json"))
    assert len(reports) == 1 and len(list(model_copy.glob("*.int8.onnx"))) == 1
    return result.stdout, json.loads(reports[0].read_text()), reports[0]


@pytest.mark.e2e
def test_calibration_reports_agreement_on_held_out_photos(calibrated):
    output, report, _ = calibrated
    assert "PASS" in output and "serve it with PRECISION=int8" in output
    held_out = {photo["photo"] for photo in report["held_out"]}
    assert held_out and not held_out & set(report["calibration_photos"])
    # The set made from data/'s samples, each photo once; never an example output.
    assert held_out | set(report["calibration_photos"]) == set(calibration_photos())
    assert "no --photos: 63 photos made from" in output
    assert report["fp32_boxes"] >= 100 and report["refused"] is None
    assert report["held_out_photos"] == len(held_out)
    low, high = report["agreement_interval"]
    assert low <= report["matched_share"] <= high
    assert not any("annotated" in name for name in held_out | set(report["calibration_photos"]))
    for photo in report["held_out"]:
        assert set(photo["fp32_counts"]) == set(photo["int8_counts"])
        assert 0 <= photo["matched_boxes"] <= photo["fp32_boxes"]
    assert report["fp32_boxes"] > 0 and report["matched_share"] >= report["pass_mark"] == 0.5
    assert report["passed"] is True
    # A second look, not the gate: the same comparison on the photos int8 was fitted to.
    assert {photo["photo"] for photo in report["calibration_check"]} == set(report["calibration_photos"])
    assert 0 < report["calibration_check_matched_share"] <= 1
    assert "on the calibration photos themselves (not the gate)" in output
    assert {"conv_15", "conv_22", "yolo_16", "yolo_23"} <= set(report["fp32_nodes"])  # outputs stay fp32


@pytest.mark.e2e
def test_calibration_keeps_the_fastest_scheme_that_passes_on_this_cpu(calibrated):
    output, report, _ = calibrated
    assert report["cpu_class"] == cpu_class()
    measured = {result["scheme"]: result for result in report["schemes"]}
    assert set(measured) == set(SCHEME_NAMES)  # every candidate measured here, none guessed
    chosen = measured[report["scheme"]]
    assert chosen["passed"] and chosen["matched_share"] == report["matched_share"]
    fastest = min(result["forward_ms"] for result in measured.values() if result["passed"])
    assert chosen["forward_ms"] <= fastest * 1.05
    for result in measured.values():  # a scheme passes exactly when it reaches the pass mark
        assert result["passed"] == (result["matched_share"] >= report["pass_mark"])
        assert result["forward_ms"] > 0
    assert f"this CPU: {report['cpu_class']}" in output
    assert f"chosen: {report['scheme']}: " in output
    assert report["fp32_forward_ms"] > 0


@pytest.mark.e2e
def test_calibration_measures_openvino_beside_onnxruntime_against_the_same_fp32(calibrated, model_copy):
    output, report, _ = calibrated
    labels = [(entry["engine"], entry["precision"]) for entry in report["candidates"]]
    expected = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32")]
    expected += [("openvino", "bf16")] if cpu_has_bf16() else []
    assert labels == [*expected, ("openvino", "int8")]  # NNCF is in requirements-test.txt
    assert report["candidates"][1]["detail"] == report["scheme"]
    for entry in report["candidates"]:
        assert entry["forward_ms"] > 0 and entry["fp32_boxes"] == report["fp32_boxes"]
        assert 0 <= entry["matched_share"] <= 1 and entry["photos"] == len(report["held_out"])
    # openvino f32 is the same arithmetic: every box of onnxruntime fp32, on every photo.
    assert report["candidates"][2]["matched_share"] == report["candidates"][2]["calibration_matched_share"] == 1.0
    nncf_model = export_paths(load_model_description(model_copy)).openvino_int8
    assert nncf_model.is_file() and nncf_model.with_suffix(".bin").is_file()
    assert "PRECISION=auto (the default) serves " in output


@pytest.mark.e2e
def test_out_of_the_box_the_service_serves_what_calibrate_chose_and_says_why(calibrated, model_copy, tmp_path):
    _, report, _ = calibrated
    plan = serving_plan(report["candidates"], report["cpu_class"], cpu_class(), "auto", 0.98, cpu_has_bf16())
    service = start(model_copy, tmp_path)  # no BACKEND, no PRECISION
    try:
        service.wait_ready()
        info = requests.get(f"{service.url}/model", timeout=10).json()
        assert (info["engine"], info["precision"], info["selection"]) == (
            plan[0].backend,
            plan[0].precision,
            plan[0].reason,
        )
        assert plan[0].reason in service.output()  # the startup line says it too
        response = requests.post(
            f"{service.url}/invocations",
            data=photo_bytes("dog.jpg"),
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
        stat = response.json()["stat"]
        assert (stat["dog"], stat["bicycle"], stat["car"], stat["truck"]) == (1, 1, 1, 1)
    finally:
        service.stop()


@pytest.mark.e2e
def test_calibration_records_the_sha256_of_every_file_and_prints_its_own(calibrated, model_copy):
    output, report, path = calibrated
    assert f"CALIBRATION_SHA256={file_digest(path)}" in output.splitlines()
    paths = export_paths(load_model_description(model_copy))
    files = {
        "cfg": model_copy / "yolov3-tiny.cfg",
        "weights": model_copy / "yolov3-tiny.weights",
        "export": paths.fp32,
        "int8": paths.int8,
        "openvino_int8.xml": paths.openvino_int8,
        "openvino_int8.bin": paths.openvino_int8.with_suffix(".bin"),
    }
    assert report["files_sha256"] == {name: file_digest(file) for name, file in files.items()}


@pytest.mark.e2e
def test_a_pinned_calibration_serves_under_model_sha256(calibrated, model_copy, tmp_path):
    _, report, path = calibrated
    plan = serving_plan(report["candidates"], report["cpu_class"], cpu_class(), "auto", 0.98, cpu_has_bf16())
    files = [model_copy / name for name in ("coco.names", "yolov3-tiny.weights", "yolov3-tiny.cfg")]
    pins = {"MODEL_SHA256": " ".join(file_digest(file) for file in files), "CALIBRATION_SHA256": file_digest(path)}
    service = start(model_copy, tmp_path, **pins)
    try:
        service.wait_ready()
        info = requests.get(f"{service.url}/model", timeout=10).json()
        assert (info["engine"], info["precision"]) == (plan[0].backend, plan[0].precision)
        stat = service.post_photo("dog.jpg").json()["stat"]
        assert (stat["dog"], stat["bicycle"], stat["car"] + stat["truck"]) == (1, 1, 2)
    finally:
        service.stop()


@pytest.mark.e2e
def test_int8_measured_on_another_cpu_class_is_refused(calibrated, model_copy, tmp_path):
    _, report, path = calibrated
    other = "avx2" if report["cpu_class"] != "avx2" else "avx512_vnni"
    original = path.read_text()
    path.write_text(json.dumps({**report, "cpu_class": other}))
    try:
        message = refusal(start(model_copy, tmp_path, PRECISION="int8"))
    finally:
        path.write_text(original)
    assert f"int8 agreement was measured on a {other} CPU, this CPU is {cpu_class()}" in message
    assert "run `python -m app calibrate [PHOTO_DIR]` on this machine" in message


@pytest.mark.e2e
def test_a_report_that_names_no_cpu_class_is_refused(calibrated, model_copy, tmp_path):
    _, report, path = calibrated
    original = path.read_text()
    path.write_text(json.dumps({key: value for key, value in report.items() if key != "cpu_class"}))
    try:
        message = refusal(start(model_copy, tmp_path, PRECISION="int8"))
    finally:
        path.write_text(original)
    assert "measured on a CPU it does not name" in message


@pytest.mark.e2e
def test_calibrated_int8_serves_the_same_counts(calibrated, model_copy, tmp_path):
    _, report, _ = calibrated
    measured = next(p for p in report["held_out"] + report["calibration_check"] if p["photo"] == "dog.jpg")
    service = start(model_copy, tmp_path, PRECISION="int8", INT8_MIN_AGREEMENT="0.5")
    try:
        service.wait_ready()
        info = requests.get(f"{service.url}/model", timeout=10).json()
        assert (info["engine"], info["precision"]) == ("onnxruntime", "int8")
        response = requests.post(
            f"{service.url}/invocations",
            data=photo_bytes("dog.jpg"),
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
        assert response.json()["stat"] == measured["int8_counts"]  # as calibrate measured it
    finally:
        service.stop()


@pytest.mark.e2e
def test_the_pass_mark_is_a_setting(calibrated, model_copy, tmp_path):
    _, report, path = calibrated
    boxes = report["fp32_boxes"]
    # Held-out boxes fewer matched than measured, until below 98% (above 50%).
    held_out = [dict(photo) for photo in report["held_out"]]
    while sum(photo["matched_boxes"] for photo in held_out) / boxes >= 0.98:
        max(held_out, key=lambda photo: photo["matched_boxes"])["matched_boxes"] -= 1
    share = (sum(photo["matched_boxes"] for photo in held_out)) / boxes
    original = path.read_text()
    path.write_text(json.dumps({**report, "held_out": held_out}))
    try:
        message = refusal(start(model_copy, tmp_path, PRECISION="int8"))
        assert f"int8 matched {share:.1%} of {boxes} fp32 boxes" in message
        assert "INT8_MIN_AGREEMENT is 98.0%" in message
        service = start(model_copy, tmp_path, PRECISION="int8", INT8_MIN_AGREEMENT="0.5")
        try:
            service.wait_ready()
        finally:
            service.stop()
    finally:
        path.write_text(original)


@pytest.mark.e2e
def test_calibration_needs_photos(model_copy, tmp_path):
    (tmp_path / "one").mkdir()
    shutil.copy(ROOT / "data" / "dog.jpg", tmp_path / "one")
    result = calibrate(model_copy, str(tmp_path / "one"))
    assert result.returncode == 2 and "calibration needs at least 2" in result.stderr
    result = calibrate(model_copy, "--photos", str(tmp_path / "one"))
    assert result.returncode == 2 and "calibration needs at least 2" in result.stderr
