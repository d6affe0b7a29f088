"""Service settings, read once from the environment (see README, Configuration)."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from app.inference.engines import EngineUnavailable
from app.inference.engines.registry import ENGINES, engines_serving
from app.inference.int8 import DEFAULT_INT8_MIN_AGREEMENT
from app.log_lines import LOG_FORMATS
from app.model import sources
from app.model.files import ModelError
from app.vision.tiling import DEFAULT_OVERLAP

BACKENDS = ("auto", *ENGINES)
# auto (the default): the fastest engine and precision `python -m app calibrate` measured
# keeping the counts on this CPU class, else fp32 (app/inference/int8/candidates.py).
PRECISIONS = ("auto", "fp32", "int8", "bf16")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


# What stops a start with one line (`cannot start: ...`) wherever a detector is built.
STARTUP_ERRORS = (ConfigError, ModelError, EngineUnavailable)


FRONTS = ("auto", "nginx", "none")  # the buffering front (app/http/front.py); auto: nginx when installed
CORES_PER_WORKER = 4  # the default workers: one per 4 cores, each engine on its share
# The queue in front of the engine (app/http/admission.py): photos worked on at once (one
# in the engine while the next decodes), and photos waiting their turn beyond them.
ACTIVE_PHOTOS = 2
QUEUE_DEPTH = 64
SPARE_THREADS = 4  # beyond the queue: /ping, /metrics, /model and refusals never wait
# Upper bounds of settings that have no natural one: far above any use, low enough that
# a slip (WORKERS=100000, a value in bytes for MB) stops the start instead of the box.
PROCESSES_PER_CORE = 4  # WORKERS and ENGINE_THREADS: at most this many per core (at least 8)
MAX_UPLOAD_MB = 1024.0
MAX_KEYS_FILE_BYTES = 1024 * 1024  # API_KEYS_FILE: some 15,000 keys
MAX_MEGAPIXELS = 4000.0  # a JPEG's 65,500 pixels a side, squared, is 4,290 MP


# Label Studio's ML_TIMEOUT_PREDICT (100 s) less a margin for the answer's way back.
LABEL_STUDIO_TIMEOUT_S = 95.0


@dataclass(frozen=True)
class LabelStudioSettings:
    """The service as a Label Studio ML backend (app/http/label_studio.py)."""

    url: str = ""  # LABEL_STUDIO_URL: where /data/upload/... photos are fetched from
    api_key: str = field(default="", repr=False)  # LABEL_STUDIO_API_KEY: a personal access or legacy token
    # Hosts photos may be fetched from (host or host:port): LABEL_STUDIO_URL's by default.
    hosts: frozenset[str] = frozenset()
    timeout_s: float = LABEL_STUDIO_TIMEOUT_S  # one predict request, all its tasks


@dataclass(frozen=True)
class Settings:
    model_dir: Path
    # The server (gunicorn.conf.py): one model per worker process; a GPU box wants 1 or 2.
    port: int = 8080
    host: str = "0.0.0.0"  # noqa: S104  # nosec B104 - every interface, as before HOST existed (README: security)
    workers: int = 1
    threads: int = ACTIVE_PHOTOS + QUEUE_DEPTH + SPARE_THREADS  # per worker: a thread per queued photo
    timeout_s: int = 120  # above the slowest inference, so a busy worker is not killed
    max_requests: int = 5000  # recycle a worker now and then: a guard against native leaks
    front: str = "auto"
    active_photos: int = ACTIVE_PHOTOS
    queue_depth: int = QUEUE_DEPTH
    # Dynamic batching (app/inference/batching.py): whole photos of several requests in one
    # forward pass. 1 (none) by default: on a CPU, 4 gave +2 to +6% requests/s at 8 clients,
    # within noise (README, Measure); a GPU wants 8.
    max_batch: int = 1
    max_batch_delay_ms: float = 2.0
    backend: str = "auto"
    device: str = "auto"
    engine_threads: int = 1
    precision: str = "auto"
    int8_min_agreement: float = DEFAULT_INT8_MIN_AGREEMENT
    max_upload_mb: float = 50.0
    max_image_megapixels: float = 100.0
    # A photo's whole time in a worker, and the one limit of every wait in it: its turn in
    # the queue, the pixel budget, the engine (or the batcher), then decoding and tiled
    # inference. Past it a 503: no photo holds the engine for minutes.
    request_deadline_s: float = 60.0
    # Decoded pixels a worker holds at once (app/http/pixel_budget.py): 100 MP, one photo of
    # the largest size or a dozen 8 MP ones; a 100 MP photo peaks at 1.6-3.6 GB.
    pixel_budget_megapixels: float = 100.0
    jpeg_quality: int = 90
    tile_overlap: float = DEFAULT_OVERLAP  # share of a tile its neighbour also covers
    cors_origins: tuple[str, ...] = ("*",)
    api_keys: tuple[str, ...] = ()
    # Proxies (addresses or networks) whose X-Forwarded-For names the client: limits, fair
    # shares and the log go by the real client's address behind them (app/http/client_address.py).
    trusted_proxies: tuple[str, ...] = ()
    model_sha256: str = ""
    log_level: str = "INFO"
    log_format: str = "text"  # or json: one JSON object a line (app/log_lines.py)
    label_studio: LabelStudioSettings = LabelStudioSettings()
    # A threshold where a request names none; None: the model's saved one (app/model/threshold.py).
    default_threshold: float | None = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_image_pixels(self) -> int:
        return int(self.max_image_megapixels * 1_000_000)

    @property
    def pixel_budget(self) -> int:
        return int(self.pixel_budget_megapixels * 1_000_000)

    def __post_init__(self):
        engine = ENGINES.get(self.backend)
        if engine is not None and self.precision != "auto" and self.precision not in engine.precisions:
            serving = " or ".join((*engines_serving(self.precision), "auto"))
            raise ConfigError(f"PRECISION={self.precision} needs BACKEND={serving}, not {self.backend}")

    @classmethod
    def for_one_process(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """For a command that runs one detector in its own process (count, evaluate,
        calibrate): no other worker shares the cores, whatever WORKERS says."""
        return cls.from_env({**env, "WORKERS": "1"})

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        if env.get("INFERENCE_WAIT_S", "").strip():
            # Said, not ignored: an operator who set it expects a bound that no longer exists apart.
            raise ConfigError("INFERENCE_WAIT_S is gone: REQUEST_DEADLINE_S now bounds every wait of a photo")
        workers = _number(
            env, "WORKERS", max(1, available_cores() // CORES_PER_WORKER), int, minimum=1, maximum=most_processes()
        )
        capacity = request_threads(env)
        return cls(
            model_dir=sources.model_dir(env),
            port=_number(env, "SAGEMAKER_BIND_TO_PORT", 0, int, minimum=1, maximum=65535)
            or _number(env, "PORT", cls.port, int, minimum=1, maximum=65535),
            host=_host(env),
            workers=workers,
            threads=capacity.threads,
            timeout_s=_number(env, "TIMEOUT", cls.timeout_s, int, minimum=0, maximum=86_400),  # 0: gunicorn's "never"
            max_requests=_number(env, "MAX_REQUESTS", cls.max_requests, int, minimum=0, maximum=10_000_000),
            front=_choice(env, "FRONT", FRONTS),
            active_photos=capacity.active,
            queue_depth=capacity.depth,
            max_batch=capacity.batch,
            max_batch_delay_ms=_number(
                env, "MAX_BATCH_DELAY_MS", cls.max_batch_delay_ms, float, minimum=0.0, maximum=1000.0
            ),
            backend=_choice(env, "BACKEND", BACKENDS),
            device=_choice(env, "DEVICE", DEVICES),
            # Workers share the cores: more engine threads than that only thrash.
            engine_threads=_number(
                env, "ENGINE_THREADS", max(1, available_cores() // workers), int, minimum=1, maximum=most_processes()
            ),
            precision=_choice(env, "PRECISION", PRECISIONS),
            int8_min_agreement=_number(
                env, "INT8_MIN_AGREEMENT", cls.int8_min_agreement, float, minimum=0.0, maximum=1.0
            ),
            max_upload_mb=_number(env, "MAX_UPLOAD_MB", cls.max_upload_mb, float, minimum=0.001, maximum=MAX_UPLOAD_MB),
            max_image_megapixels=_number(
                env, "MAX_IMAGE_MEGAPIXELS", cls.max_image_megapixels, float, minimum=0.001, maximum=MAX_MEGAPIXELS
            ),
            request_deadline_s=_number(
                env, "REQUEST_DEADLINE_S", cls.request_deadline_s, float, minimum=0.1, maximum=3600
            ),
            pixel_budget_megapixels=_number(
                env,
                "PIXEL_BUDGET_MEGAPIXELS",
                cls.pixel_budget_megapixels,
                float,
                minimum=0.001,
                maximum=MAX_MEGAPIXELS,
            ),
            jpeg_quality=_number(env, "JPEG_QUALITY", cls.jpeg_quality, int, minimum=1, maximum=100),
            tile_overlap=_number(env, "TILE_OVERLAP", cls.tile_overlap, float, minimum=0.0, maximum=0.9),
            cors_origins=_origins(env),
            api_keys=_api_keys(env),
            trusted_proxies=_trusted_proxies(env),
            model_sha256=env.get("MODEL_SHA256", "").strip().lower(),
            log_level=_choice(env, "LOG_LEVEL", ("INFO", "DEBUG", "WARNING", "ERROR"), case=str.upper),
            log_format=_choice(env, "LOG_FORMAT", LOG_FORMATS),
            label_studio=_label_studio(env),
            default_threshold=_number(env, "DEFAULT_THRESHOLD", None, float, minimum=0.0, maximum=1.0),
        )


class Capacity(NamedTuple):
    batch: int  # MAX_BATCH
    active: int  # photos at work at once
    depth: int  # photos waiting
    threads: int  # gunicorn threads per worker


def request_threads(env: Mapping[str, str] = os.environ) -> Capacity:
    """What a worker takes and the gunicorn threads that needs. Every queued photo
    waits in a thread of its own (nginx hands over only whole requests), so the threads
    are the queue plus spares; THREADS set lower shortens the queue to fit."""
    # A batch of MAX_BATCH needs that many photos at work at once.
    batch = _number(env, "MAX_BATCH", Settings.max_batch, int, minimum=1, maximum=256)
    active = max(batch, _number(env, "ACTIVE_PHOTOS", Settings.active_photos, int, minimum=1, maximum=64))
    depth = _number(env, "QUEUE_DEPTH", Settings.queue_depth, int, minimum=0, maximum=4096)
    threads = _number(env, "THREADS", active + depth + SPARE_THREADS, int, minimum=2, maximum=8192)
    if threads <= active:
        raise ConfigError(
            f"THREADS={threads} leaves no thread for /ping beside {active} photos at work "
            "(ACTIVE_PHOTOS, or MAX_BATCH when larger): raise THREADS or lower them"
        )
    return Capacity(batch, active, max(0, min(depth, threads - active - 1)), threads)


def most_processes() -> int:
    return max(8, PROCESSES_PER_CORE * available_cores())


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# scheme://host[:port], as a browser sends it in Origin; nothing that could read as a pattern.
ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[a-z0-9.-]+(:[0-9]{1,5})?$", re.IGNORECASE)


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    """CORS_ORIGINS: `*`, or exact origins separated by commas. `https://*.lab.example`
    is refused, not read as a pattern that would also let `https://evil-lab.example` in."""
    origins = tuple(o.strip() for o in env.get("CORS_ORIGINS", "*").split(",") if o.strip()) or ("*",)
    for origin in origins:
        if origin != "*" and not ORIGIN.match(origin):
            raise ConfigError(
                f"CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port], no path, no pattern) or *"
            )
    return origins


def _host(env: Mapping[str, str]) -> str:
    """HOST: the address the service listens on, an IP address (nginx and gunicorn
    each resolve a name their own way; an address means the same to both)."""
    raw = env.get("HOST", "").strip()
    if not raw:
        return Settings.host
    try:
        return str(ipaddress.ip_address(raw.strip("[]")))
    except ValueError:
        raise ConfigError(
            f"HOST={raw!r} is not an IP address (0.0.0.0: every interface; 127.0.0.1: this machine only)"
        ) from None


def _api_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """API_KEYS (comma-separated) and API_KEYS_FILE (one per line, # comments).

    Neither set: no authentication. A setting that is there but yields no key (" , ",
    a file of comments) is an operator who meant to close the service: refuse to start
    rather than serve everyone."""
    raw = env.get("API_KEYS", "")
    keys = [key for key in (part.strip() for part in raw.split(",")) if key]
    if raw and not keys:
        raise ConfigError(
            f"API_KEYS={raw!r} yields no key: give comma-separated keys, or leave API_KEYS unset for no authentication"
        )
    if env.get("API_KEYS_FILE"):
        path = env["API_KEYS_FILE"]
        try:  # -sig: a BOM is not part of a key
            lines = _small_regular_file(path, MAX_KEYS_FILE_BYTES).decode("utf-8-sig").splitlines()
        except OSError as exc:
            raise ConfigError(f"API_KEYS_FILE={path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"API_KEYS_FILE={path} is not UTF-8 text") from None
        from_file = [line for line in (line.strip() for line in lines) if line and not line.startswith("#")]
        if not from_file:
            raise ConfigError(
                f"API_KEYS_FILE={path} yields no key (only comments or blank lines): "
                "write one key per line, or leave API_KEYS_FILE unset"
            )
        keys += from_file
    return tuple(keys)


def _trusted_proxies(env: Mapping[str, str]) -> tuple[str, ...]:
    """TRUSTED_PROXIES: comma-separated addresses or networks (10.0.0.5, 10.1.0.0/16,
    fd00::/64), written back as networks (nginx's set_real_ip_from reads them so)."""
    networks = []
    for part in (part.strip() for part in env.get("TRUSTED_PROXIES", "").split(",")):
        if not part:
            continue
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(
                f"TRUSTED_PROXIES: {part!r} is not an IP address or network (10.0.0.5, 10.1.0.0/16, fd00::/64)"
            ) from None
    return tuple(dict.fromkeys(networks))


def _small_regular_file(path: str, limit: int) -> bytes:
    """A regular file of at most `limit` bytes. A FIFO hung the start, /dev/zero ate the
    memory: opened without waiting for a writer, checked on what was opened."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OSError("not a regular file (a FIFO, device, socket or folder): keys go in a text file")
    with open(descriptor, "rb") as stream:
        content = stream.read(limit + 1)
    if len(content) > limit:
        raise OSError(f"larger than {limit // 1024} KB: one key a line needs far less")
    return content


def _label_studio(env: Mapping[str, str]) -> LabelStudioSettings:
    url = env.get("LABEL_STUDIO_URL", "").strip().rstrip("/")
    hosts = {host.strip().lower() for host in env.get("LABEL_STUDIO_HOSTS", "").split(",") if host.strip()}
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"LABEL_STUDIO_URL={url!r} is not an http(s) URL such as http://labelstudio:8080")
        hosts.add(parts.hostname + (f":{parts.port}" if parts.port else ""))
    for host in hosts:
        if not HOST.match(host):
            raise ConfigError(f"LABEL_STUDIO_HOSTS: {host!r} is not a host or host:port (no scheme, no path)")
    return LabelStudioSettings(
        url=url,
        api_key=env.get("LABEL_STUDIO_API_KEY", "").strip(),
        hosts=frozenset(hosts),
        timeout_s=_number(env, "LABEL_STUDIO_TIMEOUT_S", LABEL_STUDIO_TIMEOUT_S, float, minimum=1.0, maximum=3600),
    )


HOST = re.compile(r"^[a-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9a-f:.]+\](:[0-9]{1,5})?$")


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], case=str.lower) -> str:
    value = case(env.get(name, "").strip() or allowed[0])
    if value not in allowed:
        raise ConfigError(f"{name}={env[name]!r} is not one of {', '.join(allowed)}")
    return value


def _number(env: Mapping[str, str], name: str, default, kind, minimum, maximum):
    """A number setting between minimum and maximum (every one has both), finite."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if not math.isfinite(value):  # nan passes every comparison below; inf is no limit
        raise ConfigError(f"{name}={raw!r} is not a finite number")
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={raw!r} must be between {_plain(minimum)} and {_plain(maximum)}")
    return value


def _plain(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"
