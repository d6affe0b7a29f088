"""The service as a Label Studio ML backend, under /label-studio (the URL a lab
registers: http://HOST:8080/label-studio): health, setup, predict, webhook.

Label Studio sends every selected task in one /predict and waits ML_TIMEOUT_PREDICT
(100 s) for all of them; the answer has one entry per task, in order. A task whose photo
cannot be fetched or read gets an entry without `result` and with an `error`: Label
Studio stores no prediction for it (it logs the entry), so retrieving predictions again
retries it. Tasks a batch has no time for within LABEL_STUDIO_TIMEOUT_S get such an entry
too, and are counted after the answer (label_studio_backlog.py): the next /predict finds
them ready, so retrieving twice labels a batch of any size.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from flask import Blueprint, current_app, g, jsonify, request

from app.inference.detector import DeadlineExceeded, Detector
from app.pipeline import PhotoLimits, PhotoResult, process_photo
from app.pipeline.label_studio import (
    LabelConfig,
    LabelConfigError,
    LabelMatch,
    match_labels,
    parse_label_config,
    prediction,
)
from app.settings import Settings
from app.vision.detection import DetectOptions
from app.vision.images import ImageTooLarge, InvalidImage

from .errors import BadRequest, NotReady
from .label_studio_backlog import Backlog, Later, prediction_key
from .label_studio_photos import FetchPastDeadline, LabelStudioLink, LabelStudioToken, PhotoFetchError, SetupRefused
from .request_log import add_fields
from .request_parsing import JSON_MAX_VALUES, json_object

log = logging.getLogger(__name__)
bp = Blueprint("label_studio", __name__, url_prefix="/label-studio")
# What a task's photo can fail with and leave the other tasks counted (DamagedImage is an InvalidImage).
TASK_ERRORS = (PhotoFetchError, InvalidImage, ImageTooLarge)
# JSON values a /predict body may hold, counted before it is parsed (request_parsing.json_object).
# Label Studio sends each task with its annotations and predictions: a task whose photo of
# 500 organisms was labelled and pre-labelled is ~18,000 values, so /invocations' bound
# would refuse one such task; 25 of them (what fits in LABEL_STUDIO_TIMEOUT_S) are ~450,000.
# Parsed, a value takes ~70 bytes (~40 MB at most; a body of 15 million `{}` took a worker
# to 1.7 GB). /setup (a config, a host, a token) has /invocations' bound.
PREDICT_MAX_VALUES = 500_000
# Parsed labelling configs kept per worker, by digest: entries, and bytes all together.
CONFIG_CACHE_ENTRIES = 32
CONFIG_CACHE_BYTES = 8 * 1024 * 1024
# What /setup may set: Label Studio's base URL, and a token as it sends them (a legacy
# token is 40 hex, a personal access token a JWT of some 300 characters).
MAX_HOSTNAME_CHARS = 2048
MAX_TOKEN_CHARS = 4096
TOKEN = re.compile(r"[!-~]+")  # printable ASCII, no space: what an Authorization header can carry
MAX_PROJECT_CHARS = 100  # "<project id>.<created at>", for the log


def _detector() -> Detector:
    detector = current_app.extensions.get("detector")
    if detector is None:
        raise NotReady("the model is still loading; retry shortly")
    return detector


def link_for(settings: Settings) -> LabelStudioLink:
    """The worker's way to Label Studio's photos, from the settings (init_app)."""
    studio = settings.label_studio
    return LabelStudioLink(
        url=studio.url,
        token=LabelStudioToken(studio.api_key) if studio.api_key else None,
        allowed_hosts=studio.hosts,
        max_bytes=settings.max_upload_bytes,
    )


def init_app(app, settings: Settings) -> None:
    app.extensions["label_studio"] = link_for(settings)
    app.extensions["label_studio_configs"] = LabelConfigCache(CONFIG_CACHE_ENTRIES, CONFIG_CACHE_BYTES)
    app.extensions["label_studio_backlog"] = Backlog()
    app.register_blueprint(bp)


@bp.get("/")
@bp.get("/health")
def health():
    """Label Studio allows 1 s for this: it never waits behind photos (not queued)."""
    detector = _detector()
    engine = detector.engine
    return jsonify(
        {
            "status": "UP",
            "model_class": f"darknet YOLO {detector.model.files.weights.name} ({engine.name}, {engine.device})",
            "model_version": detector.model_id,
        }
    )


@bp.post("/setup")
def setup():
    """Label Studio connects (and calls this before each batch): the config is checked,
    and its host and token are taken where the settings name none (LabelStudioLink.learn)."""
    body = _json_body(JSON_MAX_VALUES, "a setup is a labelling config, a host and a token")
    detector = _detector()
    hostname = _text(body, "hostname", MAX_HOSTNAME_CHARS)
    access_token = _text(body, "access_token", MAX_TOKEN_CHARS)
    if access_token and not TOKEN.fullmatch(access_token):
        raise BadRequest("'access_token' must be a Label Studio token (printable, no spaces)", code="invalid_parameter")
    _labels(body.get("schema"), detector.class_names, _project(body))
    try:
        current_app.extensions["label_studio"].learn(hostname, access_token)
    except SetupRefused as exc:
        raise BadRequest(str(exc), code="invalid_parameter") from None
    return jsonify({"model_version": detector.model_id})


@bp.get("/versions")
def versions():
    return jsonify({"versions": [_detector().model_id]})


@bp.post("/webhook")
def webhook():
    """Label Studio posts every project event here once the model is connected; there is
    nothing to train, so it is answered at once."""
    return jsonify({"status": "ok"})


@bp.post("/predict")
def predict():
    body = _json_body(PREDICT_MAX_VALUES, "select fewer tasks at a time")
    detector = _detector()
    settings: Settings = current_app.extensions["settings"]
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
        raise BadRequest("'tasks' must be a list of Label Studio tasks", code="invalid_parameter")
    xml = body.get("label_config")
    config, match = _labels(xml, detector.class_names, _project(body))
    # From the request's arrival (admission.py set g.deadline that far ahead of it).
    deadline = g.deadline - settings.request_deadline_s + settings.label_studio.timeout_s
    link: LabelStudioLink = current_app.extensions["label_studio"]
    backlog: Backlog = current_app.extensions["label_studio_backlog"]
    threshold = current_app.extensions["default_threshold"].value
    g.queue_photos = len(tasks)  # admission.py learns the time of a photo, not of this batch
    results, failed, later = [], 0, []
    for task in tasks:
        data = task.get("data")
        url = data.get(config.data_key) if isinstance(data, dict) else None
        key = prediction_key(detector.model_id, str(url), xml, threshold)
        if (ready := backlog.ready(key)) is not None:  # counted after an earlier batch
            results.append(ready)
            continue
        try:
            if time.monotonic() > deadline:
                raise DeadlineExceeded("no time left")
            photo = link.fetch(url, deadline)
            result = count_photo(photo, detector, settings, _filename(url), deadline)
        except (DeadlineExceeded, FetchPastDeadline):
            # Label Studio takes the predictions task by task: those done are kept, an entry
            # without "result" is passed over (and logged there with this message).
            later.append(Later(key, task.get("id"), _counter(url, ProjectLabels(config, match), detector, settings)))
            results.append({"model_version": detector.model_id, "error": f"task {task.get('id')}: {NOT_YET}"})
            continue
        except TASK_ERRORS as exc:
            failed += 1
            log.warning("label studio task %s: not pre-labelled: %s", task.get("id"), exc)
            results.append({"model_version": detector.model_id, "error": f"task {task.get('id')}: {exc}"})
            continue
        results.append(prediction(result, config, match, detector.model_id))
        backlog.keep(key, results[-1])
    if later:
        queued = backlog.later(later)
        log.warning(
            "label studio: %d of %d tasks did not fit LABEL_STUDIO_TIMEOUT_S=%g s; %d more counted in the"
            " background, ready for the next Retrieve Predictions",
            len(later),
            len(tasks),
            settings.label_studio.timeout_s,
            queued,
        )
    add_fields(tasks=len(tasks), failed_tasks=failed, later_tasks=len(later))
    return jsonify({"results": results, "model_version": detector.model_id})


NOT_YET = (
    "not counted within LABEL_STUDIO_TIMEOUT_S; it is being counted now: select the tasks and"
    " Retrieve Predictions again in a minute (the ones done come at once)"
)


def _counter(url, labels: ProjectLabels, detector: Detector, settings: Settings):
    """How the backlog counts a task after the answer: in the app's context (the pixel
    budget, the threshold), each task with REQUEST_DEADLINE_S of its own, as one photo of
    /invocations."""
    app = current_app._get_current_object()
    link: LabelStudioLink = app.extensions["label_studio"]

    def count() -> dict:
        with app.app_context():
            g.client = "label-studio-backlog"  # one fair share for all of it (pixel_budget.py)
            deadline = time.monotonic() + settings.request_deadline_s
            photo = link.fetch(url, deadline)
            result = count_photo(photo, detector, settings, _filename(url), deadline)
            return prediction(result, labels.config, labels.match, detector.model_id)

    return count


def count_photo(photo: bytes, detector: Detector, settings: Settings, filename: str, deadline: float) -> PhotoResult:
    """The one call into the photo pipeline: the service's defaults (the model's threshold), no picture."""
    limits = PhotoLimits(
        max_pixels=settings.max_image_pixels,
        deadline=deadline,
        hold_pixels=functools.partial(current_app.extensions["pixel_budget"].hold, client=g.get("client", "")),
    )
    options = DetectOptions(threshold=current_app.extensions["default_threshold"].value)
    return process_photo(photo, detector, options, limits, filename=filename)


def _filename(url) -> str:
    return str(url).rsplit("/", 1)[-1].split("?", 1)[0][:200] if url else ""


def _json_body(max_values: int, what: str) -> dict:
    if not request.is_json:
        raise BadRequest("the body must be a JSON object, as Label Studio sends", code="invalid_json")
    return json_object(request.get_data(), max_values, what)


def _text(body: dict, key: str, max_chars: int) -> str:
    """A string field of /setup ("" when absent or null), bounded."""
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > max_chars:
        raise BadRequest(f"'{key}' must be a string of at most {max_chars} characters", code="invalid_parameter")
    return value.strip()


def _project(body: dict) -> str:
    """The project's id for the log: "<id>.<created at>" as Label Studio sends it."""
    project = body.get("project")
    return str(project)[:MAX_PROJECT_CHARS].split(".")[0] if isinstance(project, (str, int)) else ""


class ProjectLabels(NamedTuple):
    config: LabelConfig
    match: LabelMatch


def _labels(xml, class_names: tuple[str, ...], project: str) -> ProjectLabels:
    """The project's labelling config read and its labels matched to the model's classes."""
    if not isinstance(xml, str) or not xml.strip():
        raise BadRequest("the request carries no labelling config (label_config or schema)", code="invalid_parameter")
    cache: LabelConfigCache = current_app.extensions["label_studio_configs"]
    return cache.get(xml, lambda: _read_labels(xml, class_names, project))


def _read_labels(xml: str, class_names: tuple[str, ...], project: str) -> ProjectLabels:
    try:
        config = parse_label_config(xml)
    except LabelConfigError as exc:
        raise BadRequest(str(exc), code="invalid_label_config") from None
    match = match_labels(class_names, config.labels, config.predicted_values)
    if not match.labels:
        raise BadRequest(
            f"none of the project's labels ({', '.join(config.labels[:20])}{'...' if len(config.labels) > 20 else ''})"
            f" is a class of this model ({', '.join(class_names[:10])}{'...' if len(class_names) > 10 else ''}):"
            " name them as in the .names file",
            code="invalid_label_config",
        )
    if match.note():  # once per config and worker, while it is cached
        log.warning("label studio project %s: %s", project or "?", match.note())
    return ProjectLabels(config, match)


class LabelConfigCache:
    """Read labelling configs, by the sha256 of their XML (never the XML itself), the
    least recently used dropped first, within a count and a size in bytes. Label Studio
    sends the same config with every /setup and /predict; a config is read once."""

    def __init__(self, max_entries: int, max_bytes: int):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[str, tuple[ProjectLabels, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.footprint = 0  # bytes held, as _footprint counts them

    def get(self, xml: str, read) -> ProjectLabels:
        digest = hashlib.sha256(xml.encode("utf-8", "surrogatepass")).hexdigest()
        with self._lock:
            if digest in self._entries:
                self._entries.move_to_end(digest)
                return self._entries[digest][0]
        labels = read()  # outside the lock: another request's config is read meanwhile
        size = _footprint(labels) + sys.getsizeof(digest)
        with self._lock:
            if size <= self.max_bytes and digest not in self._entries:
                self._entries[digest] = (labels, size)
                self.footprint += size
                while len(self._entries) > self.max_entries or self.footprint > self.max_bytes:
                    self.footprint -= self._entries.popitem(last=False)[1][1]
        return labels

    def digests(self) -> list[str]:
        with self._lock:
            return list(self._entries)


def _footprint(value, seen: set[int] | None = None) -> int:
    """Bytes a read config holds: its tuples, dicts and strings, each object once."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        return size + sum(_footprint(key, seen) + _footprint(item, seen) for key, item in value.items())
    if isinstance(value, (tuple, list)):  # a NamedTuple or dataclass fields below
        return size + sum(_footprint(item, seen) for item in value)
    if hasattr(value, "__dataclass_fields__"):
        return size + sum(_footprint(getattr(value, name), seen) for name in value.__dataclass_fields__)
    return size
