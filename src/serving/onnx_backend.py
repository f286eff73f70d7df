"""ONNX Runtime `ScoringBackend`: exported encoders produce the tensors the PyTorch model produces.

The span head's small remainder (type projections, span vectors, temperature) runs in PyTorch from the exported
span-head weights, so thresholds, candidates, overlaps, windows and offsets are the predictor's unchanged code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from ..config import SpanModelConfig
from ..inference import SpanPredictor, document_defaults, load_inference_config
from ..model import HEAD_WEIGHTS_NAME, SpanHead, SpanScores, TokenVectors
from .onnx_export import FORMAT_VERSION, MANIFEST_NAME, TOKEN_OUTPUTS, TOKEN_TOKENIZER_DIR, TYPE_TOKENIZER_DIR

REQUIRED_KEYS = ("format_version", "precision", "token_graphs", "type_graph", "max_positions", "token_hidden_size",
                 "type_hidden_size")


def read_manifest(directory: str | Path) -> dict:
    """The export.json of an exported folder, checked; errors name the file and the key."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not an exported ONNX folder (no {MANIFEST_NAME}; run export.py)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ValueError(f"{path}: missing key {missing[0]!r}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {manifest['format_version']!r}, this code reads {FORMAT_VERSION}")
    return manifest


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX graph named in {MANIFEST_NAME} is missing")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxBackend:
    """Runs an exported folder (export.py) on ONNX Runtime's CPU provider; see `inference.ScoringBackend`."""

    name = "onnx"

    def __init__(self, directory: str | Path, *, precision: str | None = None, threads: int | None = None) -> None:
        directory = Path(directory)
        self.directory = directory
        self.manifest = read_manifest(directory)
        graphs = self.manifest["token_graphs"]
        self.precision = precision or self.manifest["precision"]
        if self.precision not in graphs:
            raise ValueError(f"{directory}: no {self.precision!r} token graph (exported: {sorted(graphs)})")
        self.config = SpanModelConfig.load(directory / "config.json")
        self.token_tokenizer = AutoTokenizer.from_pretrained(directory / TOKEN_TOKENIZER_DIR, use_fast=True)
        self.type_tokenizer = AutoTokenizer.from_pretrained(directory / TYPE_TOKENIZER_DIR, use_fast=True)
        self.head = SpanHead(self.config, self.manifest["token_hidden_size"], self.manifest["type_hidden_size"])
        self.head.load_state_dict(load_file(directory / HEAD_WEIGHTS_NAME))
        self.head.eval()
        token_graph = directory / graphs[self.precision]
        self.token_session = _session(token_graph, threads)
        self.type_session = _session(directory / self.manifest["type_graph"], threads)
        # A graph of a model with case_features takes case_ids as a third input (onnx_export.CasedTokenGraph).
        self.reads_case = "case_ids" in {i.name for i in self.token_session.get_inputs()}
        outputs = [o.name for o in self.token_session.get_outputs()]
        if outputs != list(TOKEN_OUTPUTS):
            raise ValueError(f"{token_graph}: outputs {outputs}, expected {list(TOKEN_OUTPUTS)}")

    @property
    def max_positions(self) -> int:
        return int(self.manifest["max_positions"])

    @property
    def type_hidden_size(self) -> int:
        return int(self.manifest["type_hidden_size"])

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _run(
        self, session, input_ids: torch.Tensor, attention_mask: torch.Tensor, case_ids: torch.Tensor | None = None
    ) -> list[np.ndarray]:
        feed = {"input_ids": input_ids.cpu().long().numpy(), "attention_mask": attention_mask.cpu().long().numpy()}
        if case_ids is not None:
            feed["case_ids"] = case_ids.cpu().long().numpy()
        return session.run(None, feed)

    @torch.no_grad()
    def encode_types(self, type_input_ids: torch.Tensor, type_attention_mask: torch.Tensor) -> torch.Tensor:
        if type_input_ids.shape[0] == 0:
            return torch.zeros(0, self.type_hidden_size)
        [embeddings] = self._run(self.type_session, type_input_ids, type_attention_mask)
        return torch.from_numpy(embeddings)  # [C, H_type]

    def token_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, case_ids: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """The token graph's four [B, L, D] outputs.

        The int8 graph quantises each activation with one scale computed over its whole input tensor, so run on a
        padded batch a window's scores would move with the other windows (and the padding) beside it. It is
        therefore run window by window on each window's own unpadded length: a text's int8 scores are then the
        same whatever shares its batch, in `predict` and in the server alike. fp32 runs the batch at once.
        """
        if not self.reads_case:
            case_ids = None
        elif case_ids is None:
            raise ValueError(f"{self.directory}: this model reads letter case (case_features): pass case_ids")
        if self.precision != "int8":
            return [torch.from_numpy(array)
                    for array in self._run(self.token_session, input_ids, attention_mask, case_ids)]
        batch_size, length = input_ids.shape
        keep = attention_mask.bool()  # [B, L]: each window's own positions, wherever the padding side puts them
        rows = [self._run(self.token_session, input_ids[b][keep[b]][None], attention_mask[b][keep[b]][None],
                          None if case_ids is None else case_ids[b][keep[b]][None])
                for b in range(batch_size)]
        dense = []
        for k in range(len(TOKEN_OUTPUTS)):
            out = torch.zeros(batch_size, length, rows[0][k].shape[-1])  # [B, L, D]; padding stays zero (masked)
            for b, row in enumerate(rows):
                out[b, keep[b]] = torch.from_numpy(row[k][0])
            dense.append(out)
        return dense

    @torch.no_grad()
    def score(self, input_ids, attention_mask, start_mask, end_mask, *, type_embeddings, case_ids=None) -> SpanScores:
        start_mask, end_mask = start_mask.bool(), end_mask.bool()
        dense = self.token_states(input_ids, attention_mask, case_ids)
        tokens = TokenVectors.from_positions(*dense, start_mask, end_mask)  # four [B, L, D] -> boundary rows
        return self.head.scores(tokens, type_embeddings, start_mask, end_mask)


def load_onnx_predictor(
    directory: str | Path, *, precision: str | None = None, threads: int | None = None, **kwargs
) -> SpanPredictor:
    """A `SpanPredictor` on an exported folder, with its inference.json and the training run's window settings.

    `precision` picks the token graph ("fp32", or "int8" when exported with it; default: the export's choice).
    """
    backend = OnnxBackend(directory, precision=precision, threads=threads)
    defaults = {"inference_config": load_inference_config(directory),
                "max_seq_length": backend.manifest.get("max_seq_length"),
                "max_type_length": backend.manifest.get("max_type_length"),
                **document_defaults({"context_size": backend.manifest.get("context_size")}, kwargs)}
    for key, value in defaults.items():
        if kwargs.get(key) is None:
            kwargs[key] = value
    return SpanPredictor(backend, **kwargs)


def load_predictor(
    directory: str | Path, *, backend: str = "torch", device: str = "cpu", precision: str | None = None,
    threads: int | None = None, **kwargs
) -> SpanPredictor:
    """A predictor for `backend` "torch" (a saved model folder) or "onnx" (a folder written by export.py).

    `precision`: the weights' dtype for torch ("fp32" by default, "bf16", "fp16"), the token graph for onnx
    ("fp32", "int8"; default: the export's). `threads`: intra-op threads of the ONNX Runtime sessions, or of
    torch (`torch.set_num_threads`, a process-wide setting); default: theirs.
    """
    if backend == "torch":
        if threads:
            torch.set_num_threads(threads)
        return SpanPredictor.from_pretrained(directory, device=device, precision=precision or "fp32", **kwargs)
    if backend == "onnx":
        if device not in ("cpu", "auto"):
            raise ValueError(f"the onnx backend runs on the CPU, got device {device!r}")
        return load_onnx_predictor(directory, precision=precision, threads=threads, **kwargs)
    raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
