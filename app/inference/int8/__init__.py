"""int8 quantization of the ONNX export, served only where it keeps the counts:
`python -m app calibrate` quantizes and writes an agreement report against fp32,
and PRECISION=int8 starts only on a model whose report passes."""
