"""Export a saved SpanModel to ONNX: the token encoder with the span-head boundary projections, and the type encoder.

The rest of the span head (type projections, span vectors, temperature) is small and stays in PyTorch, so the
exported folder is read by `onnx_backend.OnnxBackend` and decoded by the same code as the PyTorch model.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..casing import case_id_tensor
from ..inference import INFERENCE_CONFIG_NAME, TorchBackend, read_run_settings
from ..model import HEAD_WEIGHTS_NAME, SpanModel

MANIFEST_NAME = "export.json"
FORMAT_VERSION = 1
TOKEN_GRAPH_NAME = "token_encoder.onnx"
TOKEN_GRAPH_INT8_NAME = "token_encoder.int8.onnx"
TYPE_GRAPH_NAME = "type_encoder.onnx"
TOKEN_TOKENIZER_DIR, TYPE_TOKENIZER_DIR = "token_tokenizer", "type_tokenizer"
TOKEN_INPUTS = ("input_ids", "attention_mask")  # and the type graph's
CASED_TOKEN_INPUTS = (*TOKEN_INPUTS, "case_ids")  # a model with `case_features`
TOKEN_OUTPUTS = ("start", "end", "span_start", "span_end")  # SpanHead.project_boundaries, each [B, L, D]
QUANTIZATIONS = (None, "int8")
OPSET_VERSION = 18
INT8_PER_CHANNEL = True  # int8 weight scales per output channel (see quantize_int8)


class TokenGraph(nn.Module):
    """input_ids, attention_mask [B, L] -> the boundary projections of every position, four [B, L, D] tensors."""

    def __init__(self, model: SpanModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        states = self.model.token_states(input_ids, attention_mask)  # [B, L, H]
        return self.model.span_head.project_boundaries(states, states)


class CasedTokenGraph(TokenGraph):
    """`TokenGraph` of a model with `case_features`: a third input, case_ids [B, L] (`src.casing`)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, case_ids: torch.Tensor):
        states = self.model.token_states(input_ids, attention_mask, case_ids)  # [B, L, H]
        return self.model.span_head.project_boundaries(states, states)


class TypeGraph(nn.Module):
    """type_input_ids, type_attention_mask [C, T] -> type embeddings [C, H_type], as `SpanModel.encode_types`."""

    def __init__(self, model: SpanModel) -> None:
        super().__init__()
        self.encoder = model.type_encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]


def graph_inputs(tokenizer, texts: list[str], *, with_case: bool = False) -> tuple[torch.Tensor, ...]:
    """input_ids, attention_mask [B, L] of `texts`, and their case_ids [B, L] when `with_case`."""
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    inputs = (enc["input_ids"], enc["attention_mask"])
    if not with_case:
        return inputs
    return (*inputs, case_id_tensor(enc.encodings, texts, list(range(len(texts))), enc["input_ids"].shape[1]))


def _export_graph(
    module: nn.Module, inputs: tuple, path: Path, input_names: list[str], output_names: list[str], max_length: int
) -> None:
    """Export with the torch.export-based exporter; batch and sequence axes of every input stay dynamic."""
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence", max=max_length)
    axes = {0: batch, 1: length}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed" per graph
    with torch.no_grad():
        program = torch.onnx.export(
            module.eval(), inputs, input_names=input_names, output_names=output_names,
            dynamic_shapes={name: axes for name in input_names}, dynamo=True, opset_version=OPSET_VERSION,
            verbose=False,
        )
    program.save(str(path))


def use_plain_attention(encoder: nn.Module) -> None:
    """Trace `encoder` with transformers' "eager" attention (matmul, softmax, matmul) instead of SDPA.

    The same arithmetic, but SDPA's traced form adds NaN guards and mask reshuffles to every layer, which ONNX
    Runtime runs as separate small ops; on the CoNLL-2003 model the plain graph predicted 5-11% faster at batch 8
    and about as fast at batch 1 (RESULTS.md, section 6). Models that cannot switch keep their own attention.
    """
    setter = getattr(encoder, "set_attn_implementation", None)
    if setter is None:
        return
    try:
        setter("eager")
    except (ValueError, ImportError):  # an implementation-locked model: export it as it is
        pass


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation (weights int8, activations quantised on the fly) with onnxruntime's own tool.

    Weights get one scale per output channel (`per_channel`): on the CoNLL-2003 model that keeps test micro-F1
    within 0.0011 of fp32, against 0.0051 with one scale per weight tensor, at the same size and speed
    (RESULTS.md, section 6).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8,
                         per_channel=INT8_PER_CHANNEL)


def export_model(model_dir: str | Path, output_dir: str | Path, *, quantize: str | None = None) -> Path:
    """Write `output_dir`: the ONNX graphs, tokenizers, span-head weights, config.json, inference.json (when the model
    has one) and export.json (what a backend needs: graphs, sizes, window settings). Returns the manifest path.

    The token graph is always written in fp32; `quantize="int8"` adds a dynamically quantised copy and makes it the
    default. The type encoder stays fp32: it runs once per new label, and its vectors are cached.

    `output_dir` must be new or empty; a failed export leaves it untouched (written in a temporary folder first).
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"{output_dir}: output folder exists and is not empty")
    model = SpanModel.from_pretrained(model_dir).eval()
    for encoder in (model.token_encoder, model.type_encoder):
        use_plain_attention(encoder)
    backend = TorchBackend(model)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        # Two texts of different lengths: the example batch has padding, so no branch on "no padding" is traced.
        with_case = model.case_embedding is not None
        token_inputs = graph_inputs(model.token_tokenizer, ["Ada Lovelace was born in London .", "Paris"],
                                       with_case=with_case)
        token_graphs = {"fp32": TOKEN_GRAPH_NAME}
        token_input_names = list(CASED_TOKEN_INPUTS if with_case else TOKEN_INPUTS)
        _export_graph(CasedTokenGraph(model) if with_case else TokenGraph(model), token_inputs,
                      staging / TOKEN_GRAPH_NAME, token_input_names, list(TOKEN_OUTPUTS), backend.max_positions)
        if quantize == "int8":  # the fp32 graph stays beside it, for comparison (OnnxBackend's `precision`)
            quantize_int8(staging / TOKEN_GRAPH_NAME, staging / TOKEN_GRAPH_INT8_NAME)
            token_graphs["int8"] = TOKEN_GRAPH_INT8_NAME
        type_inputs = graph_inputs(model.type_tokenizer, ["person", "geopolitical entity"])
        type_positions = getattr(model.type_encoder.config, "max_position_embeddings", None) or 512
        _export_graph(TypeGraph(model), type_inputs, staging / TYPE_GRAPH_NAME, list(TOKEN_INPUTS),
                      ["type_embeddings"], min(type_positions, model.type_tokenizer.model_max_length))
        model.token_tokenizer.save_pretrained(staging / TOKEN_TOKENIZER_DIR)
        model.type_tokenizer.save_pretrained(staging / TYPE_TOKENIZER_DIR)
        for name in ("config.json", HEAD_WEIGHTS_NAME, INFERENCE_CONFIG_NAME):  # the case embedding is in the graph
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, staging / name)
        if not (staging / HEAD_WEIGHTS_NAME).is_file():  # a legacy model.pt folder: write the head as safetensors
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in model.span_head.state_dict().items()}, staging / HEAD_WEIGHTS_NAME)
        run = read_run_settings(model_dir)
        manifest = {
            "format_version": FORMAT_VERSION,
            "source_model": str(model_dir.resolve()),
            "precision": quantize or "fp32",  # the token graph a backend runs by default
            "token_graphs": token_graphs,
            "type_graph": TYPE_GRAPH_NAME,
            "token_inputs": token_input_names,
            "token_outputs": list(TOKEN_OUTPUTS),
            "opset": OPSET_VERSION,
            "max_positions": backend.max_positions,
            "token_hidden_size": model.token_encoder.config.hidden_size,
            "type_hidden_size": backend.type_hidden_size,
            "max_seq_length": run.get("max_seq_length"),
            "max_type_length": run.get("max_type_length"),
            "context_size": run.get("context_size"),  # document context: predictors read sentence by sentence
            "int8": {"weights": "QInt8", "per_channel": INT8_PER_CHANNEL} if quantize == "int8" else None,
            "attention": {"token_encoder": _attention_of(model.token_encoder),
                          "type_encoder": _attention_of(model.type_encoder)},
            "versions": _versions(),
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if output_dir.exists():
            output_dir.rmdir()  # empty, checked above
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir / MANIFEST_NAME


def _attention_of(encoder: nn.Module) -> str | None:
    """The attention implementation the encoder was traced with ("eager", "sdpa", ...), for the manifest."""
    return getattr(getattr(encoder, "config", None), "_attn_implementation", None)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
