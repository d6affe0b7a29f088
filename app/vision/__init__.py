"""Photos and boxes, with no engine and no Flask: decoding, the network input,
turning raw candidates into detections, tiling, drawing."""
