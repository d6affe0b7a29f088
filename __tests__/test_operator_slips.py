"""An operator's slips and a stranger's tricks, against gunicorn started as users start it:
a key setting that yields no key, a network size out of bounds, made-up methods and
paths that would grow /metrics, log lines a client could blow up, temp directories
left by a failed start, a multipart filename that is not UTF-8."""

import base64
import io
import json
import logging
import random
import re
import shutil
import string

import numpy as np
import pytest
import requests
import support
from PIL import Image
from support import ROOT, RunningService, photo_bytes

from app.inference.onnx_export import export_darknet
from app.inference.onnx_export.cache import export_paths, stamp
from app.inference.onnx_export.weights import read_weights, write_weights
from app.log_lines import MAX_RECORD_CHARS, OneLineFormatter
from app.model.darknet_cfg import MAX_NETWORK_SIDE, CfgError, network_input, parse_cfg
from app.model.files import ModelDescription, discover_model_files, floats_the_cfg_reads, read_class_names
from app.settings import Settings

DOG = photo_bytes("dog.jpg")
# What app/__init__.py's LOG_FORMAT writes: every line of the stream is one such record.
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[\d+\] \[[A-Z]+\] [\w.]+: ")


def start(tmp_path, **env) -> RunningService:
    """One worker, temp files in a folder of this test's own (TMPDIR), so they can be counted."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return RunningService({"WORKERS": "1", "TMPDIR": str(tmp_path / "tmp"), **env}, tmp_path / "service.log")


def refusal(service) -> str:
    """The one line a refused start prints; every other line a log record (no traceback)."""
    line = support.refusal(service)
    assert strays(service.output()) == [], service.output()
    return line


def strays(output: str) -> list[str]:
    """Lines that are neither a log record, nor run.sh's own line, nor a refusal."""
    return [
        line
        for line in output.splitlines()
        if not RECORD.match(line) and line != "running gunicorn..." and not line.startswith("cannot start:")
    ]


def left_in_tmp(tmp_path) -> list[str]:
    """The service's directories in its TMPDIR (the supervisor's run directory, with the
    metrics in it). (onnxruntime writes a 51-byte `.ses` file there too: not a directory of ours.)"""
    return sorted(p.name for p in (tmp_path / "tmp").glob("detector-*"))


def log_entry(service, request_id: str) -> tuple[str, dict]:
    (line,) = [line for line in service.output().splitlines() if f'"request_id":"{request_id}"' in line]
    return line, json.loads(line.split("app.request: ", 1)[1])


# -- a key setting that yields no key ----------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"API_KEYS": " , ,"}, "cannot start: API_KEYS=' , ,' yields no key"),
        ({"API_KEYS": "   "}, "cannot start: API_KEYS='   ' yields no key"),
        ({"API_KEYS_FILE": "keys.txt"}, "yields no key (only comments or blank lines)"),
        ({"API_KEYS": "lab-key", "API_KEYS_FILE": "keys.txt"}, "keys.txt yields no key"),
    ],
)
def test_a_key_setting_that_yields_no_key_refuses_to_start_and_leaves_no_temp_dir(tmp_path, setting, message):
    keys = tmp_path / "keys.txt"
    keys.write_text("# the lab front end's key goes here\n\n   \n# and the scripts'\r\n")
    if "API_KEYS_FILE" in setting:
        setting = {**setting, "API_KEYS_FILE": str(keys)}
    line = refusal(start(tmp_path, **setting))
    assert message in line
    assert "lab-key" not in line  # a key is never printed
    assert left_in_tmp(tmp_path) == []  # gunicorn.conf.py's metrics directory went with the master


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"WORKERS": "four"}, "cannot start: WORKERS='four' is not a whole number"),
        ({"THREADS": "2", "ACTIVE_PHOTOS": "2"}, "cannot start: THREADS=2 leaves no thread for /ping"),
        ({"MAX_REQUESTS": "-1"}, "cannot start: MAX_REQUESTS='-1' must be between 0 and 10000000"),
        ({"TILE_OVERLAP": "nan"}, "cannot start: TILE_OVERLAP='nan' is not a finite number"),
        ({"MAX_UPLOAD_MB": "nan"}, "cannot start: MAX_UPLOAD_MB='nan' is not a finite number"),
        ({"PIXEL_BUDGET_MEGAPIXELS": "inf"}, "cannot start: PIXEL_BUDGET_MEGAPIXELS='inf' is not a finite number"),
        ({"WORKERS": "100000"}, "cannot start: WORKERS='100000' must be between 1 and"),
        ({"API_KEYS_FILE": "/dev/zero"}, "cannot start: API_KEYS_FILE=/dev/zero: not a regular file"),
        ({"FRONT": "apache"}, "cannot start: FRONT='apache' is not one of auto, nginx, none"),
    ],
)
def test_a_server_setting_gunicorn_cannot_use_refuses_with_one_line(tmp_path, setting, message):
    # gunicorn.conf.py reads them through Settings: no ValueError traceback from a bare int().
    line = refusal(start(tmp_path, **setting))
    assert line.startswith(message)
    assert left_in_tmp(tmp_path) == []


def test_no_key_setting_at_all_still_means_no_authentication():
    assert Settings.from_env({"API_KEYS": ""}).api_keys == ()
    assert Settings.from_env({}).api_keys == ()
    assert Settings.from_env({"API_KEYS": " a , b,"}).api_keys == ("a", "b")


# -- a network size out of bounds ----------------------------------------------------------


def model_with(tmp_path, old: str, new: str):
    model = tmp_path / "model"
    model.mkdir()
    cfg = (ROOT / "aimodel" / "yolov3-tiny.cfg").read_text()
    assert old in cfg
    (model / "y.cfg").write_text(cfg.replace(old, new, 1))
    shutil.copy(ROOT / "aimodel" / "coco.names", model)
    (model / "y.weights").symlink_to(ROOT / "aimodel" / "yolov3-tiny.weights")
    return model


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("width=416", "width=100000", "line 8: [net] width=100000 must be one of the multiples of 32 from 32 to 2048"),
        ("width=416", "width=1e9", "line 8: [net] width=1e9 must be one of the multiples of 32"),
        ("width=416", "width=inf", "line 8: [net] width=inf is not a finite number"),
        ("width=416", "width=0", "line 8: [net] width=0 must be"),
        ("width=416", "width=-32", "line 8: [net] width=-32 must be"),
        ("width=416", "width=abc", "line 8: [net] width=abc is not a number"),
        ("width=416", "width=100", "line 8: [net] width=100 must be one of the multiples of 32"),
        ("height=416", "height=nan", "line 9: [net] height=nan is not a finite number"),
        ("channels=3", "channels=inf", "line 10: [net] channels=inf is not a finite number"),
        ("channels=3", "channels=1e9", "line 10: [net] channels=1e9 is not a channel count"),
        # A master traceback before: the ONNX export's int() of a mask entry.
        ("mask = 3,4,5", "mask = 3,4,1e30", "line 133: [yolo] mask=3,4,1e30 is not a finite number of a sane size"),
        ("mask = 3,4,5", "mask = 3,4,x", "line 133: [yolo] mask=3,4,x must be integers"),
        ("mask = 3,4,5", "mask = 3,4,6", "line 133: [yolo] mask= indexes must be from 0 to 5"),
        ("anchors = 10,14", "anchors = 10,-14", "line 134: [yolo] anchors= must be pairs of positive sizes"),
    ],
)
def test_a_cfg_out_of_bounds_refuses_with_one_line_naming_the_cfg_line(tmp_path, old, new, where):
    model = model_with(tmp_path, old, new)
    line = refusal(start(tmp_path, MODEL_DIR=str(model)))
    assert line.startswith(f"cannot start: {model / 'y.cfg'} {where}")
    assert left_in_tmp(tmp_path) == []


# -- a cfg edited for 5 classes, the 80-class weights kept ------------------------------------


def five_class_model(tmp_path, filters: int):
    """The demo cfg as a lab's IT person edits it for their 5 classes: classes=5 in both
    [yolo] layers, filters= before them set to `filters`; the demo's 80-class weights."""
    model = tmp_path / "model"
    model.mkdir()
    cfg = (ROOT / "aimodel" / "yolov3-tiny.cfg").read_text()
    (model / "y.cfg").write_text(cfg.replace("classes=80", "classes=5").replace("filters=255", f"filters={filters}"))
    (model / "obj.names").write_text("Rotifer\nOne-Egg-Carrier\nDead\nCiliates\nClumps\n")
    (model / "y.weights").symlink_to(ROOT / "aimodel" / "yolov3-tiny.weights")
    return model


def cache_an_export_as_before(model, tmp_path):
    """The export an earlier version built and cached for these files: it read the floats
    the cfg needs, warned about the rest, and served zeros from then on."""
    files = discover_model_files(model)
    sections = parse_cfg(files.cfg.read_text())
    description = ModelDescription(files, read_class_names(files.names), network_input(sections), tuple(sections))
    header, values = read_weights(files.weights)
    write_weights(tmp_path / "fitting.weights", values[: floats_the_cfg_reads(sections)], header)
    with np.errstate(invalid="ignore"):  # misread variances are negative: the log's RuntimeWarning then
        exported = export_darknet(sections, tmp_path / "fitting.weights")
    path = export_paths(description).fp32
    path.write_bytes(stamp(exported, description).SerializeToString())
    return path


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["onnxruntime", "opencv", "darknet"])
def test_weights_longer_than_the_cfg_reads_refuse_the_start_in_one_line_naming_both_counts(tmp_path, backend):
    model = five_class_model(tmp_path, filters=30)
    line = refusal(start(tmp_path, MODEL_DIR=str(model), BACKEND=backend))
    assert line == (
        f"cannot start: {model / 'y.weights'} holds 8858734 floats, y.cfg needs 8685484: "
        "the weights were trained for another cfg (classes, filters or layers differ)"
    )
    assert left_in_tmp(tmp_path) == []


@pytest.mark.e2e
def test_an_export_cached_before_does_not_hide_weights_longer_than_the_cfg_reads(tmp_path):
    model = five_class_model(tmp_path, filters=30)
    first = refusal(start(tmp_path, MODEL_DIR=str(model)))
    cached = cache_an_export_as_before(model, tmp_path)
    second = refusal(start(tmp_path, MODEL_DIR=str(model)))
    assert second == first and "holds 8858734 floats, y.cfg needs 8685484" in second
    assert cached.is_file()  # there, stamped as made from these files, and still refused


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["opencv", "onnxruntime", "darknet"])
def test_filters_left_for_80_classes_refuse_the_start_in_one_line_naming_the_cfg_line(tmp_path, backend):
    # OpenCV's importer answered this with a 59-line traceback and "Worker failed to boot".
    model = five_class_model(tmp_path, filters=255)
    line = refusal(start(tmp_path, MODEL_DIR=str(model), BACKEND=backend))
    assert line == (
        f"cannot start: {model / 'y.cfg'} line 127: [convolutional] filters=255 before [yolo] (line 135) "
        "with classes=5 and 3 anchors in mask must be (5 + 5) x 3 = 30"
    )
    assert left_in_tmp(tmp_path) == []


def test_network_sides_up_to_the_bound_are_read():
    def size(width):
        return network_input(parse_cfg(f"[net]\nwidth={width}\nheight=32\n")).width

    assert size(32) == 32 and size("832") == 832 and size("416.0") == 416 and size(MAX_NETWORK_SIDE) == 2048
    for width in (MAX_NETWORK_SIDE + 32, 16, "1e999", "0x40"):
        with pytest.raises(CfgError, match="line 2: "):
            size(width)


# -- /metrics labels from fixed sets -------------------------------------------------------


def test_made_up_methods_and_paths_leave_metrics_bounded(live_server, app):
    rng = random.Random(13)  # noqa: S311 - a repeatable stranger, not a secret
    session = requests.Session()

    def stranger() -> None:
        method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))
        if rng.random() < 0.3:
            method = rng.choice(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
        path = "/" + "/".join(rng.choice(["x", "y", "ping", "invocations", "a%20b", "q?z=1"]) for _ in range(2))
        session.request(method, f"{live_server.url}{path}{rng.randrange(10**9)}", timeout=10)

    for _ in range(60):  # every series the strangers can reach now exists
        stranger()
    before = requests.get(f"{live_server.url}/metrics", timeout=10).text
    for _ in range(400):
        stranger()
    after = requests.get(f"{live_server.url}/metrics", timeout=10).text
    # A counter's digits grow a little; a new series per request would add ~80 bytes each.
    assert len(after) - len(before) < 2000, (len(before), len(after))
    series = re.findall(r"^detector_http_requests_total\{(.*)\} ", after, re.MULTILINE)
    labels = [dict(re.findall(r'(\w+)="([^"]*)"', item)) for item in series]
    assert {label["method"] for label in labels} <= {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "OPTIONS",
        "PATCH",
        "other",
    }
    assert {label["status"] for label in labels} <= {"1xx", "2xx", "3xx", "4xx", "5xx"}
    routes = {rule.rule for rule in app.url_map.iter_rules()}  # templates such as /static/<path:filename>
    assert {label["endpoint"] for label in labels} <= routes | {"unmatched"}


# -- the log: bounded fields, chunked bytes counted, one format, temp dirs cleaned ----------


@pytest.fixture(scope="module")
def debug_service(tmp_path_factory):
    """LOG_LEVEL=DEBUG: gunicorn's and Pillow's own debug records come out too."""
    tmp_path = tmp_path_factory.mktemp("debug_service")
    service = start(tmp_path, LOG_LEVEL="DEBUG", API_KEYS="")
    try:
        service.wait_ready()
        service.tmp_path = tmp_path
        yield service
    finally:
        service.stop()
    assert left_in_tmp(tmp_path) == []  # the metrics directory goes with a clean stop too


@pytest.mark.e2e
def test_a_huge_filename_is_a_bounded_log_field(debug_service):
    url = f"{debug_service.url}/invocations"
    body = {"image": base64.b64encode(DOG).decode(), "filename": "rotifers-" + "x" * 5_000_000}
    response = requests.post(url, json=body, headers={"X-Request-ID": "huge-json-name"}, timeout=60)
    assert response.status_code == 200  # API_KEYS="": no authentication, as before
    line, entry = log_entry(debug_service, "huge-json-name")
    assert len(line) < 1500
    assert entry["filename"].startswith("rotifers-xxx") and entry["filename"].endswith("…[+4999809 chars]")
    query = {"filename": "q" * 3000}
    response = requests.post(
        url, params=query, data=DOG, headers={"Content-Type": "image/jpeg", "X-Request-ID": "long-query"}, timeout=60
    )
    assert response.status_code == 200
    line, entry = log_entry(debug_service, "long-query")
    assert len(line) < 1500 and entry["filename"] == "q" * 200 + "…[+2800 chars]"
    assert len(entry["path"]) <= 200


@pytest.mark.e2e
def test_a_chunked_upload_logs_the_bytes_it_sent(debug_service):
    def chunks():  # a generator: requests sends Transfer-Encoding: chunked, no Content-Length
        for start in range(0, len(DOG), 10_000):
            yield DOG[start : start + 10_000]

    response = requests.post(
        f"{debug_service.url}/invocations",
        data=chunks(),
        headers={"Content-Type": "image/jpeg", "X-Request-ID": "chunked-upload"},
        timeout=60,
    )
    assert response.status_code == 200 and response.json()["stat"]["dog"] == 1
    _, entry = log_entry(debug_service, "chunked-upload")
    assert entry["bytes_in"] == len(DOG)


@pytest.mark.e2e
def test_every_line_of_the_stream_is_a_record_in_one_format(debug_service):
    png = io.BytesIO()
    Image.open(io.BytesIO(DOG)).save(png, "PNG")
    response = requests.post(
        f"{debug_service.url}/invocations", data=png.getvalue(), headers={"Content-Type": "image/png"}, timeout=60
    )
    assert response.status_code == 200
    output = debug_service.output()
    assert strays(output) == []
    names = {match.group(0).rsplit("] ", 1)[1] for match in map(RECORD.match, output.splitlines()) if match}
    assert {"gunicorn.error: ", "app.request: "} <= names  # gunicorn's own lines, same shape
    assert any(name.startswith("PIL.") for name in names), names  # a library's logging, same handler


def test_a_record_of_any_logger_is_one_bounded_line_that_keeps_both_ends():
    formatter = OneLineFormatter("%(name)s: %(message)s")
    message = "first line\r\n" + "x" * 100_000 + "\nValueError: the end"
    text = formatter.format(logging.LogRecord("PIL.Image", logging.WARNING, __file__, 1, message, None, None))
    assert "\n" not in text and "\r" not in text and len(text) < MAX_RECORD_CHARS + 40
    assert text.startswith("PIL.Image: first line\\r\\n") and text.endswith("\\nValueError: the end")


@pytest.mark.e2e
def test_the_metrics_dir_lives_while_the_service_runs(debug_service):
    assert len(left_in_tmp(debug_service.tmp_path)) == 1


@pytest.mark.e2e
def test_a_worker_that_cannot_start_logs_its_traceback_on_one_line_and_leaves_no_temp_dir(tmp_path):
    line = refusal(start(tmp_path, BACKEND="darknet", LIBDARKNET_PATH="/nowhere", LOG_LEVEL="DEBUG"))
    assert "LIBDARKNET_PATH=/nowhere" in line
    records = [line for line in (tmp_path / "service.log").read_text().splitlines() if RECORD.match(line)]
    assert any("Traceback (most recent call last):\\n" in line for line in records)  # gunicorn's DEBUG record
    assert left_in_tmp(tmp_path) == []


# -- a multipart filename that is not UTF-8 -------------------------------------------------


@pytest.mark.parametrize("encoding", ["iso-8859-1", "utf-8"])
def test_a_multipart_filename_in_latin1_is_accepted_and_counted(live_server, encoding):
    boundary = b"----lab-front-end-7d2"
    body = b"".join(
        [
            b"--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="image"; filename="' + "café.jpg".encode(encoding) + b'"\r\n',
            b"Content-Type: image/jpeg\r\n\r\n",
            DOG,
            b"\r\n--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="threshold"\r\n\r\n0.3\r\n',
            b"--" + boundary + b"--\r\n",
        ]
    )
    request_id = f"multipart-{encoding}"
    response = requests.post(
        f"{live_server.url}/invocations",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary.decode()}", "X-Request-ID": request_id},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["stat"]["dog"] == 1
    _, entry = log_entry(live_server, request_id)
    assert entry["filename"] == "café.jpg"  # Latin-1 header bytes read as Latin-1
