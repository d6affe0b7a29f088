"""Every output of a photo's result, in one place: HTTP and the count command choose
from the same renderers, so a box or a count reads the same wherever it is read.

FORMATS: json (the API's answer), jpeg (the annotated picture; X-Stat carries the
counts), csv, jsonl (one JSON object per photo), coco (a COCO detection dataset).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable

from app.vision.detection import Detection

from .photo import PhotoFailure, PhotoResult

# Each format and its media type; coco is JSON too, so only format=coco asks for it.
MEDIA_TYPES = {
    "json": "application/json",
    "jpeg": "image/jpeg",
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "coco": "application/json",
}
NO_SAMPLE_NOTE = "no sample region found (nothing saturated, or it fills the frame): counted the whole photo"


def detection_json(detection: Detection) -> dict:
    """One box as the API gives it; the JSON lines' `detections` are the same."""
    return {
        "class": detection.class_name,
        "confidence": round(detection.confidence, 4),
        "box": [round(v, 1) for v in detection.box],
    }


def api_json(result: PhotoResult, detections: bool = False) -> dict:
    """POST /invocations' JSON body: `img` when the picture was made, `stat`, then what was asked."""
    body: dict = {}
    if result.picture is not None:
        body["img"] = base64.b64encode(result.picture).decode("ascii")
    body["stat"] = result.counts
    if detections:
        body["detections"] = [detection_json(d) for d in result.detections]
    if result.auto_crop:
        body["crop"] = result.crop.as_list() if result.crop else None
        if result.crop is None:
            body["crop_note"] = NO_SAMPLE_NOTE
    return body


def x_stat(result: PhotoResult) -> str:
    """The counts found, compact, for the X-Stat header of a JPEG answer."""
    return json.dumps(found_counts(result), separators=(",", ":"))


def found_counts(result: PhotoResult) -> dict[str, int]:
    return {name: count for name, count in result.counts.items() if count}


def csv_header(class_names: Iterable[str]) -> list[str]:
    return ["file", "width", "height", "crop", *class_names, "ms", "error"]


def csv_row(outcome: PhotoResult | PhotoFailure, class_names: Iterable[str]) -> list:
    if isinstance(outcome, PhotoFailure):
        return [outcome.filename, "", "", "", *("" for _ in class_names), "", outcome.error]
    crop = " ".join(map(str, outcome.crop.as_list())) if outcome.crop else ""
    counts = [outcome.counts.get(name, "") for name in class_names]
    return [outcome.filename or "", outcome.width, outcome.height, crop, *counts, outcome.counting_ms, ""]


def csv_text(outcomes: Iterable[PhotoResult | PhotoFailure], class_names: Iterable[str]) -> str:
    class_names = tuple(class_names)
    buffer = io.StringIO()
    table = csv.writer(buffer)
    table.writerow(csv_header(class_names))
    table.writerows(csv_row(outcome, class_names) for outcome in outcomes)
    return buffer.getvalue()


def json_line(outcome: PhotoResult | PhotoFailure, detections: bool = False) -> str:
    """One photo as one JSON object on one line (no newline)."""
    if isinstance(outcome, PhotoFailure):
        row: dict = {"file": outcome.filename, "width": None, "height": None, "crop": None, "counts": {}}
        return json.dumps({**row, "ms": None, "error": outcome.error})
    row = {
        "file": outcome.filename,
        "width": outcome.width,
        "height": outcome.height,
        "crop": outcome.crop.as_list() if outcome.crop else None,
        "counts": outcome.counts,
        "ms": outcome.counting_ms,
        "error": "",
    }
    if detections:
        row["detections"] = [detection_json(d) for d in outcome.detections]
    return json.dumps(row)


def coco_document(results: Iterable[PhotoResult], class_names: Iterable[str]) -> dict:
    """A COCO detection dataset (images, categories, annotations with their score), as
    CVAT, FiftyOne and pycocotools read it. Category ids are the .names line numbers
    from 1 (COCO keeps 0 for none); images are numbered in order from 1."""
    images, annotations = [], []
    for image_id, result in enumerate(results, start=1):
        images.append(
            {"id": image_id, "file_name": result.filename or "", "width": result.width, "height": result.height}
        )
        for detection in result.detections:
            box = [round(v, 1) for v in detection.box]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": detection.class_id + 1,
                    "bbox": box,
                    "area": round(box[2] * box[3], 1),
                    "iscrowd": 0,
                    "score": round(detection.confidence, 4),
                }
            )
    categories = [{"id": index + 1, "name": name} for index, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}
