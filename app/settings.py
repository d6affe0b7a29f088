"""Service settings, read once from the environment: each declared once, on its field
(name, bounds or choices, default, help); docs/operations.md's table is made from them."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from app.inference.engines import EngineUnavailable
from app.inference.engines.registry import ENGINES, engines_serving
from app.inference.int8 import DEFAULT_INT8_MIN_AGREEMENT
from app.log_lines import LOG_FORMATS
from app.model import sources
from app.model.files import ModelError
from app.model.pins import ModelPins, parse_pins
from app.vision.tiling import DEFAULT_CONTRAST_FLOOR, DEFAULT_OVERLAP

BACKENDS = ("auto", *ENGINES)
# auto (the default): the fastest engine and precision `python -m app calibrate` measured
# keeping the counts on this CPU class, else fp32 (app/inference/int8/candidates.py).
PRECISIONS = ("auto", "fp32", "int8", "bf16")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


# What stops a start with one line (`cannot start: ...`) wherever a detector is built.
STARTUP_ERRORS = (ConfigError, ModelError, EngineUnavailable)


FRONTS = ("auto", "nginx", "none")  # the buffering front (app/serve/front.py); auto: nginx when installed
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


def setting(
    default,
    env: str,
    help: str,
    minimum=None,
    maximum=None,
    choices: tuple[str, ...] = (),
    shown: str | None = None,
    parse=str,
):
    """A field of Settings read from one environment variable: its name, bounds or
    choices and one line of help live here, and nowhere else. from_env reads every
    such field in one loop; the table in docs/operations.md is made from them
    (`python -m app.settings`). `shown`: the default as the docs say it, where the
    value is derived (from the cores, another setting or the model). `maximum` may be a
    function of the machine (most_processes)."""
    meta = {"env": env, "help": help, "min": minimum, "max": maximum, "choices": choices, "shown": shown}
    return field(default=default, metadata={**meta, "parse": parse, "derived": False})


def derived(default, env: str, help: str, shown: str, minimum=None, maximum=None):
    """A setting read apart, after the loop, because its default or its check depends on
    others (WORKERS on the cores, THREADS on the queue) or it reads more than one
    variable (API_KEYS and API_KEYS_FILE): documented in the same table."""
    meta = {"env": env, "help": help, "shown": shown, "min": minimum, "max": maximum, "choices": ()}
    return field(default=default, metadata={**meta, "derived": True})


# A stop's parts (app/serve/supervisor.py drains in this order): gunicorn's workers answer
# what they hold, then nginx sends what it holds, each killed if it overstays.
DRAIN_MARGIN_S = 5  # beyond the request deadline, for the last answer to go out
FRONT_QUIT_S = 10  # nginx sends the answers it holds (already whole, from gunicorn)
KILL_WAIT_S = 5  # after a SIGKILL, for the kernel to reap


# Label Studio's ML_TIMEOUT_PREDICT (100 s) less a margin for the answer's way back.
LABEL_STUDIO_TIMEOUT_S = 95.0
DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    """Where an http(s) URL connects: scheme, host (lower case, IDNA, [IPv6]) and port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


class HttpUrl(NamedTuple):
    url: str  # as requests prepares it: what it sends and what urllib3 connects to
    origin: Origin


def http_url(url: str) -> HttpUrl:
    """`url` read by the HTTP client that fetches it (requests' own preparation, then
    urllib3's parse_url, which is how requests picks the connection), so that the host
    checked is the host connected to. Python's urlsplit reads some URLs otherwise:
    `http://a:1\\@b/` is host b to it and host a to urllib3. A URL with user info (`@`
    before the host) or a backslash is refused whatever either parser makes of it.
    ValueError says why a URL is refused."""
    import requests  # here, not at the top: the process runner imports this module
    from urllib3.util import parse_url

    if not isinstance(url, str) or not url.strip():
        raise ValueError("no URL")
    if "\\" in url:
        raise ValueError("a backslash is not allowed in a URL")
    try:
        given = parse_url(url.strip())
        prepared = requests.Request("GET", url).prepare().url or ""
        parts = parse_url(prepared)
    except (requests.RequestException, ValueError):  # urllib3's LocationParseError is a ValueError
        raise ValueError("not a URL that can be fetched") from None
    if given.auth is not None or parts.auth is not None or "@" in urlsplit(url.strip()).netloc:
        raise ValueError("user info (user@ or user:password@ before the host) is not allowed in a URL")
    if parts.scheme not in DEFAULT_PORTS or not parts.host:
        raise ValueError("not an http(s) URL")
    return HttpUrl(prepared, Origin(parts.scheme, parts.host, parts.port or DEFAULT_PORTS[parts.scheme]))


@dataclass(frozen=True)
class LabelStudioSettings:
    """The service as a Label Studio ML backend (app/http/label_studio.py)."""

    url: str = derived(
        "",
        "LABEL_STUDIO_URL",
        "Label Studio's URL (`http://labelstudio:8080`): where `/data/upload/...` photos of tasks are fetched "
        "from (see [labelling](labelling.md))",
        "none",
    )
    api_key: str = field(
        default="",
        repr=False,
        metadata=setting(
            "",
            "LABEL_STUDIO_API_KEY",
            "a Label Studio personal access token (refreshed to a Bearer token) or legacy token, sent to "
            "`LABEL_STUDIO_URL` only",
        ).metadata,
    )
    # Hosts photos may be fetched from (host or host:port): LABEL_STUDIO_URL's by default.
    hosts: frozenset[str] = derived(
        frozenset(),
        "LABEL_STUDIO_HOSTS",
        "comma-separated `host` or `host:port` that task photos may also be fetched from; no other host is "
        "ever fetched from",
        "`LABEL_STUDIO_URL`'s host",
    )
    timeout_s: float = setting(  # one predict request, all its tasks
        LABEL_STUDIO_TIMEOUT_S,
        "LABEL_STUDIO_TIMEOUT_S",
        "the most one Label Studio predict request (all its tasks) takes; keep it under Label Studio's "
        "`ML_TIMEOUT_PREDICT` (100)",
        1.0,
        3600,
    )


@dataclass(frozen=True)
class Settings:
    model_dir: Path = derived(  # noqa: RUF009 - a dataclasses.field() with the setting's declaration
        Path("aimodel"), "MODEL_DIR", "where the model files are", "`./aimodel`, else `/opt/ml/model`"
    )
    # The server (gunicorn.conf.py): one model per worker process; a GPU box wants 1 or 2.
    port: int = derived(8080, "PORT", "port to listen on; `SAGEMAKER_BIND_TO_PORT` wins when set", "8080", 1, 65535)
    host: str = derived(
        "0.0.0.0",  # noqa: S104  # nosec B104 - every interface, as before HOST existed (docs: security)
        "HOST",
        "address to listen on, an IP address: 0.0.0.0 is every interface (`::` every IPv6 one); "
        "`127.0.0.1` keeps the service to this machine, behind a proxy of your own",
        "0.0.0.0",  # noqa: S104 - the default as the docs show it
    )
    workers: int = derived(
        1,
        "WORKERS",
        "gunicorn worker processes, each with its own copy of the model",
        "cores / 4, at least 1",
        1,
        lambda: most_processes(),
    )
    threads: int = derived(
        ACTIVE_PHOTOS + QUEUE_DEPTH + SPARE_THREADS,
        "THREADS",
        "request threads per worker: one per queued photo, and spares so `/ping`, `/metrics` and `/model` "
        "never wait; set lower, it shortens the queue",
        f"active + queue + {SPARE_THREADS} ({ACTIVE_PHOTOS + QUEUE_DEPTH + SPARE_THREADS})",
        2,
        8192,
    )
    timeout_s: int = setting(
        120,
        "TIMEOUT",
        "seconds of silence before gunicorn restarts a worker (gthread workers stay alive during a long request); "
        "0: never",
        0,
        86_400,
    )
    max_requests: int = setting(
        5000,
        "MAX_REQUESTS",
        "a worker is recycled after this many requests (10% jitter), a guard against native leaks",
        0,
        10_000_000,
    )
    front: str = setting(
        "auto", "FRONT", "`nginx` in front of gunicorn (auto: when installed), or `none`", choices=FRONTS
    )
    active_photos: int = derived(
        ACTIVE_PHOTOS,
        "ACTIVE_PHOTOS",
        "photos a worker works on at once (one in the engine while the next decodes), at least `MAX_BATCH`",
        str(ACTIVE_PHOTOS),
        1,
        64,
    )
    queue_depth: int = derived(
        QUEUE_DEPTH,
        "QUEUE_DEPTH",
        "photos that wait their turn in a worker, first come first served, beyond those at work; "
        "more get 503 `busy` with `Retry-After`",
        str(QUEUE_DEPTH),
        0,
        4096,
    )
    # Dynamic batching (app/inference/batching.py): whole photos of several requests in one
    # forward pass. 1 (none) by default: on a CPU, 4 gave +2 to +6% requests/s at 8 clients,
    # within noise (docs/performance.md); a GPU wants 8.
    max_batch: int = derived(
        1,
        "MAX_BATCH",
        "dynamic batching: whole photos of up to this many requests in one forward pass "
        "(8 for a GPU; on a CPU it gains nothing, see [performance](performance.md))",
        "1",
        1,
        256,
    )
    max_batch_delay_ms: float = setting(
        2.0, "MAX_BATCH_DELAY_MS", "how long the first photo of a batch waits for more", 0.0, 1000.0
    )
    backend: str = setting(
        "auto",
        "BACKEND",
        "`onnxruntime`, `openvino`, `opencv`, `darknet`, or `auto`: darknet when it is a CUDA build, else "
        "onnxruntime (on its CUDA/TensorRT providers when onnxruntime-gpu has them and `DEVICE` allows), else "
        "(a layer the exporter does not cover) OpenCV; with `PRECISION=auto` on a CPU, the engine calibrate "
        "measured fastest (see [precision per CPU class](your-model.md#precision-per-cpu-class))",
        choices=BACKENDS,
    )
    device: str = setting(
        "auto",
        "DEVICE",
        "`auto`, `cpu`, `cuda` (`cuda` needs darknet built with CUDA, or onnxruntime-gpu)",
        choices=DEVICES,
    )
    engine_threads: int = derived(
        1,
        "ENGINE_THREADS",
        "threads the engine uses per worker (no oversubscription)",
        "cores / workers",
        1,
        lambda: most_processes(),
    )
    precision: str = setting(
        "auto",
        "PRECISION",
        "`auto`: on a CPU, the fastest engine and precision that `python -m app calibrate` measured keeping the "
        "counts on this CPU class, else fp32 (on a GPU, fp32); `fp32`; `int8` (onnxruntime or openvino, on the "
        "CPU only); `bf16` (openvino, on a CPU with AMX or AVX512_BF16). int8 and bf16 need a passing "
        "calibration, one that rests on at least 100 held-out boxes; `BACKEND=onnxruntime PRECISION=fp32` is the "
        "service as it always was",
        choices=PRECISIONS,
    )
    int8_min_agreement: float = setting(
        DEFAULT_INT8_MIN_AGREEMENT,
        "INT8_MIN_AGREEMENT",
        "share of onnxruntime fp32's boxes a lower precision (int8, bf16) must match on held-out photos to "
        "serve; `PRECISION=auto` asks it of the calibration photos too",
        0.0,
        1.0,
    )
    max_upload_mb: float = setting(50.0, "MAX_UPLOAD_MB", "largest request body", 0.001, MAX_UPLOAD_MB)
    max_image_megapixels: float = setting(
        100.0, "MAX_IMAGE_MEGAPIXELS", "largest photo, from its header", 0.001, MAX_MEGAPIXELS
    )
    # A photo's whole time in a worker, and the one limit of every wait in it: its turn in
    # the queue, the pixel budget, the engine (or the batcher), then decoding and tiled
    # inference. Past it a 503: no photo holds the engine for minutes.
    request_deadline_s: float = setting(
        60.0,
        "REQUEST_DEADLINE_S",
        "a photo's whole time in a worker, and the one limit of each wait in it (its turn in the queue, the "
        "pixel budget, the engine or the batcher), decoding and tiles included; past it a 503 `busy` or "
        "`deadline_exceeded`, so no photo holds the engine for minutes (it replaces `INFERENCE_WAIT_S`, which "
        "now refuses to start)",
        0.1,
        3600,
    )
    # Decoded pixels a worker holds at once (app/http/pixel_budget.py): 100 MP, one photo of
    # the largest size or a dozen 8 MP ones; a 100 MP photo peaks at 1.6-3.6 GB.
    pixel_budget_megapixels: float = setting(
        100.0,
        "PIXEL_BUDGET_MEGAPIXELS",
        "decoded pixels a worker holds at once: photos beyond it wait their turn (first come, first served); "
        "a photo bigger than it runs alone",
        0.001,
        MAX_MEGAPIXELS,
    )
    jpeg_quality: int = setting(90, "JPEG_QUALITY", "quality of the returned picture", 1, 100)
    tile_overlap: float = setting(
        DEFAULT_OVERLAP, "TILE_OVERLAP", "share of a tile its neighbour also covers, for tiled inference", 0.0, 0.9
    )
    tile_contrast_floor: float = setting(
        DEFAULT_CONTRAST_FLOOR,
        "TILE_CONTRAST_FLOOR",
        "a tile whose contrast (largest per-channel max - min of its 4x4-pixel means, 0-255) is below this is "
        "not run, nor with auto-crop one outside the sample; the whole-photo pass always runs. `0`: every tile "
        "runs. The default is far below the faintest box the demo model finds (see "
        "[performance](performance.md#tiles-that-cannot-hold-an-object)); `evaluate` prints your model's",
        0.0,
        255.0,
    )
    cors_origins: tuple[str, ...] = derived(
        ("*",),
        "CORS_ORIGINS",
        "comma-separated origins (`scheme://host[:port]`, matched exactly) allowed to call from a browser "
        "(flask-cors); a pattern such as `https://*.lab.example` refuses to start",
        "`*`",
    )
    api_keys: tuple[str, ...] = derived(
        (),
        "API_KEYS",
        "comma-separated keys; when set, all but `/ping` need one (Bearer, X-API-Key, or Basic with the key "
        "as password); `API_KEYS_FILE`: a regular file of at most 1 MB with one key per line (`#` comments), "
        'added to them. A key setting that yields no key (`API_KEYS=" , "`, a file of comments) refuses to '
        "start instead of serving everyone",
        "none",
    )
    # Proxies (addresses or networks) whose X-Forwarded-For names the client: limits, fair
    # shares and the log go by the real client's address behind them (app/http/client_address.py).
    trusted_proxies: tuple[str, ...] = derived(
        (),
        "TRUSTED_PROXIES",
        "addresses or networks (10.0.0.5, 10.1.0.0/16, fd00::/64) of your own proxies; their X-Forwarded-For "
        "names the client (the right-most address that is not one of them) for the front's limits, fair shares "
        "and the log. From anyone else X-Forwarded-For is ignored",
        "none",
    )
    # MODEL_SHA256 and CALIBRATION_SHA256 (app/model/pins.py); None: nothing pinned.
    pins: ModelPins | None = derived(  # noqa: RUF009 - a dataclasses.field() with its declaration
        None,
        "MODEL_SHA256",
        "sha256 of the .weights (the .cfg and .names then unchecked; a line at start says so), or of the .cfg, "
        ".names and .weights in any order, comma- or space-separated: the service refuses to start on any other "
        "file. `CALIBRATION_SHA256`: with it, the sha256 of the report `python -m app calibrate` printed; "
        "without it int8 and bf16 are not served under `MODEL_SHA256` (PRECISION=auto serves fp32 and says why)",
        "none",
    )
    log_level: str = setting(
        "INFO", "LOG_LEVEL", "how much the log says", choices=("INFO", "DEBUG", "WARNING", "ERROR")
    )
    log_format: str = setting(
        "text",
        "LOG_FORMAT",
        "`text` (one line a record, a request's fields as JSON) or `json` (every line a JSON object)",
        choices=LOG_FORMATS,
    )
    label_studio: LabelStudioSettings = LabelStudioSettings()  # its fields are the LABEL_STUDIO_* rows
    # A threshold where a request names none; None: the model's saved one (app/model/threshold.py).
    default_threshold: float | None = setting(
        None,
        "DEFAULT_THRESHOLD",
        "the threshold where a request, the page or `count` names none; without it, the one "
        "`python -m app evaluate --save-threshold` wrote next to the weights (`<weights>.threshold.json`, for "
        "those weights only)",
        0.0,
        1.0,
        shown="the saved one, else 0.25",
    )

    @property
    def drain_s(self) -> float:
        """How long gunicorn's workers may take to finish the photos they hold at a stop
        (gunicorn's graceful_timeout): every photo is answered within its deadline."""
        return self.request_deadline_s + DRAIN_MARGIN_S

    @property
    def stop_within_s(self) -> float:
        """The longest a stop takes, the front included: systemd's TimeoutStopSec and
        `docker stop --time` must be above it (docs/operations.md)."""
        return self.drain_s + KILL_WAIT_S + FRONT_QUIT_S + KILL_WAIT_S

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
        values = {item.name: _read(env, item) for item in fields(cls) if item.metadata and not item.metadata["derived"]}
        # The derived ones, each from what it depends on.
        workers = _declared_number(env, "workers", default=max(1, available_cores() // CORES_PER_WORKER))
        capacity = request_threads(env)
        return cls(
            **values,
            model_dir=sources.model_dir(env),
            port=_number(env, "SAGEMAKER_BIND_TO_PORT", 0, int, minimum=1, maximum=65535)
            or _declared_number(env, "port"),
            host=_host(env),
            workers=workers,
            threads=capacity.threads,
            active_photos=capacity.active,
            queue_depth=capacity.depth,
            max_batch=capacity.batch,
            # Workers share the cores: more engine threads than that only thrash.
            engine_threads=_declared_number(env, "engine_threads", default=max(1, available_cores() // workers)),
            cors_origins=_origins(env),
            api_keys=_api_keys(env),
            trusted_proxies=_trusted_proxies(env),
            pins=_pins(env),
            label_studio=_label_studio(env),
        )


# Variables read outside Settings (by run.sh, the model's sources, boto3, the darknet
# binding), in the same table of the docs.
OTHER_VARIABLES = (
    (
        "MODEL_S3_URI",
        "none",
        "`s3://bucket/prefix`: fetch the model files from there at start (into `aimodel/s3` unless `MODEL_DIR` "
        "is set); another scheme is refused in one line naming the known ones",
    ),
    ("AWS_*", "", "the usual boto3 variables; `AWS_ENDPOINT_URL` for an S3-compatible store"),
    ("LIBDARKNET_PATH", "see below", "the libdarknet.so file (or its folder) for the darknet engine"),
    (
        "APT_LOCK_WAIT_S",
        "300",
        "`./run.sh` as root: how long to wait for another apt's lock before starting without nginx "
        "(or failing without `python3-venv`)",
    ),
)


def _read(env: Mapping[str, str], item) -> object:
    """One setting from its declaration: a choice, a bounded number, or text."""
    meta, name = item.metadata, item.metadata["env"]
    if meta["choices"]:
        return _choice(env, name, meta["choices"], case=str.upper if name == "LOG_LEVEL" else str.lower)
    if meta["min"] is not None:
        return _declared_number(env, item.name, owner=type_of(item))
    raw = env.get(name, "").strip()
    return meta["parse"](raw) if raw else item.default


def type_of(item) -> type:
    return next(owner for owner in (Settings, LabelStudioSettings) if item in fields(owner))


def _declared(owner: type, name: str):
    return next(item for item in fields(owner) if item.name == name)


def _declared_number(env: Mapping[str, str], name: str, default=None, owner: type | None = None):
    """A number setting with the bounds its field declares; `default` where it is derived."""
    item = _declared(owner or Settings, name)
    meta = item.metadata
    kind = int if item.type in ("int", int) else float
    maximum = meta["max"]() if callable(meta["max"]) else meta["max"]
    chosen = item.default if default is None else default
    return _number(env, meta["env"], chosen, kind, minimum=meta["min"], maximum=maximum)


def settings_table() -> str:
    """The Markdown table of every environment variable, for docs/operations.md."""
    rows = ["| variable | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    declared = [*fields(Settings), *fields(LabelStudioSettings)]
    for item in declared:
        meta = item.metadata
        if not meta:
            continue
        shown = meta["shown"] if meta.get("shown") is not None else _plain_default(item.default)
        rows.append(f"| `{meta['env']}` | {shown} | {_allowed(meta)} | {meta['help']} |")
    rows += [f"| `{name}` | {shown} | | {help} |" for name, shown, help in OTHER_VARIABLES]
    return "\n".join(rows) + "\n"


def _allowed(meta) -> str:
    if meta["choices"]:
        return ", ".join(f"`{choice}`" for choice in meta["choices"])
    if meta["min"] is None:
        return ""
    maximum = "4 a core (at least 8)" if callable(meta["max"]) else _plain(meta["max"])
    return f"{_plain(meta['min'])} to {maximum}"


def _plain_default(value) -> str:
    if value in ("", None, ()):
        return "none"
    if isinstance(value, float):
        return _plain(value)
    return str(value)


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
    batch = _declared_number(env, "max_batch")
    active = max(batch, _declared_number(env, "active_photos"))
    depth = _declared_number(env, "queue_depth")
    threads = _declared_number(env, "threads", default=active + depth + SPARE_THREADS)
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


def _pins(env: Mapping[str, str]) -> ModelPins | None:
    try:
        return parse_pins(env.get("MODEL_SHA256", ""), env.get("CALIBRATION_SHA256", ""))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


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
        try:
            origin = http_url(url).origin
        except ValueError as exc:
            raise ConfigError(
                f"LABEL_STUDIO_URL={url!r} is not an http(s) URL such as http://labelstudio:8080 ({exc})"
            ) from None
        if "?" in url or "#" in url:
            raise ConfigError(f"LABEL_STUDIO_URL={url!r}: no query or fragment, Label Studio's base URL only")
        hosts.add(f"{origin.host}:{origin.port}")  # its origin's host and port, not every port of the host
    for host in hosts:
        if not HOST.match(host):
            raise ConfigError(f"LABEL_STUDIO_HOSTS: {host!r} is not a host or host:port (no scheme, no path)")
    values = {item.name: _read(env, item) for item in fields(LabelStudioSettings) if not item.metadata["derived"]}
    return LabelStudioSettings(**values, url=url, hosts=frozenset(hosts))


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


if __name__ == "__main__":
    print(settings_table(), end="")
