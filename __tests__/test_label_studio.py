"""The service as a Label Studio ML backend, in process: the labelling config read, the
boxes as regions in percent, and the photos fetched from a Label Studio host with its
token (a small file server on 127.0.0.1 that answers as Label Studio's /data/upload and
/api/token/refresh/ do). test_label_studio_e2e.py runs the real Label Studio."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from fakes import FAKE_CLASSES, fake_app
from support import photo_bytes, photo_path, wait_until

from app.http import label_studio as label_studio_module
from app.http import request_parsing
from app.http.factory import create_app
from app.http.label_studio import CONFIG_CACHE_BYTES, LabelConfigCache, ProjectLabels
from app.http.label_studio_photos import LabelStudioLink, LabelStudioToken, PhotoFetchError
from app.pipeline.label_studio import (
    MAX_LABEL_CONFIG_CHARS,
    LabelConfigError,
    match_labels,
    parse_label_config,
    prediction,
)
from app.pipeline.photo import PhotoResult
from app.settings import ConfigError, LabelStudioSettings, Settings
from app.vision.detection import Detection

CONFIG = (
    '<View><Image name="photo" value="$picture"/>'
    '<RectangleLabels name="boxes" toName="photo"><Label value="person"/><Label value="Dog"/>'
    '<Label value="bicycle"/><Label value="Unicorn"/></RectangleLabels></View>'
)
LEGACY_TOKEN = "0123456789abcdef0123456789abcdef01234567"  # noqa: S105 - the fake server's own


def jwt(claims: dict) -> str:
    """A token shaped as Label Studio's JWTs (the signature is not checked by the service)."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


PERSONAL_TOKEN = jwt({"token_type": "refresh", "exp": 8103658146, "user_id": "1"})


class FakeLabelStudio:
    """Label Studio's file serving and token refresh, as far as the backend uses them:
    /data/upload/1/<photo in data/> needs `Token <legacy>` or `Bearer <an access token it
    issued>`; /api/token/refresh/ issues one for the personal access token."""

    def __init__(self):
        self.requests: list[tuple[str, str]] = []  # (path, Authorization)
        self.issued: list[str] = []  # the access tokens still good
        self.refreshes = 0
        self.expire_next_access = False  # the next photo request with a Bearer gets a 401
        self.redirects: dict[str, tuple[int, str]] = {}  # path -> (status, Location), before any check
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, ""))
                if self.path in fake.redirects:
                    return self._redirect(*fake.redirects[self.path])
                if self.path != "/api/token/refresh/" or body.get("refresh") != PERSONAL_TOKEN:
                    return self._answer(401, b'{"detail": "Token is invalid"}')
                fake.refreshes += 1
                access = jwt({"token_type": "access", "exp": time.time() + 300, "n": fake.refreshes})
                fake.issued.append(access)
                self._answer(200, json.dumps({"access": access}).encode())

            def do_GET(self):
                authorization = self.headers.get("Authorization", "")
                fake.requests.append((self.path, authorization))
                if self.path in fake.redirects:
                    return self._redirect(*fake.redirects[self.path])
                bearer = authorization.removeprefix("Bearer ")
                if bearer in fake.issued and fake.expire_next_access:
                    fake.expire_next_access = False
                    fake.issued.remove(bearer)
                if authorization != f"Token {LEGACY_TOKEN}" and bearer not in fake.issued:
                    return self._answer(401, b'{"detail": "Authentication credentials were not provided."}')
                name = self.path.removeprefix("/data/upload/1/")
                if "/" in name or not photo_path(name).is_file():
                    return self._answer(404, b"{}")
                self._answer(200, photo_bytes(name), "image/jpeg")

            def _redirect(self, status: int, location: str):
                self.send_response(status)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _answer(self, status: int, body: bytes, content_type: str = "application/json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.authority = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.authority}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def photo_requests(self) -> list[tuple[str, str]]:
        return [(path, auth) for path, auth in self.requests if path.startswith("/data/")]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def label_studio():
    fake = FakeLabelStudio()
    yield fake
    fake.close()


def backend(model_dir, label_studio: FakeLabelStudio, api_key: str, **studio):
    host = label_studio.url.removeprefix("http://")
    settings = Settings(
        model_dir=model_dir,
        engine_threads=2,
        label_studio=LabelStudioSettings(url=label_studio.url, api_key=api_key, hosts=frozenset({host}), **studio),
    )
    return create_app(settings).test_client()


@pytest.fixture(scope="module")
def client(model_dir, label_studio):
    return backend(model_dir, label_studio, PERSONAL_TOKEN)


def predict(client, *photo_urls: str, config: str = CONFIG):
    tasks = [{"id": number, "data": {"picture": url}} for number, url in enumerate(photo_urls, 1)]
    return client.post(
        "/label-studio/predict", json={"tasks": tasks, "project": "1.1700000000", "label_config": config}
    )


# The labelling config and the regions: pure functions.


def test_a_label_config_names_the_photo_field_the_rectangle_tool_and_its_labels():
    config = parse_label_config(CONFIG)
    assert (config.from_name, config.to_name, config.data_key) == ("boxes", "photo", "picture")
    assert config.labels == ("person", "Dog", "bicycle", "Unicorn")


@pytest.mark.parametrize(
    ("xml", "says"),
    [
        ('<View><Image name="i" value="$image"/><Choices name="c" toName="i"/></View>', "no <RectangleLabels>"),
        ('<View><RectangleLabels name="b" toName="i"><Label value="dog"/></RectangleLabels></View>', "names no <Image"),
        ('<View><Image name="i" value="$image"/><RectangleLabels name="b" toName="i"/></View>', "no <Label"),
        ("<View><Image", "not XML"),
        ('<!DOCTYPE v [<!ENTITY a "aaaa">]><View>&a;</View>', "not XML"),
    ],
)
def test_a_label_config_the_model_cannot_draw_into_is_refused_with_the_reason(xml, says):
    with pytest.raises(LabelConfigError, match=says):
        parse_label_config(xml)


def test_model_classes_meet_project_labels_by_name_never_by_position():
    match = match_labels(("dog", "person", "car"), ("Person", "Unicorn", " DOG "))
    assert match.labels == {"dog": " DOG ", "person": "Person"}
    assert match.not_in_model == ("Unicorn",)
    assert match.not_in_project == ("car",)
    assert "Unicorn" in match.note()
    many = match_labels(("dog",), tuple(f"label {i}" for i in range(5000)))
    assert "and 4980 more" in many.note() and len(many.note()) < 500  # one log line, not the config


def test_predicted_values_map_model_classes_to_a_label_as_label_studio_backends_do():
    xml = (
        '<View><Image name="photo" value="$picture"/><RectangleLabels name="boxes" toName="photo">'
        '<Label value="Rotifer" predicted_values="rotifer, live_rotifer"/><Label value="Dead"/>'
        "</RectangleLabels></View>"
    )
    config = parse_label_config(xml)
    assert config.predicted_values == (("Rotifer", ("rotifer", "live_rotifer")),)
    match = match_labels(("live_rotifer", "rotifer", "dead", "ciliate"), config.labels, config.predicted_values)
    assert match.labels == {"live_rotifer": "Rotifer", "rotifer": "Rotifer", "dead": "Dead"}
    assert match.not_in_model == () and match.not_in_project == ("ciliate",)
    # The labs' own case and spaces, as for names.
    assert match_labels(("Live_Rotifer ",), config.labels, config.predicted_values).labels == {
        "Live_Rotifer ": "Rotifer"
    }


def test_a_box_becomes_a_region_in_percent_of_the_photo_cut_at_its_edges():
    result = PhotoResult(
        filename="x.jpg",
        width=200,
        height=100,
        detections=(
            Detection(1, "Dog", 0.9, (20.0, 10.0, 50.0, 40.0)),
            Detection(1, "Dog", 0.5, (-10.0, 80.0, 40.0, 40.0)),  # over the left and bottom edges
            Detection(0, "car", 0.7, (0.0, 0.0, 5.0, 5.0)),  # no label for it in the project
        ),
        counts={"car": 1, "Dog": 2},
    )
    config = parse_label_config(CONFIG)
    answer = prediction(result, config, match_labels(("car", "Dog"), config.labels), "abc")
    first, second = answer["result"]
    assert first["value"] == {
        "x": 10.0,
        "y": 10.0,
        "width": 25.0,
        "height": 40.0,
        "rotation": 0,
        "rectanglelabels": ["Dog"],
    }
    assert (first["from_name"], first["to_name"], first["type"]) == ("boxes", "photo", "rectanglelabels")
    assert (first["original_width"], first["original_height"], first["image_rotation"]) == (200, 100, 0)
    assert second["value"]["x"] == 0.0 and second["value"]["width"] == 15.0 and second["value"]["height"] == 20.0
    assert answer["model_version"] == "abc" and answer["score"] == 0.7


# The HTTP contract, on the real model.


def test_health_is_up_and_names_the_model(client):
    answer = client.get("/label-studio/health")
    assert answer.status_code == 200
    assert answer.json["status"] == "UP"
    assert "yolov3-tiny" in answer.json["model_class"]


def test_setup_answers_the_weights_sha256_first_12_hex_as_the_model_version(client):
    answer = client.post(
        "/label-studio/setup",
        json={"project": "1.1700000000", "schema": CONFIG, "hostname": "", "access_token": "", "extra_params": None},
    )
    assert answer.status_code == 200
    files = client.get("/model").json["files"]
    assert answer.json == {"model_version": files["yolov3-tiny.weights"][:12]}


def test_predict_answers_each_task_in_order_with_the_boxes_the_api_finds(client):
    answer = predict(client, "/data/upload/1/dog.jpg", "/data/upload/1/person.jpg")
    assert answer.status_code == 200
    dog_task, person_task = answer.json["results"]
    api = client.post(
        "/invocations",
        data=photo_bytes("dog.jpg"),
        headers={"Content-Type": "image/jpeg"},
        query_string={"detections": 1},
    ).json["detections"]
    wanted = [d for d in api if d["class"] in ("person", "dog", "bicycle")]
    regions = dog_task["result"]
    assert [r["value"]["rectanglelabels"] for r in regions] == [
        [{"dog": "Dog"}.get(d["class"], d["class"])] for d in wanted
    ]
    for region, detection in zip(regions, wanted, strict=True):
        x, y, w, h = detection["box"]
        value = region["value"]
        assert (region["original_width"], region["original_height"]) == (768, 576)
        assert value["x"] == pytest.approx(100 * x / 768, abs=0.02)
        assert value["y"] == pytest.approx(100 * y / 576, abs=0.02)
        assert value["width"] == pytest.approx(100 * w / 768, abs=0.02)
        assert value["height"] == pytest.approx(100 * h / 576, abs=0.02)
    assert [r["value"]["rectanglelabels"] for r in person_task["result"]].count(["person"]) >= 1
    assert dog_task["model_version"] == person_task["model_version"] == answer.json["model_version"]


def test_classes_the_project_has_no_label_for_are_left_out(client):
    truck_free = CONFIG.replace('<Label value="bicycle"/>', "")
    regions = predict(client, "/data/upload/1/dog.jpg", config=truck_free).json["results"][0]["result"]
    assert {r["value"]["rectanglelabels"][0] for r in regions} == {"Dog"}  # the bicycle and truck are gone


def test_a_personal_access_token_is_refreshed_to_a_bearer_token_and_again_when_refused(model_dir, label_studio):
    client = backend(model_dir, label_studio, PERSONAL_TOKEN)  # its own: no prediction kept from another test
    label_studio.requests.clear()
    assert predict(client, "/data/upload/1/dog.jpg").status_code == 200
    (path, authorization) = label_studio.photo_requests()[-1]
    assert path == "/data/upload/1/dog.jpg"
    assert authorization == f"Bearer {label_studio.issued[-1]}"
    label_studio.expire_next_access = True  # Label Studio turned the access token down: refresh and retry
    refreshed_before = label_studio.refreshes
    answer = predict(client, "/data/upload/1/eagle.jpg")
    assert "result" in answer.json["results"][0]
    assert label_studio.refreshes == refreshed_before + 1


def test_a_legacy_token_is_sent_as_token(model_dir, label_studio):
    legacy = backend(model_dir, label_studio, LEGACY_TOKEN)
    label_studio.requests.clear()
    assert "result" in predict(legacy, "/data/upload/1/kite.jpg").json["results"][0]
    assert label_studio.photo_requests() == [("/data/upload/1/kite.jpg", f"Token {LEGACY_TOKEN}")]


def test_a_photo_that_cannot_be_had_leaves_its_task_without_a_prediction_and_says_why(model_dir, label_studio):
    label_studio.requests.clear()
    own = backend(model_dir, label_studio, PERSONAL_TOKEN)  # its own: no prediction kept from another test
    answer = predict(
        own,
        "http://169.254.169.254/latest/meta-data/x.jpg",  # a host the operator did not allow
        "/data/upload/1/missing.jpg",
        "s3://bucket/x.jpg",
        "/data/upload/1/dog.jpg",
    )
    assert answer.status_code == 200
    metadata, missing, s3, dog = answer.json["results"]
    for entry in (metadata, missing, s3):  # no "result": Label Studio stores no prediction for them
        assert "result" not in entry and entry["error"].startswith("task ")
    assert "LABEL_STUDIO_HOSTS" in metadata["error"]
    assert "404" in missing["error"]
    assert "http(s)" in s3["error"]
    assert dog["result"]
    assert [path for path, _ in label_studio.photo_requests()] == [
        "/data/upload/1/missing.jpg",
        "/data/upload/1/dog.jpg",
    ]
    # A prediction is kept, a failure not: retrieved again, only the failures are tried again.
    label_studio.requests.clear()
    again = predict(own, "/data/upload/1/missing.jpg", "/data/upload/1/dog.jpg")
    assert again.json["results"][1] == dog
    assert [path for path, _ in label_studio.photo_requests()] == ["/data/upload/1/missing.jpg"]


def test_the_token_goes_to_label_studio_only(model_dir, label_studio):
    """A photo URL on another allowed host is fetched without the token (here: refused)."""
    host = label_studio.authority
    settings = Settings(
        model_dir=model_dir,
        engine_threads=2,
        label_studio=LabelStudioSettings(
            url="http://label-studio.invalid:8080", api_key=LEGACY_TOKEN, hosts=frozenset({host})
        ),
    )
    other = create_app(settings).test_client()
    label_studio.requests.clear()
    entry = predict(other, f"{label_studio.url}/data/upload/1/dog.jpg").json["results"][0]
    assert "result" not in entry and "HTTP 401" in entry["error"]
    assert label_studio.photo_requests() == [("/data/upload/1/dog.jpg", "")]


# Whose host gets the token: the host checked is the host connected to (issue 33, row 1).


class RecordingServer:
    """A host that is not Label Studio, on loopback: records each request's path and
    headers, and answers every GET with a photo (a fetch that reached it would be counted)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                recorder.requests.append(("GET", self.path, dict(self.headers)))
                body = photo_bytes("dog.jpg")
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                recorder.requests.append(("POST", self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.server = Server((host, 0), Handler)
        port = self.server.server_address[1]
        self.port = port
        self.authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def credentials(self) -> list[tuple[str, str]]:
        """What reached this host that could open Label Studio: (path, header) pairs."""
        return [
            (path, f"{name}: {value}")
            for _, path, headers in self.requests
            for name, value in headers.items()
            if name.lower() in ("authorization", "cookie", "proxy-authorization")
        ]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def other_host():
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def other_host_v6():
    try:
        server = RecordingServer("::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    yield server
    server.close()


def link_to(label_studio: FakeLabelStudio, *also: str) -> LabelStudioLink:
    """The worker's link to the fake Label Studio with its legacy token; `also`: more allowed hosts."""
    return LabelStudioLink(
        url=label_studio.url,
        token=LabelStudioToken(LEGACY_TOKEN),
        allowed_hosts=frozenset({label_studio.authority, *also}),
    )


# (URL, what happens): "refused" (never sent), "fetched" (without the token), "token" (it is Label
# Studio's exact origin). {ls}/{other}/{v6} are host:port, {ls_port} Label Studio's port alone.
TRICKY_URLS = {
    "backslash before @": ("http://{other}\\@{ls}/data/upload/1/dog.jpg", "refused"),
    "backslash, the other way": ("http://{ls}\\@{other}/x.jpg", "refused"),
    "backslash in the path": ("http://{other}/\\x.jpg", "refused"),
    "user info naming Label Studio": ("http://{ls}@{other}/x.jpg", "refused"),
    "user and password": ("http://user:pw@{ls}/data/upload/1/dog.jpg", "refused"),
    "empty user info": ("http://@{other}/x.jpg", "refused"),
    "%40 in the port": ("http://{other}%40{ls}/data/upload/1/dog.jpg", "refused"),
    "%40 in the host": ("http://127.0.0.1%40{ls}/data/upload/1/dog.jpg", "refused"),
    "mixed-case scheme, Label Studio": ("HtTp://{ls}/data/upload/1/dog.jpg", "token"),
    "mixed-case scheme, other host": ("HTTP://{other}/x.jpg", "fetched"),
    "a leading zero in Label Studio's port": ("http://127.0.0.1:0{ls_port}/data/upload/1/dog.jpg", "token"),
    "Label Studio's host, another port": ("http://{other}/data/upload/1/dog.jpg", "fetched"),
    "Label Studio's host and port, https": ("https://{ls}/data/upload/1/dog.jpg", "fetched"),
    "IPv6 literal": ("http://{v6}/x.jpg", "fetched"),
    "IPv6 literal, backslash": ("http://{v6}\\@{ls}/data/upload/1/dog.jpg", "refused"),
    "IPv4-mapped IPv6 of Label Studio": ("http://[::ffff:127.0.0.1]:{ls_port}/data/upload/1/dog.jpg", "refused"),
    "trailing dot": ("http://127.0.0.1.:{ls_port}/data/upload/1/dog.jpg", "refused"),
}


@pytest.mark.parametrize(("url", "outcome"), TRICKY_URLS.values(), ids=TRICKY_URLS.keys())
def test_no_token_leaves_for_any_form_of_url(label_studio, other_host, other_host_v6, url, outcome):
    """The other hosts are even allowed (LABEL_STUDIO_HOSTS): what they get is still no token."""
    link = link_to(label_studio, other_host.authority, other_host_v6.authority)
    url = url.format(
        ls=label_studio.authority,
        ls_port=label_studio.authority.rsplit(":", 1)[1],
        other=other_host.authority,
        v6=other_host_v6.authority,
    )
    label_studio.requests.clear()
    other_host.requests.clear()
    other_host_v6.requests.clear()
    if outcome == "refused":
        with pytest.raises(PhotoFetchError, match=r"not allowed|can be fetched"):
            link.fetch(url, time.monotonic() + 10)
        assert label_studio.requests == other_host.requests == other_host_v6.requests == []
    elif outcome == "token":
        assert link.fetch(url, time.monotonic() + 10) == photo_bytes("dog.jpg")
        assert label_studio.photo_requests() == [("/data/upload/1/dog.jpg", f"Token {LEGACY_TOKEN}")]
    else:
        try:
            link.fetch(url, time.monotonic() + 10)
        except PhotoFetchError:
            assert url.startswith("https")  # TLS to a plain HTTP server: no request arrives at all
        assert [auth for _, auth in label_studio.requests if auth] == []
    assert other_host.credentials() == other_host_v6.credentials() == []


def test_a_task_url_that_two_parsers_read_as_two_hosts_is_refused_not_fetched(tmp_path, label_studio, other_host):
    """Row 1 as it came: urlsplit sees Label Studio after the `@`, urllib3 connects to
    the host before the backslash. Refused with the reason; the other host hears nothing."""
    client = fake_app(
        tmp_path,
        label_studio=LabelStudioSettings(
            url=label_studio.url, api_key=LEGACY_TOKEN, hosts=frozenset({label_studio.authority})
        ),
    ).test_client()
    other_host.requests.clear()
    url = f"http://{other_host.authority}\\@{label_studio.authority}/x.jpg"
    (entry,) = predict(client, url, config=FAKE_CONFIG).json["results"]
    assert "result" not in entry and "backslash is not allowed" in entry["error"]
    assert other_host.requests == []


def test_a_redirect_from_label_studio_to_another_port_is_not_followed(label_studio, other_host):
    link = link_to(label_studio, other_host.authority)
    label_studio.redirects["/data/upload/1/moved.jpg"] = (302, f"http://{other_host.authority}/x.jpg")
    label_studio.redirects["/data/upload/1/kept.jpg"] = (307, f"http://{other_host.authority}/x.jpg")
    other_host.requests.clear()
    for name in ("moved.jpg", "kept.jpg"):
        with pytest.raises(PhotoFetchError, match="redirect"):
            link.fetch(f"/data/upload/1/{name}", time.monotonic() + 10)
    assert other_host.requests == []


def test_a_token_refresh_redirected_elsewhere_is_not_followed(label_studio, other_host):
    link = LabelStudioLink(
        url=label_studio.url, token=LabelStudioToken(PERSONAL_TOKEN), allowed_hosts=frozenset({label_studio.authority})
    )
    label_studio.redirects["/api/token/refresh/"] = (307, f"http://{other_host.authority}/api/token/refresh/")
    other_host.requests.clear()
    try:
        with pytest.raises(PhotoFetchError, match="refused to refresh"):
            link.fetch("/data/upload/1/dog.jpg", time.monotonic() + 10)
    finally:
        del label_studio.redirects["/api/token/refresh/"]
    assert other_host.requests == []


# What /setup may change (issue 33, row 2).

FAKE_CONFIG = (
    '<View><Image name="photo" value="$picture"/>'
    '<RectangleLabels name="boxes" toName="photo"><Label value="Rotifer"/><Label value="Dead"/>'
    "</RectangleLabels></View>"
)


def setup(client, hostname="", access_token="", schema=FAKE_CONFIG, **headers):
    body = {"project": "1.1700000000", "schema": schema, "hostname": hostname, "access_token": access_token}
    return client.post("/label-studio/setup", json=body, headers=headers)


def learning_backend(tmp_path, label_studio, *hosts, **settings):
    """No LABEL_STUDIO_URL, no token: what /setup says is all there is."""
    studio = LabelStudioSettings(hosts=frozenset({label_studio.authority, *hosts}))
    return fake_app(tmp_path, label_studio=studio, **settings).test_client()


def test_setup_cannot_point_fetches_at_a_host_the_operator_did_not_allow(tmp_path, label_studio, other_host):
    client = learning_backend(tmp_path, label_studio)
    tricky = f"http://{other_host.authority}\\@{label_studio.authority}"
    answer = setup(client, tricky, LEGACY_TOKEN)
    assert answer.status_code == 400 and "backslash" in answer.json["error"]["message"]
    assert setup(client, f"http://user@{label_studio.authority}", LEGACY_TOKEN).status_code == 400
    assert setup(client, f"http://{other_host.authority}", LEGACY_TOKEN).status_code == 200  # not allowed: not used
    link = client.application.extensions["label_studio"]
    assert (link.url, link.token) == ("", None)
    other_host.requests.clear()
    (entry,) = predict(client, "/data/upload/1/dog.jpg", config=FAKE_CONFIG).json["results"]
    assert "set LABEL_STUDIO_URL" in entry["error"]
    assert other_host.requests == []


def test_the_first_label_studio_that_connects_stays_and_its_token_goes_to_it_alone(tmp_path, label_studio, other_host):
    client = learning_backend(tmp_path, label_studio, other_host.authority)  # both hosts allowed
    assert setup(client, label_studio.url + "/", LEGACY_TOKEN).status_code == 200
    moved = setup(client, f"http://{other_host.authority}", "another-token")
    assert moved.status_code == 400 and "set LABEL_STUDIO_URL" in moved.json["error"]["message"]
    label_studio.requests.clear()
    other_host.requests.clear()
    (entry,) = predict(client, "/data/upload/1/dog.jpg", config=FAKE_CONFIG).json["results"]
    assert entry["result"]
    assert label_studio.photo_requests() == [("/data/upload/1/dog.jpg", f"Token {LEGACY_TOKEN}")]
    assert other_host.requests == []


def test_a_junk_token_from_setup_lasts_only_until_label_studio_s_next_setup(tmp_path, label_studio):
    client = learning_backend(tmp_path, label_studio)
    assert setup(client, label_studio.url, "junk").status_code == 200
    (entry,) = predict(client, "/data/upload/1/dog.jpg", config=FAKE_CONFIG).json["results"]
    assert "HTTP 401" in entry["error"]
    assert setup(client, label_studio.url, LEGACY_TOKEN).status_code == 200  # Label Studio, before its next batch
    (entry,) = predict(client, "/data/upload/1/dog.jpg", config=FAKE_CONFIG).json["results"]
    assert entry["result"]


def test_setup_never_replaces_a_configured_url_or_token(tmp_path, label_studio, other_host):
    studio = LabelStudioSettings(
        url=label_studio.url, api_key=LEGACY_TOKEN, hosts=frozenset({label_studio.authority, other_host.authority})
    )
    client = fake_app(tmp_path, label_studio=studio).test_client()
    assert setup(client, f"http://{other_host.authority}", "junk").status_code == 200
    link = client.application.extensions["label_studio"]
    assert link.url == label_studio.url and link.token.key == LEGACY_TOKEN
    other_host.requests.clear()
    (entry,) = predict(client, "/data/upload/1/dog.jpg", config=FAKE_CONFIG).json["results"]
    assert entry["result"] and other_host.requests == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hostname", "http://ls.lab/" + "x" * 3000),
        ("hostname", ["http://ls.lab"]),
        ("access_token", "a" * 5000),
        ("access_token", "two words"),
        ("access_token", "token\r\nX-Injected: 1"),
        ("access_token", {"key": "x"}),
    ],
    ids=[
        "long hostname",
        "hostname a list",
        "long token",
        "token with a space",
        "token with a newline",
        "token a dict",
    ],
)
def test_what_setup_may_set_is_bounded_in_size_and_type(tmp_path, label_studio, field, value):
    client = learning_backend(tmp_path, label_studio)
    answer = client.post("/label-studio/setup", json={"schema": FAKE_CONFIG, field: value})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "invalid_parameter"
    assert client.application.extensions["label_studio"].token is None


def test_with_api_keys_an_anonymous_setup_changes_nothing(tmp_path, label_studio):
    client = learning_backend(tmp_path, label_studio, api_keys=("s3cret",))
    assert setup(client, label_studio.url, "junk").status_code == 401
    link = client.application.extensions["label_studio"]
    assert (link.url, link.token) == ("", None)
    key = base64.b64encode(b"labelstudio:s3cret").decode()
    assert setup(client, label_studio.url, LEGACY_TOKEN, Authorization=f"Basic {key}").status_code == 200
    assert link.url == label_studio.url and link.token.key == LEGACY_TOKEN


# Bodies and configs within bounds (issue 33, row 3).


def test_a_huge_label_studio_body_is_refused_before_it_is_parsed(fake_client, monkeypatch):
    """15 million `{}` (42 MB, under MAX_UPLOAD_MB) once took a worker to 1.7 GB."""
    parsed = []
    monkeypatch.setattr(request_parsing, "json", SimpleNamespace(loads=lambda data: parsed.append(len(data))))
    body = b'{"tasks": [' + b"{}," * 14_000_000 + b'{}], "label_config": ""}'
    for path in ("/label-studio/predict", "/label-studio/setup"):
        started = time.monotonic()
        answer = fake_client.post(path, data=body, content_type="application/json")
        assert answer.status_code == 400 and answer.json["error"]["code"] == "invalid_json"
        assert "values" in answer.json["error"]["message"]
        assert time.monotonic() - started < 5
    assert parsed == []


def test_a_batch_of_real_size_is_within_the_bound(fake_client):
    """25 tasks, each labelled and pre-labelled with 500 boxes, as Label Studio sends them."""
    region = {
        "id": "a1B2c3D4e5",
        "from_name": "boxes",
        "to_name": "photo",
        "type": "rectanglelabels",
        "original_width": 4000,
        "original_height": 3000,
        "image_rotation": 0,
        "value": {"x": 12.3, "y": 45.6, "width": 0.5, "height": 0.5, "rotation": 0, "rectanglelabels": ["Rotifer"]},
        "score": 0.81,
    }
    labelled = {"id": 1, "result": [region] * 500, "completed_by": 1, "was_cancelled": False, "lead_time": 12.5}
    task = {"data": {"picture": "s3://not/fetched.jpg"}, "annotations": [labelled], "predictions": [labelled]}
    tasks = [{**task, "id": number} for number in range(25)]
    answer = fake_client.post("/label-studio/predict", json={"tasks": tasks, "label_config": FAKE_CONFIG})
    assert answer.status_code == 200 and len(answer.json["results"]) == 25


def test_a_big_label_config_is_refused_before_it_is_parsed(fake_client):
    huge = FAKE_CONFIG.replace("</RectangleLabels>", '<Label value="x"/>' * 2_300_000 + "</RectangleLabels>")  # 40 MB
    started = time.monotonic()
    answer = fake_client.post("/label-studio/setup", json={"schema": huge})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "invalid_label_config"
    assert f"at most {MAX_LABEL_CONFIG_CHARS // 1024} KB" in answer.json["error"]["message"]
    assert time.monotonic() - started < 5


def big_config(number: int, labels: int = 3000) -> str:
    """A config of its own (labels named after `number`), ~60 KB."""
    return FAKE_CONFIG.replace(
        "</RectangleLabels>", "".join(f'<Label value="c{number}-{i}"/>' for i in range(labels)) + "</RectangleLabels>"
    )


def read(xml: str) -> ProjectLabels:
    config = parse_label_config(xml)
    return ProjectLabels(config, match_labels(FAKE_CLASSES, config.labels))


def test_the_config_cache_holds_digests_within_its_bytes():
    """What it holds is measured (tracemalloc), not only what it counts: both within the bound."""
    bound = 1024 * 1024
    configs = [big_config(number) for number in range(8)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache = LabelConfigCache(max_entries=32, max_bytes=bound)
    for xml in configs:
        cache.get(xml, lambda xml=xml: read(xml))
        assert cache.footprint <= bound
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert held <= bound
    digests = cache.digests()
    assert 1 <= len(digests) < len(configs)  # the least recently used went to make room
    assert digests == [hashlib.sha256(xml.encode()).hexdigest() for xml in configs[-len(digests) :]]
    too_big = LabelConfigCache(max_entries=32, max_bytes=1024)  # an entry over the whole bound is not kept
    too_big.get(configs[0], lambda: read(configs[0]))
    assert too_big.digests() == [] and too_big.footprint == 0


def test_label_studio_s_config_is_read_once_and_kept_by_digest(fake_client, monkeypatch):
    reads = []
    monkeypatch.setattr(label_studio_module, "parse_label_config", lambda xml: reads.append(xml) or read(xml).config)
    config = FAKE_CONFIG.replace("Dead", "Dead ")  # a config of this test's own
    for _ in range(3):
        assert setup(fake_client, schema=config).status_code == 200
        assert predict(fake_client, config=config).status_code == 200
    assert reads == [config]
    cache = fake_client.application.extensions["label_studio_configs"]
    assert hashlib.sha256(config.encode()).hexdigest() in cache.digests()
    assert cache.footprint <= CONFIG_CACHE_BYTES


@pytest.mark.parametrize(
    "body",
    [
        {"tasks": "dog.jpg", "label_config": CONFIG},
        {"tasks": [], "label_config": '<View><Image name="i" value="$image"/></View>'},
        {
            "tasks": [],
            "label_config": CONFIG.replace("person", "Rotifer").replace("Dog", "Dead").replace("bicycle", "x"),
        },
    ],
    ids=["tasks not a list", "no rectangles", "no label the model knows"],
)
def test_a_predict_the_model_cannot_answer_is_a_400_that_says_why(client, body):
    answer = client.post("/label-studio/predict", json=body)
    assert answer.status_code == 400
    assert answer.json["error"]["message"]


def test_the_webhook_answers_200_at_once(client):
    assert client.post("/label-studio/webhook", json={"action": "ANNOTATION_CREATED", "project": {}}).status_code == 200


def test_with_api_keys_label_studio_gets_in_with_basic_auth_and_the_key_as_password(model_dir, label_studio):
    settings = Settings(model_dir=model_dir, engine_threads=2, api_keys=("s3cret",))
    guarded = create_app(settings).test_client()
    assert guarded.get("/label-studio/health").status_code == 401
    good = base64.b64encode(b"labelstudio:s3cret").decode()
    bad = base64.b64encode(b"labelstudio:guess").decode()
    assert guarded.get("/label-studio/health", headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert guarded.get("/label-studio/health", headers={"Authorization": f"Basic {bad}"}).status_code == 401


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"LABEL_STUDIO_URL": "labelstudio:8080"}, "LABEL_STUDIO_URL"),
        ({"LABEL_STUDIO_URL": "http://ls:8080/?x=1"}, "LABEL_STUDIO_URL"),
        ({"LABEL_STUDIO_URL": "http://other:9000\\@ls:8080"}, "backslash"),
        ({"LABEL_STUDIO_URL": "http://user:pw@ls:8080"}, "user info"),
        ({"LABEL_STUDIO_HOSTS": "http://files.lab"}, "LABEL_STUDIO_HOSTS"),
        ({"LABEL_STUDIO_TIMEOUT_S": "0"}, "LABEL_STUDIO_TIMEOUT_S"),
    ],
)
def test_a_label_studio_setting_that_cannot_be_used_stops_the_start_in_one_line(model_dir, env, says):
    with pytest.raises(ConfigError, match=says):
        Settings.from_env({"MODEL_DIR": str(model_dir), **env})


def test_label_studio_s_host_is_allowed_by_default_and_others_only_when_named(model_dir):
    studio = Settings.from_env(
        {"MODEL_DIR": str(model_dir), "LABEL_STUDIO_URL": "http://LS.lab:8080/", "LABEL_STUDIO_HOSTS": "files.lab"}
    ).label_studio
    assert studio.url == "http://LS.lab:8080"
    assert studio.hosts == {"ls.lab:8080", "files.lab"}
    # Its origin's port, the scheme's own where the URL names none: not every port of the host.
    assert Settings.from_env(
        {"MODEL_DIR": str(model_dir), "LABEL_STUDIO_URL": "https://ls.lab"}
    ).label_studio.hosts == {"ls.lab:443"}


def test_a_batch_too_long_for_its_time_answers_every_task_and_the_next_retrieve_labels_the_rest(
    model_dir, label_studio
):
    hurried = backend(model_dir, label_studio, LEGACY_TOKEN, timeout_s=0.001)
    urls = ("/data/upload/1/dog.jpg", "/data/upload/1/kite.jpg")
    first = predict(hurried, *urls)
    # One entry per task, as Label Studio requires; those without `result` it passes over.
    assert first.status_code == 200
    results = first.json["results"]
    assert len(results) == 2 and not any("result" in entry for entry in results)
    assert all("Retrieve Predictions again" in entry["error"] for entry in results)
    # Counted after the answer, each with a photo's own deadline: the next retrieve finds them.
    backlog = hurried.application.extensions["label_studio_backlog"]
    wait_until(lambda: backlog.waiting() == 0, timeout=120)
    again = predict(hurried, *urls)
    assert again.status_code == 200
    assert [len(entry["result"]) > 0 for entry in again.json["results"]] == [True, True]
    # The same as a batch given time for them.
    patient = predict(backend(model_dir, label_studio, LEGACY_TOKEN), *urls)
    assert again.json["results"] == patient.json["results"]


def test_a_predict_teaches_the_queue_the_time_of_a_photo_not_of_its_batch():
    from app.http.admission import SMOOTHING, PhotoQueue

    queue = PhotoQueue(active=1, depth=4)
    queue.enter(time.monotonic() + 5)
    queue.leave(time.monotonic() - 8.0, photos=4)  # a batch of 4 tasks that took 8 s
    assert queue._seconds_per_photo == pytest.approx(SMOOTHING * 2.0, abs=0.01)
