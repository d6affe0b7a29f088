"""Prometheus metrics. Under gunicorn every worker writes its own files in
PROMETHEUS_MULTIPROC_DIR (set up by gunicorn.conf.py) and /metrics adds them up;
without it (tests, a single process) the default registry serves."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# From a small photo on a GPU (a few ms) to a 48 MP photo on a slow CPU (tens of s).
SECOND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Label values come only from fixed sets: every new value is a new series in every
# worker's file, and a client that makes up methods or paths must not grow /metrics.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
OTHER_METHOD = "other"
UNMATCHED_ENDPOINT = "unmatched"  # any path no route serves (404, and 405 from Werkzeug)

REQUESTS = Counter("detector_http_requests_total", "HTTP requests answered", ["method", "endpoint", "status"])
REQUEST_SECONDS = Histogram(
    "detector_http_request_seconds", "Time to answer an HTTP request", ["endpoint"], buckets=SECOND_BUCKETS
)
STAGE_SECONDS = Histogram(
    "detector_stage_seconds",
    "Time per stage of POST /invocations: decode, inference, annotate, encode",
    ["stage"],
    buckets=SECOND_BUCKETS,
)
OBJECTS = Counter("detector_objects_total", "Objects counted, per class", ["class_name"])
MODEL_LOAD_SECONDS = Gauge(
    "detector_model_load_seconds", "Time the model took to load in a worker", multiprocess_mode="max"
)

BUILD_INFO = Gauge(
    "detector_build_info",
    "1, labelled with what answers: the weights' sha256 (first 12), engine, device, precision, version",
    ["model_sha256", "engine", "device", "precision", "version"],
    multiprocess_mode="livemax",  # live workers only: after a reload the old model's series goes
)

# Per worker (a `pid` label under gunicorn), live workers only: an operator sees the queue.
PHOTOS_QUEUED = Gauge(
    "detector_photos_queued", "Photos waiting their turn in a worker's queue", multiprocess_mode="liveall"
)
PHOTOS_AT_WORK = Gauge("detector_photos_at_work", "Photos a worker is working on", multiprocess_mode="liveall")


def observe_queue(queued: int, working: int) -> None:
    PHOTOS_QUEUED.set(queued)
    PHOTOS_AT_WORK.set(working)


def describe_build(model_sha256: str, engine: str, device: str, precision: str, version: str) -> None:
    """model_sha256: the first 12 hex digits (Detector.model_id)."""
    BUILD_INFO.labels(model_sha256, engine, device, precision, version).set(1)


def observe_stages(stage_seconds: dict[str, float]) -> None:
    """A photo's stage durations (decode, inference, annotate, encode) into the histograms."""
    for stage, seconds in stage_seconds.items():
        STAGE_SECONDS.labels(stage).observe(seconds)


def request_labels(method: str, route: str | None, status: int) -> tuple[str, str, str]:
    """method, endpoint (the route's template, never the path) and status class (2xx...)."""
    return (
        method if method in KNOWN_METHODS else OTHER_METHOD,
        route or UNMATCHED_ENDPOINT,
        f"{status // 100}xx" if 100 <= status <= 599 else "other",
    )


def count_request(method: str, route: str | None, status: int, seconds: float) -> None:
    labels = request_labels(method, route, status)
    REQUESTS.labels(*labels).inc()
    REQUEST_SECONDS.labels(labels[1]).observe(seconds)


def count_objects(counts: dict[str, int]) -> None:
    for class_name, count in counts.items():
        if count:
            OBJECTS.labels(class_name).inc(count)


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
