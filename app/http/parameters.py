"""The request parameters of POST /invocations, each written once: name, kind, default
and what it does. request_parsing.py reads requests with this table and openapi.py
documents it, so what is accepted and what is documented cannot drift apart.

A kind knows how to read a value (or say, in a 400, why it cannot) and its schema, both
in a JSON body and as text (a query string or a form field, where everything is text).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.pipeline.render import MEDIA_TYPES
from app.vision.detection import DEFAULT_NMS, DEFAULT_THRESHOLD
from app.vision.tiling import TILING_MODES

from .errors import BadRequest

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


SHOWN_CHARS = 60  # of a bad value in its error: enough to recognise it
SHOWN_NAMES = 5  # unknown class names named in an error; the rest are counted


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_parameter")


def _shown(value: Any) -> str:
    """A client's value as an error names it: its repr, cut short (never echoed whole)."""
    if isinstance(value, (list, dict)) and len(value) > SHOWN_NAMES:
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


class Kind(ABC):
    @abstractmethod
    def read(self, name: str, value: Any, class_names: tuple[str, ...]) -> Any:
        """The value as the service uses it; a 400 invalid_parameter naming `name` if it cannot be."""

    @abstractmethod
    def schema(self) -> dict:
        """Its JSON schema as a JSON body key."""

    def text_schema(self) -> dict:
        return self.schema()

    def as_text(self, value: Any) -> Any:
        return value


class Fraction(Kind):
    """A number from 0 to 1."""

    def read(self, name: str, value: Any, class_names: tuple[str, ...]) -> float:
        try:
            if isinstance(value, bool):  # JSON true is not a number here
                raise ValueError
            number = float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: 10**400 as a JSON number
            raise _invalid(f"'{name}' must be a number between 0 and 1, got {_shown(value)}") from None
        if not (math.isfinite(number) and 0.0 <= number <= 1.0):
            raise _invalid(f"'{name}' must be between 0 and 1, got {_shown(value)}")
        return number

    def schema(self) -> dict:
        return {"type": "number", "minimum": 0, "maximum": 1}


class Boolean(Kind):
    """JSON true or false, or one of the words (any case) in text."""

    def read(self, name: str, value: Any, class_names: tuple[str, ...]) -> bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise _invalid(f"'{name}' must be true or false, got {_shown(value)}")

    def schema(self) -> dict:
        return {"type": "boolean"}

    def text_schema(self) -> dict:
        return {"type": "string", "enum": [*TRUE_WORDS, *FALSE_WORDS]}

    def as_text(self, value: bool) -> str:
        return TRUE_WORDS[0] if value else FALSE_WORDS[0]


@dataclass(frozen=True)
class Choice(Kind):
    """One of a few words, any case; read as lower case."""

    words: tuple[str, ...]

    def read(self, name: str, value: Any, class_names: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value.strip().lower() not in self.words:
            raise _invalid(f"'{name}' must be one of {', '.join(self.words)}, got {_shown(value)}")
        return value.strip().lower()

    def schema(self) -> dict:
        return {"type": "string", "enum": list(self.words)}


class ClassNames(Kind):
    """Names of the model's classes: a JSON list, or names separated by commas; read as
    the set of their indexes, None (keep all) when empty."""

    def read(self, name: str, value: Any, class_names: tuple[str, ...]) -> frozenset[int] | None:
        if value == []:
            return None
        if isinstance(value, str):
            wanted = [word.strip() for word in value.split(",") if word.strip()]
        elif isinstance(value, list) and all(isinstance(word, str) for word in value):
            wanted = [word.strip() for word in value]
        else:
            raise _invalid(f"'{name}' must be a list of class names or a comma-separated string")
        index = {class_name: i for i, class_name in enumerate(class_names)}
        unknown = [word for word in wanted if word not in index]
        if unknown:
            named = ", ".join(map(_shown, unknown[:SHOWN_NAMES]))
            more = f" and {len(unknown) - SHOWN_NAMES} more" if len(unknown) > SHOWN_NAMES else ""
            raise _invalid(f"unknown class {named}{more} in '{name}'; the model knows {_preview(class_names)}")
        return frozenset(index[word] for word in wanted) or None

    def schema(self) -> dict:
        return {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}

    def text_schema(self) -> dict:
        return {"type": "string"}


class LocalTime(Kind):
    """A date and time in ISO 8601 to the second, local (or with its offset): when a
    photo was taken, where the photo itself does not say (no EXIF date)."""

    PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{3})?(Z|[+-]\d{2}:\d{2})?$"

    def read(self, name: str, value: Any, class_names: tuple[str, ...]) -> datetime:
        text = value.strip() if isinstance(value, str) else ""
        try:
            if not re.fullmatch(self.PATTERN, text):
                raise ValueError
            # Python 3.10's fromisoformat takes no Z; to the second, as EXIF dates are.
            return datetime.fromisoformat(text.removesuffix("Z") + ("+00:00" if text.endswith("Z") else "")).replace(
                microsecond=0
            )
        except ValueError:
            raise _invalid(
                f"'{name}' must be a date and time as 2024-05-01T09:30:00 (local, or with an offset such as "
                f"+02:00), got {_shown(value)}"
            ) from None

    def schema(self) -> dict:
        # Empty is allowed as for every parameter: not given.
        return {"type": "string", "pattern": f"^(?:{self.PATTERN[1:-1]})?$"}


class Text(Kind):
    """Free text; anything else is ignored, as it only labels the request."""

    def read(self, name: str, value: Any, class_names: tuple[str, ...]) -> str | None:
        return value if isinstance(value, str) else None

    def schema(self) -> dict:
        return {"type": "string"}


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: Kind
    default: Any  # None: not given (the reader decides what that means)
    description: str

    def read(self, params: Mapping[str, Any], class_names: tuple[str, ...]) -> Any:
        value = params.get(self.name)
        if value is None or value == "":
            return self.default
        return self.kind.read(self.name, value, class_names)

    def schema(self) -> dict:
        """Its schema as a JSON body key."""
        return self._described(self.kind.schema(), self.default)

    def text_schema(self) -> dict:
        """Its schema as a query parameter or form field."""
        default = None if self.default is None else self.kind.as_text(self.default)
        return self._described(self.kind.text_schema(), default)

    def _described(self, schema: dict, default: Any) -> dict:
        return {**schema, **({} if default is None else {"default": default}), "description": self.description}


PARAMETERS = (
    Parameter(
        "threshold",
        Fraction(),
        DEFAULT_THRESHOLD,
        "Keep a box when objectness x class probability is above this; without it, the model's own "
        "(DEFAULT_THRESHOLD, else the one evaluate --save-threshold saved; GET /model says which), else 0.25",
    ),
    Parameter("nms", Fraction(), DEFAULT_NMS, "IoU above which a box of the same class is suppressed"),
    Parameter(
        "classes", ClassNames(), None, "Class names to keep (others count 0): a list, or names separated by commas"
    ),
    Parameter(
        "tiling",
        Choice(TILING_MODES),
        TILING_MODES[0],
        "Tiles at full resolution for small objects; auto: photos over twice the network input",
    ),
    Parameter("return_image", Boolean(), True, "Include the annotated JPEG as `img`"),
    Parameter("detections", Boolean(), False, "Include the list of boxes"),
    Parameter(
        "auto_crop",
        Boolean(),
        False,
        "Count only the sample, the largest saturated region (a stained drop); the answer has `crop`",
    ),
    Parameter(
        "format",
        Choice(tuple(MEDIA_TYPES)),
        None,  # the Accept header decides
        "The answer's format: `json` the API's JSON body; `jpeg` the annotated picture itself, the counts in "
        "the X-Stat header; `csv` the counts as CSV, the columns of `python -m app count`; `jsonl` one JSON "
        "line per photo, as `python -m app count --format jsonl`; `coco` a COCO detection dataset (images, "
        "categories, annotations with their score); `long` CSV of one row per class (file, date, class, count), for "
        "pivot tables. Without it the Accept header chooses: application/json, "
        "image/jpeg, text/csv or application/x-ndjson",
    ),
    Parameter("filename", Text(), None, "Echoed into the log"),
    Parameter(
        "date",
        LocalTime(),
        None,
        "When the photo was taken, for a photo without an EXIF date (most microscope photos): the file's "
        "modification time, as `python -m app count` takes it (the page sends it). The `date` of the CSV, long CSV "
        "and JSON lines answers; the photo's own EXIF date wins over it",
    ),
)


def read_parameters(
    params: Mapping[str, Any], class_names: tuple[str, ...], defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every parameter of the table by name, its default where not given (`defaults`:
    the service's own, such as the model's threshold, over the table's); names not in
    the table are ignored, an invalid value is a 400 invalid_parameter naming it."""
    values = {parameter.name: parameter.read(params, class_names) for parameter in PARAMETERS}
    for name, value in (defaults or {}).items():
        if params.get(name) in (None, ""):
            values[name] = value
    return values


def _preview(names: tuple[str, ...], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
