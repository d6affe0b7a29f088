"""Pre-labels for CVAT from this service: an auto-annotation function for CVAT's SDK.

    pip install cvat-cli          # on the machine that runs it; the service need not be there
    cvat-cli --server-host https://cvat.lab task auto-annotate TASK_ID \\
        --function-file scripts/cvat_function.py \\
        -p url=str:http://detector:8080 [-p api_key=str:KEY] [-p labels=str:Rotifer,Dead] \\
        [-p tiling=str:auto] [--conf-threshold 0.3] [--allow-unmatched-labels]

Each frame goes to POST /invocations (PNG: the pixels CVAT gives, no second JPEG loss)
and every box comes back as a rectangle of the model's class. CVAT matches the
function's labels to the task's by their exact names, so the labels are the model's
.names, or, with `labels=`, the task's own spelling of them: each name given is matched
to a class as the Label Studio backend matches (the same name, case and outer spaces
aside), and a name no class has stops the run before any frame is sent. Without
`labels=`, a task with fewer labels than the model needs --allow-unmatched-labels.
The threshold is CVAT's --conf-threshold, else the service's default.

Needs only the standard library, Pillow and cvat-sdk (which cvat-cli brings).
"""

from __future__ import annotations

import io
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

import cvat_sdk.auto_annotation as cvataa
import PIL.Image

# urlopen here only ever opens the operator's own service URL, its http(s) scheme checked
# in create() (bandit's B310, ruff's S310).
TIMEOUT_S = 120.0  # one frame, tiled: the service's own deadline is 60 s
BUSY_RETRIES = 5  # a 503 busy names its Retry-After; after this many the frame fails


class ServiceFunction:
    """A CVAT detection function backed by the detection service at `url`."""

    def __init__(self, url: str, api_key: str = "", labels: str = "", tiling: str = "auto"):
        self.url = url.rstrip("/")
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.tiling = tiling
        model_classes = self._get_json("/model")["classes"]
        self.names = _labels_for(model_classes, labels)  # model class -> the name CVAT sees
        self.ids = {name: model_classes.index(name) for name in self.names}
        self.spec = cvataa.DetectionFunctionSpec(
            labels=[cvataa.label_spec(shown, self.ids[name]) for name, shown in self.names.items()]
        )

    def detect(self, context, image: PIL.Image.Image) -> list:
        answer = self._counted(_png(image), context)
        return [
            cvataa.rectangle(self.ids[found["class"]], _corners(found["box"]))
            for found in answer["detections"]
            if found["class"] in self.names
        ]

    def _counted(self, photo: bytes, context) -> dict:
        query = {"filename": context.frame_name, "detections": "true", "return_image": "false", "tiling": self.tiling}
        if context.conf_threshold is not None:
            query["threshold"] = str(context.conf_threshold)
        request = urllib.request.Request(  # noqa: S310  # nosec B310
            f"{self.url}/invocations?{urllib.parse.urlencode(query)}",
            data=photo,
            headers={**self.headers, "Content-Type": "image/png"},
            method="POST",
        )
        for _attempt in range(BUSY_RETRIES):
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310  # nosec B310
                    return json.load(response)
            except urllib.error.HTTPError as error:
                if error.code != 503 or error.headers.get("Retry-After") is None:
                    raise RuntimeError(
                        f"{context.frame_name}: the service said {error.code}: {_message(error)}"
                    ) from None
                time.sleep(min(30.0, float(error.headers["Retry-After"])))
        raise RuntimeError(f"{context.frame_name}: the service stayed busy; run fewer annotations at once")

    def _get_json(self, path: str) -> dict:
        request = urllib.request.Request(f"{self.url}{path}", headers=self.headers)  # noqa: S310  # nosec B310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310  # nosec B310
                return json.load(response)
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{self.url}{path}: {error.code}: {_message(error)}") from None
        except urllib.error.URLError as error:
            raise RuntimeError(f"cannot reach the detection service at {self.url}: {error.reason}") from None


def create(url: str = "", api_key: str = "", labels: str = "", tiling: str = "auto") -> ServiceFunction:
    """What cvat-cli calls with the -p parameters; DETECTOR_URL and DETECTOR_API_KEY
    stand in for url and api_key when they are not given."""
    url = url or os.environ.get("DETECTOR_URL", "http://localhost:8080")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"url={url!r}: the service's http(s) URL, such as http://detector:8080")
    return ServiceFunction(url, api_key or os.environ.get("DETECTOR_API_KEY", ""), labels, tiling)


def _labels_for(model_classes: list[str], labels: str) -> dict[str, str]:
    wanted = [name for name in (part.strip() for part in labels.split(",")) if name]
    if not wanted:
        return {name: name for name in model_classes}
    by_key = {_key(name): name for name in reversed(model_classes)}
    missing = [name for name in wanted if name not in model_classes and _key(name) not in by_key]
    if missing:
        raise ValueError(
            f"labels: {', '.join(missing)} not among the model's classes ({', '.join(model_classes[:10])})"
        )
    return {(name if name in model_classes else by_key[_key(name)]): name for name in wanted}


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _png(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # fast; the service decodes it once
    return buffer.getvalue()


def _corners(box: list[float]) -> list[float]:
    x, y, width, height = box
    return [x, y, x + width, y + height]


def _message(error: urllib.error.HTTPError) -> str:
    try:
        return json.loads(error.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return error.reason
