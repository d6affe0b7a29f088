"""Running the network: the Detector (one engine, its lock, tiling and batching),
the engines behind one registry, the ONNX export and int8."""
