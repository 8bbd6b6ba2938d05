"""Dev-only training code for the demo liveness models (needs torch: see requirements.txt).

Nothing outside this package imports it; the shipped models in demo/models/ run with
onnxruntime only.
"""
