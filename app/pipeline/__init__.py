"""One photo through the detector to one result (photo.py), and that result rendered
for every output the service has (render.py): the API's JSON, X-Stat, CSV, long CSV,
JSON lines, COCO. The HTTP routes, `python -m app count`, evaluate and the benchmark all use it."""

from .photo import PhotoFailure, PhotoLimits, PhotoResult, process_photo

__all__ = ["PhotoFailure", "PhotoLimits", "PhotoResult", "process_photo"]
