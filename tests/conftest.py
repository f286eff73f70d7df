"""Shared fixtures: a tiny random BERT backbone (built here, offline) and small JSONL corpora."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

TINY_RECORDS = [
    (["John", "Smith", "lives", "in", "New", "York", "."], [(0, 2, "PER"), (4, 6, "LOC")]),
    (["Apple", "hired", "Mary", "Jones", "yesterday"], [(0, 1, "ORG"), (2, 4, "PER")]),
    (["The", "weather", "in", "Paris", "is", "nice"], [(3, 4, "LOC")]),
    (["Microsoft", "and", "Google", "compete", "in", "Seattle"], [(0, 1, "ORG"), (2, 3, "ORG"), (5, 6, "LOC")]),
    (["Nothing", "to", "see", "here"], []),
    (["Angela", "Merkel", "visited", "Berlin", "and", "the", "U.N.", "."], [(0, 2, "PER"), (3, 4, "LOC"),
                                                                            (6, 7, "ORG")]),
]


def make_record(idx: int, tokens: list[str], spans: list[tuple[int, int, str]]) -> dict:
    """A valid JSONL record with token and char spans (text = tokens joined by single spaces)."""
    starts, pos = [], 0
    for tok in tokens:
        starts.append(pos)
        pos += len(tok) + 1
    token_spans = [{"start": s, "end": e, "label": lab} for s, e, lab in spans]
    char_spans = [{"start": starts[s], "end": starts[e - 1] + len(tokens[e - 1]), "label": lab} for s, e, lab in spans]
    return {"id": str(idx), "tokens": tokens, "text": " ".join(tokens), "token_spans": token_spans,
            "char_spans": char_spans}


def tiny_records() -> list[dict]:
    return [make_record(i, toks, spans) for i, (toks, spans) in enumerate(TINY_RECORDS)]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    """A 2-layer, hidden-32 random BERT saved with the embedded backbone's tokenizer; returns its folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from src.config import resolve_model_name_or_path

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name_or_path("all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture()
def tiny_data(tmp_path) -> dict[str, Path]:
    """train/validation/test JSONL files of the tiny hand-made corpus."""
    records = tiny_records()
    return {split: write_jsonl(tmp_path / f"{split}.jsonl", records) for split in ("train", "validation", "test")}


@pytest.fixture(scope="module")
def gliner_dir(tiny_backbone, tmp_path_factory):
    """A uni-encoder GLiNER with a random head around the tiny backbone, saved to a folder (no download)."""
    import torch
    from gliner import GLiNER, GLiNERConfig

    torch.manual_seed(0)
    config = GLiNERConfig(model_name=tiny_backbone, max_width=4, hidden_size=32, dropout=0.0, max_len=50)
    folder = tmp_path_factory.mktemp("gliner") / "model"
    GLiNER.from_config(config, backbone_from_pretrained=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tiny_backbone):
    """A tiny random SpanModel in eval mode (no dropout), rebuilt per test module."""
    import torch

    from src.config import SpanModelConfig
    from src.model import SpanModel

    torch.manual_seed(0)
    config = SpanModelConfig(token_encoder=tiny_backbone, type_encoder=tiny_backbone, max_span_length=4,
                             linear_hidden_size=16, dropout=0.0)
    return SpanModel.from_config(config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_backbone, tmp_path_factory) -> Path:
    """A saved tiny random SpanModel (with a type description and an inference.json) for the serving tests."""
    import torch

    from src.config import SpanModelConfig
    from src.inference import InferenceConfig, save_inference_config
    from src.model import SpanModel

    torch.manual_seed(0)
    config = SpanModelConfig(token_encoder=tiny_backbone, type_encoder=tiny_backbone, max_span_length=4,
                             linear_hidden_size=16, dropout=0.0, type_descriptions={"LOC": "location"})
    folder = tmp_path_factory.mktemp("tiny_span_model") / "model"
    SpanModel.from_config(config).save_pretrained(folder)
    save_inference_config(folder, InferenceConfig(threshold=0.3))  # the random model predicts something at 0.3
    return folder


@pytest.fixture(scope="session")
def tiny_onnx_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """`tiny_model_dir` exported by export.py's function with int8 (so both fp32 and int8 token graphs); slow-ish."""
    from src.serving.onnx_export import export_model

    folder = tmp_path_factory.mktemp("tiny_onnx") / "exported"
    export_model(tiny_model_dir, folder, quantize="int8")
    return folder
