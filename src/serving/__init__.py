"""Putting a trained model to work: ONNX export and ONNX Runtime inference, an HTTP server, a spaCy component.

Serving code builds on `src.inference` (windows, decoding, offsets), never the reverse.
"""

# The precisions each backend runs (predict.py and serve.py --precision): the PyTorch weights' dtype
# (`src.inference.TORCH_PRECISIONS`), or an exported token graph (`onnx_export.QUANTIZATIONS`).
BACKEND_PRECISIONS = {"torch": ("fp32", "bf16", "fp16"), "onnx": ("fp32", "int8")}
ALL_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
