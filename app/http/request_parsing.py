"""Turning the three request forms of POST /invocations into one typed request.

JSON with a base64 image, multipart with an `image` file, or the raw image bytes
(SageMaker style). Parameters come from query, form fields or JSON keys (the body
wins); unknown ones are ignored, invalid values are a 400 that names the parameter.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from app.vision.detection import DEFAULT_NMS, DEFAULT_THRESHOLD, DetectOptions
from app.vision.tiling import TILING_MODES

from .errors import BadRequest, UnsupportedMediaType

RAW_IMAGE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/tiff", "image/webp", "application/x-image"})
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class InvocationRequest:
    image: bytes
    filename: str | None
    options: DetectOptions
    return_image: bool = True
    include_detections: bool = False
    auto_crop: bool = False  # count only the sample (app/vision/autocrop.py)


def parse_invocation(request: Request, class_names: tuple[str, ...]) -> InvocationRequest:
    mimetype = request.mimetype
    params: dict[str, Any] = request.args.to_dict()
    if mimetype == "application/json":
        try:
            body = json.loads(request.get_data())
        except (ValueError, RecursionError):  # RecursionError: [[[[... nested too deep
            body = None
        if not isinstance(body, dict):
            raise BadRequest("the body is not a JSON object", code="invalid_json")
        params.update(body)
        image = decode_base64_image(body.get("image"))
    elif mimetype == "multipart/form-data":
        fields, files = parse_multipart(request)
        params.update(fields)
        if "image" not in files:
            raise BadRequest("multipart form has no file field 'image'", code="missing_image")
        filename, image = files["image"]
        params.setdefault("filename", filename)
    elif mimetype in RAW_IMAGE_TYPES:
        image = request.get_data()
    else:
        raise UnsupportedMediaType(
            f"Content-Type {mimetype or '(none)'} is not accepted; send application/json, "
            f"multipart/form-data or the image bytes as one of {', '.join(sorted(RAW_IMAGE_TYPES))}"
        )
    return InvocationRequest(
        image=image,
        filename=_optional_text(params, "filename"),
        options=parse_options(params, class_names),
        return_image=_boolean(params, "return_image", True),
        include_detections=_boolean(params, "detections", False),
        auto_crop=_boolean(params, "auto_crop", False),
    )


def parse_upload(request: Request, class_names: tuple[str, ...]) -> InvocationRequest:
    """The original service's POST /upload, kept for its front end: multipart, file
    field `file`, form field `auto_crop` 0 or 1 (missing: 0); nothing else is read."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType(f"/upload takes multipart/form-data, not {request.mimetype or '(none)'}")
    fields, files = parse_multipart(request)
    if "file" not in files:
        raise BadRequest("multipart form has no file field 'file'", code="missing_image")
    filename, image = files["file"]
    auto_crop = fields.get("auto_crop", "0").strip()
    if auto_crop not in ("0", "1"):
        raise BadRequest(f"'auto_crop' must be 0 or 1, got {auto_crop!r}", code="invalid_parameter")
    return InvocationRequest(
        image=image, filename=filename, options=parse_options({}, class_names), auto_crop=auto_crop == "1"
    )


class _TolerantMultipartDecoder(MultipartDecoder):
    """Werkzeug's decoder, except for part headers that are not UTF-8.

    Werkzeug decodes each part's headers as strict UTF-8; a `filename="café.jpg"` sent
    in ISO-8859-1 (older clients, Windows tools) raises inside its form parser, which
    then silently drops the whole form: the photo is there, the answer says it is not.
    Header bytes that are not UTF-8 are read as Latin-1 (what HTTP header bytes have
    always meant), so the name survives, at worst garbled, and the photo is counted."""

    def _parse_headers(self, data: bytes | bytearray):
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            data = bytes(data).decode("latin-1").encode("utf-8")
        return super()._parse_headers(data)


_part_charset = MultiPartParser().get_part_charset  # the text fields' charset, as werkzeug reads it


def parse_multipart(request: Request) -> tuple[dict[str, str], dict[str, tuple[str | None, bytes]]]:
    """The text fields and the files (filename, bytes) of a multipart/form-data body,
    the first of each name; werkzeug's limits on form memory and part count hold."""
    boundary = request.mimetype_params.get("boundary", "")
    if not boundary:
        raise BadRequest("the multipart Content-Type has no boundary", code="missing_image")
    decoder = _TolerantMultipartDecoder(
        boundary.encode("latin-1"),  # WSGI hands header values over as Latin-1
        max_form_memory_size=request.max_form_memory_size,
        max_parts=request.max_form_parts,
    )
    fields: dict[str, str] = {}
    files: dict[str, tuple[str | None, bytes]] = {}
    part: Field | File | None = None
    chunks: list[bytes] = []
    try:
        while True:
            data = request.stream.read(64 * 1024)
            decoder.receive_data(data or None)  # None: the body ended
            event = decoder.next_event()
            while not isinstance(event, (Epilogue, NeedData)):
                if isinstance(event, (Field, File)):
                    part, chunks = event, []
                elif isinstance(event, Data) and part is not None:
                    chunks.append(event.data)
                    _check_field_size(part, chunks, request.max_form_memory_size)
                    if not event.more_data:
                        _keep_part(part, b"".join(chunks), fields, files)
                event = decoder.next_event()
            if not data:
                return fields, files
    except ValueError:  # werkzeug's word for a malformed body
        raise BadRequest(
            "the multipart form cannot be read (malformed or cut short), so it holds no photo",
            code="missing_image",
        ) from None


def _check_field_size(part: Field | File, chunks: list[bytes], limit: int | None) -> None:
    # A text field is held in memory: werkzeug's MAX_FORM_MEMORY_SIZE bounds it, as its own parser does.
    if isinstance(part, Field) and limit is not None and sum(map(len, chunks)) > limit:
        raise RequestEntityTooLarge()


def _keep_part(part: Field | File, body: bytes, fields: dict, files: dict) -> None:
    if isinstance(part, File):
        files.setdefault(part.name, (part.filename, body))
    else:
        fields.setdefault(part.name, body.decode(_part_charset(part.headers), "replace"))


def decode_base64_image(value: Any) -> bytes:
    if value is None:
        raise BadRequest("JSON body has no 'image' field (base64 of the photo)", code="missing_image")
    if not isinstance(value, str):
        raise BadRequest("'image' must be a base64 string", code="invalid_base64")
    if value.startswith("data:"):
        header, _, value = value.partition(",")
        if not header.endswith(";base64"):
            raise BadRequest("a data URL must be base64 (data:image/jpeg;base64,...)", code="invalid_base64")
    compact = "".join(value.split())  # MIME base64 wraps lines
    compact += "=" * (-len(compact) % 4)  # clients often drop the padding
    altchars = b"-_" if ("-" in compact or "_" in compact) else None  # URL-safe alphabet
    try:
        return base64.b64decode(compact, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("'image' is not valid base64", code="invalid_base64") from None


def parse_options(params: Mapping[str, Any], class_names: tuple[str, ...]) -> DetectOptions:
    return DetectOptions(
        threshold=_fraction(params, "threshold", DEFAULT_THRESHOLD),
        nms=_fraction(params, "nms", DEFAULT_NMS),
        classes=_class_ids(params.get("classes"), class_names),
        tiling=_choice(params, "tiling", TILING_MODES),
    )


def _fraction(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        if isinstance(value, bool):  # JSON true is not a number here
            raise ValueError
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: 10**400 as a JSON number
        raise BadRequest(
            f"'{name}' must be a number between 0 and 1, got {value!r}", code="invalid_parameter"
        ) from None
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise BadRequest(f"'{name}' must be between 0 and 1, got {value!r}", code="invalid_parameter")
    return number


def _choice(params: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = params.get(name)
    if value is None or value == "":
        return allowed[0]
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise BadRequest(f"'{name}' must be one of {', '.join(allowed)}, got {value!r}", code="invalid_parameter")
    return value.strip().lower()


def _boolean(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise BadRequest(f"'{name}' must be true or false, got {value!r}", code="invalid_parameter")


def _class_ids(value: Any, class_names: tuple[str, ...]) -> frozenset[int] | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        wanted = [name.strip() for name in value.split(",") if name.strip()]
    elif isinstance(value, list) and all(isinstance(name, str) for name in value):
        wanted = [name.strip() for name in value]
    else:
        raise BadRequest(
            "'classes' must be a list of class names or a comma-separated string", code="invalid_parameter"
        )
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in wanted if name not in index]
    if unknown:
        raise BadRequest(
            f"unknown class {', '.join(map(repr, unknown))} in 'classes'; the model knows {_preview(class_names)}",
            code="invalid_parameter",
        )
    return frozenset(index[name] for name in wanted) or None


def _optional_text(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    return value if isinstance(value, str) and value else None


def _preview(names: tuple[str, ...], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
