"""Every output of a photo's result, in one place: HTTP and the count command choose
from the same renderers, so a box or a count reads the same wherever it is read.

One photo's answer: the API's JSON (`api_json`), the annotated picture with the counts
in X-Stat (`x_stat`). Documents of one photo or many, the same over HTTP and from the
count command (DOCUMENTS): CSV (a row per photo), long CSV (a row per photo and class),
JSON lines, a COCO detection dataset. A new format is a Document class here and its
DOCUMENTS entry.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Iterable, Sequence

from app.vision.detection import Detection

from .photo import PhotoFailure, PhotoResult

NO_SAMPLE_NOTE = "no sample region found (nothing saturated, or it fills the frame): counted the whole photo"


def detection_json(detection: Detection) -> dict:
    """One box as the API gives it; the JSON lines' `detections` are the same."""
    return {
        "class": detection.class_name,
        "confidence": round(detection.confidence, 4),
        "box": [round(v, 1) for v in detection.box],
    }


def api_json(result: PhotoResult, detections: bool = False, tiles: bool = True) -> dict:
    """POST /invocations' JSON body: `img` when the picture was made, `stat`, then what was
    asked, and the tiles run and skipped where the photo was tiled (tiles=False: the
    original service's /upload answer)."""
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
    if tiles and (result.tiles.run or result.tiles.skipped):
        body["tiles"] = result.tiles.as_dict()
    return body


def x_stat(result: PhotoResult) -> str:
    """The counts found, compact, for the X-Stat header of a JPEG answer."""
    return json.dumps(found_counts(result), separators=(",", ":"))


def found_counts(result: PhotoResult) -> dict[str, int]:
    return {name: count for name, count in result.counts.items() if count}


class Document:
    """An output of one photo or many, written as the photos come: head, a part per
    photo, tail. detections: the boxes too, where the format has them only on request.
    model: which model counted (Detector.model_id), a column of every row; "" unknown."""

    media_type: str
    # The Accept header may ask for it by its media type; False where an earlier format
    # has the same one (format= asks for it by name).
    by_accept: bool = True

    def __init__(self, class_names: Sequence[str], detections: bool = False, model: str = ""):
        self.class_names = tuple(class_names)
        self.detections = detections
        self.model = model

    def head(self) -> str:
        return ""

    def photo(self, outcome: PhotoResult | PhotoFailure) -> str:
        raise NotImplementedError

    def tail(self) -> str:
        return ""

    def whole(self, outcomes: Iterable[PhotoResult | PhotoFailure]) -> str:
        return self.head() + "".join(self.photo(outcome) for outcome in outcomes) + self.tail()


class CsvDocument(Document):
    """A header, then a row per photo: file, date, width, height, crop, a column per class,
    total, threshold, model, ms, tiles_run, tiles_skipped (0, 0: not tiled), error. A failed
    photo: its file, the model and the error. static/downloads.js writes the same columns."""

    media_type = "text/csv"

    def head(self) -> str:
        return _csv_line(
            [
                *("file", "date", "width", "height", "crop"),
                *self.class_names,
                *("total", "threshold", "model", "ms", "tiles_run", "tiles_skipped", "error"),
            ]
        )

    def photo(self, outcome: PhotoResult | PhotoFailure) -> str:
        if isinstance(outcome, PhotoFailure):
            blanks = [""] * (len(self.class_names) + 6)  # date, width, height, crop, classes, total, threshold
            return _csv_line([outcome.filename, *blanks, self.model, "", "", "", outcome.error])
        crop = " ".join(map(str, outcome.crop.as_list())) if outcome.crop else ""
        counts = [outcome.counts.get(name, "") for name in self.class_names]
        return _csv_line(
            [
                outcome.filename or "",
                date_text(outcome),
                outcome.width,
                outcome.height,
                crop,
                *counts,
                outcome.total,
                _number(outcome.threshold),
                self.model,
                outcome.counting_ms,
                outcome.tiles.run,
                outcome.tiles.skipped,
                "",
            ]
        )


class LongCsvDocument(Document):
    """The counts as a long table, the shape a spreadsheet's pivot table reads: a row per
    photo and class, zeros included (a class absent from a photo is a count of 0 in an
    average or a chart, not a gap): file, date, class, count, threshold, model, error. A
    failed photo is one row with its error and no class."""

    media_type = "text/csv"
    by_accept = False

    def head(self) -> str:
        return _csv_line(["file", "date", "class", "count", "threshold", "model", "error"])

    def photo(self, outcome: PhotoResult | PhotoFailure) -> str:
        if isinstance(outcome, PhotoFailure):
            return _csv_line([outcome.filename, "", "", "", "", self.model, outcome.error])
        file, date, threshold = outcome.filename or "", date_text(outcome), _number(outcome.threshold)
        return "".join(
            _csv_line([file, date, name, outcome.counts.get(name, 0), threshold, self.model, ""])
            for name in self.class_names
        )


class JsonLinesDocument(Document):
    """One JSON object per photo and line; `detections` are the API's, field for field."""

    media_type = "application/x-ndjson"

    def photo(self, outcome: PhotoResult | PhotoFailure) -> str:
        if isinstance(outcome, PhotoFailure):
            row: dict = {"file": outcome.filename, "date": None, "width": None, "height": None, "crop": None}
            row |= {"counts": {}, "total": None, "threshold": None, "model": self.model}
            return json.dumps({**row, "ms": None, "tiles": None, "error": outcome.error}) + "\n"
        row = {
            "file": outcome.filename,
            "date": date_text(outcome) or None,
            "width": outcome.width,
            "height": outcome.height,
            "crop": outcome.crop.as_list() if outcome.crop else None,
            "counts": outcome.counts,
            "total": outcome.total,
            "threshold": outcome.threshold,
            "model": self.model,
            "ms": outcome.counting_ms,
            "tiles": outcome.tiles.as_dict(),
            "error": "",
        }
        if self.detections:
            row["detections"] = [detection_json(d) for d in outcome.detections]
        return json.dumps(row) + "\n"


class CocoDocument(Document):
    """A COCO detection dataset (images, categories, annotations with their score), as
    CVAT, FiftyOne and pycocotools read it, written whole at the end. Category ids are
    the .names line numbers from 1 (COCO keeps 0 for none); images are numbered in
    order from 1; a photo that failed is left out."""

    media_type = "application/json"
    by_accept = False

    def __init__(self, class_names: Sequence[str], detections: bool = True, model: str = ""):
        super().__init__(class_names, detections, model)
        self._images: list[dict] = []
        self._annotations: list[dict] = []

    def photo(self, outcome: PhotoResult | PhotoFailure) -> str:
        if isinstance(outcome, PhotoResult):
            image_id = len(self._images) + 1
            self._images.append(
                {"id": image_id, "file_name": outcome.filename or "", "width": outcome.width, "height": outcome.height}
            )
            self._annotations += [
                _coco_annotation(d, image_id, len(self._annotations) + i)
                for i, d in enumerate(outcome.detections, start=1)
            ]
        return ""

    def tail(self) -> str:
        categories = [{"id": index + 1, "name": name} for index, name in enumerate(self.class_names)]
        return json.dumps({"images": self._images, "annotations": self._annotations, "categories": categories}) + "\n"


# The documents by format name; COCO is JSON too, so only format=coco asks for it.
DOCUMENTS: dict[str, type[Document]] = {
    "csv": CsvDocument,
    "jsonl": JsonLinesDocument,
    "coco": CocoDocument,
    "long": LongCsvDocument,
}
# Every answer format of the API and its media type.
MEDIA_TYPES = {
    "json": "application/json",
    "jpeg": "image/jpeg",
    **{name: document.media_type for name, document in DOCUMENTS.items()},
}
# What an Accept header can ask for, JSON first (format= asks for any).
ACCEPTED_FORMATS = {
    "application/json": "json",
    "image/jpeg": "jpeg",
    **{document.media_type: name for name, document in DOCUMENTS.items() if document.by_accept},
}


def date_text(result: PhotoResult) -> str:
    """When the photo was taken, ISO 8601 to the second (the camera's local time); "" unknown."""
    return result.taken.isoformat(timespec="seconds") if result.taken else ""


def _coco_annotation(detection: Detection, image_id: int, annotation_id: int) -> dict:
    box = [round(v, 1) for v in detection.box]
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": detection.class_id + 1,
        "bbox": box,
        "area": round(box[2] * box[3], 1),
        "iscrowd": 0,
        "score": round(detection.confidence, 4),
    }


def _number(value: float | None) -> str:
    return "" if value is None else str(value)


# A cell a spreadsheet would read as a formula (a file named `=HYPERLINK(...)`, `+1-2`,
# `@SUM`): written with a leading ' so it shows as the text it is (OWASP's CSV advice).
# Not only at the start of a field: where the decimal mark is a comma (Excel in German,
# French, ...) `;` separates cells, some importers split on tab or ignore quotes, so
# `x;=1+2;.jpg` would be three cells there, the second a formula. Each part after `,` or
# `;` is guarded as a cell of its own (tab goes with the controls below); static/csv.js
# does the same for the page's CSV.
FORMULA_STARTS = ("=", "+", "-", "@")
CELL_SEPARATORS = re.compile(r"([,;])")
# Controls (C0 with tab, CR and LF, DEL, C1) and the bidi embeddings, overrides and
# isolates, which make a name show as another (`photo\u202egpj.exe` shows `photoexe.jpg`):
# removed from every text cell, so a cell shows what it holds and stays one line.
UNSHOWN = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
PLAIN_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def spreadsheet_safe(cell: object) -> object:
    if not isinstance(cell, str):
        return cell
    return "".join(_guarded(part) for part in CELL_SEPARATORS.split(UNSHOWN.sub("", cell)))


def _guarded(part: str) -> str:
    if not part.lstrip().startswith(FORMULA_STARTS) or PLAIN_NUMBER.fullmatch(part):
        return part  # a plain number, such as -0.5, is read as the number it is
    return "'" + part


def _csv_line(cells: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([spreadsheet_safe(cell) for cell in cells])
    return buffer.getvalue()
