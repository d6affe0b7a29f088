"""Turning the three request forms of POST /invocations into one typed request.

JSON with a base64 image, multipart with an `image` file, or the raw image bytes
(SageMaker style). Parameters come from query, form fields or JSON keys (the body
wins) and are read by the table in parameters.py.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from app.vision.detection import DetectOptions

from .errors import BadRequest, UnsupportedMediaType
from .parameters import read_parameters

# Values a JSON body may hold (an image, a filename, a few parameters, a `classes` list):
# Python holds ~60 bytes for each 4-byte `"a",` of JSON, so a 45 MB list took the
# worker to 3 GB. Counted on the raw bytes first (C speed; base64 has none of these),
# the parsed body stays within its own size plus this many small values.
JSON_MAX_VALUES = 20_000
JSON_SEPARATORS = (b",", b"[", b"{")
RAW_IMAGE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/tiff", "image/webp", "application/x-image"})


@dataclass(frozen=True)
class InvocationRequest:
    image: bytes
    filename: str | None
    options: DetectOptions
    return_image: bool
    include_detections: bool
    auto_crop: bool  # count only the sample (app/vision/autocrop.py)
    format: str | None  # one of render.MEDIA_TYPES; None: the Accept header decides
    date: datetime | None = None  # when the photo was taken, where it has no EXIF date


def parse_invocation(
    request: Request, class_names: tuple[str, ...], defaults: Mapping[str, Any] | None = None
) -> InvocationRequest:
    mimetype = request.mimetype
    params: dict[str, Any] = request.args.to_dict()
    if mimetype == "application/json":
        body = json_object(request.get_data(), JSON_MAX_VALUES, "a request is an image and a few parameters")
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
    return _invocation(image, read_parameters(params, class_names, defaults))


def json_object(data: bytes, max_values: int, what: str) -> dict[str, Any]:
    """A JSON body that must be an object, its values counted on the raw bytes before
    it is parsed (the one bound of every JSON body: /invocations, Label Studio's).
    what: what a request holds, for the message of one that holds too much."""
    if sum(data.count(separator) for separator in JSON_SEPARATORS) > max_values:
        raise BadRequest(f"the JSON body holds more than {max_values} values; {what}", code="invalid_json")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: [[[[... nested too deep
        body = None
    if not isinstance(body, dict):
        raise BadRequest("the body is not a JSON object", code="invalid_json")
    return body


def parse_upload(
    request: Request, class_names: tuple[str, ...], defaults: Mapping[str, Any] | None = None
) -> InvocationRequest:
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
        raise BadRequest(f"'auto_crop' must be 0 or 1, got {auto_crop[:20]!r}", code="invalid_parameter")
    values = read_parameters({}, class_names, defaults)
    return _invocation(image, {**values, "filename": filename, "auto_crop": auto_crop == "1"})


def _invocation(image: bytes, values: dict[str, Any]) -> InvocationRequest:
    """The request from the values read_parameters gives."""
    return InvocationRequest(
        image=image,
        filename=values["filename"],
        options=DetectOptions(
            threshold=values["threshold"], nms=values["nms"], classes=values["classes"], tiling=values["tiling"]
        ),
        return_image=values["return_image"],
        include_detections=values["detections"],
        auto_crop=values["auto_crop"],
        format=values["format"],
        date=values["date"],
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
