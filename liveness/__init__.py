"""Koala Monitor's scoring library: decoding, face boxes, quality, crops, ONNX models,
ensembles and metrics. Plain Python (numpy, Pillow, onnxruntime); no Django imports."""
