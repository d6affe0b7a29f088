"""int8 quantization of the ONNX export, served only where it keeps the counts:
`python -m app calibrate` quantizes and writes an agreement report against fp32,
and PRECISION=int8 starts only on a model whose report passes."""

# The default gate (INT8_MIN_AGREEMENT): share of fp32 boxes an int8 box must match.
# Here and not in report.py: settings reads it, and this package's import loads nothing.
DEFAULT_INT8_MIN_AGREEMENT = 0.98
