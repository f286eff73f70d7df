"""The numeric precisions a model can run in, per backend; a leaf module (no torch import) for the command lines.

PyTorch casts the weights (`SpanPredictor.from_pretrained(precision=...)`): bf16 suits GPUs and CPUs with AMX or
AVX512-BF16, fp16 GPUs. ONNX Runtime picks an exported token graph: fp32, or int8 when exported with it.
"""

from __future__ import annotations

BACKEND_PRECISIONS = {"torch": ("fp32", "bf16", "fp16"), "onnx": ("fp32", "int8")}
ALL_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
_TORCH_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def precision_mismatch(backend: str, precision: str | None) -> str | None:
    """The usage error of asking `backend` for `precision` (None when it runs it, or when none was asked)."""
    if precision is None or precision in BACKEND_PRECISIONS[backend]:
        return None
    return (f"--precision {precision} does not go with --backend {backend} "
            f"(choose from {', '.join(BACKEND_PRECISIONS[backend])})")


def torch_dtype(precision: str):
    """The torch dtype of a PyTorch precision name; ValueError naming the choices otherwise."""
    import torch

    if precision not in _TORCH_DTYPE_NAMES:
        raise ValueError(f"precision must be one of {sorted(_TORCH_DTYPE_NAMES)} for a PyTorch model, "
                         f"got {precision!r}")
    return getattr(torch, _TORCH_DTYPE_NAMES[precision])


def torch_precision_name(dtype) -> str:
    """"fp32", "bf16" or "fp16" for a torch dtype (its own name for any other)."""
    name = str(dtype).removeprefix("torch.")
    return next((short for short, full in _TORCH_DTYPE_NAMES.items() if full == name), name)
