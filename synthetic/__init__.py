"""Made-up inputs the tests and the benchmarks share, made on the fly (none is
committed): hostile photos, a framed drop, labelled photos whose truth is known, and
the YOLO architectures with random weights."""
