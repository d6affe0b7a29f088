"""A darknet YOLO detection service: photos in, annotated photos and counts out.

The folders are the layers, each importing only those below it:
  model/      the model's files (.cfg, .weights, .names) and where they come from
  vision/     photos and boxes: decode, pre- and post-processing, tiling, drawing
  inference/  the detector over one engine (engines/), the ONNX export, int8
  pipeline/   one photo through the detector to one result, and its renderings
  http/       the Flask service;  cli/  `python -m app count|calibrate|evaluate`
  evaluation/ scoring counts and boxes against labelled photos
Importing this package loads nothing: `python -m app.model.sources` stays light.
"""

import os

__version__ = "0.1.0"  # pyproject.toml's too (a test holds them equal)

# onnxruntime's telemetry off, before anything imports it: a lab's photos service sends
# nothing home, and with $HOME not writable onnxruntime prints a coloured warning of its
# own at import, the one line of the log that is not the service's format.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
