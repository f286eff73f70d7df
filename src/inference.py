"""Prediction on raw text with a trained `SpanModel`: overlapping windows, cached type embeddings, character offsets.

Also the model folder's `inference.json` (decoding settings saved beside the weights, e.g. a tuned threshold) and
the run settings a training run wrote next to its model folders.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from .args import DataArgs, TrainingArgs
from .checkpoints import write_json_atomic
from .collator import default_stride, encode_windows
from .decoding import merge_windows_by_example, resolve_overlaps, scored_candidates
from .model import SpanModel

INFERENCE_CONFIG_NAME = "inference.json"
RUN_CONFIG_NAME = "config.json"  # the trainer's resolved run config, one level above best/, final/, checkpoint-*/


@dataclass
class InferenceConfig:
    """Decoding settings saved with a model as `inference.json`; the defaults when the file is absent."""

    threshold: float = TrainingArgs.threshold
    per_type_thresholds: dict[str, float] | None = None
    flat_ner: bool = TrainingArgs.flat_ner

    def __post_init__(self) -> None:
        values = {"threshold": self.threshold, **(self.per_type_thresholds or {})}
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
                raise ValueError(f"inference threshold {name!r} must lie strictly between 0 and 1, got {value!r}")
        if not isinstance(self.flat_ner, bool):
            raise ValueError(f"inference 'flat_ner' must be true or false, got {self.flat_ner!r}")

    def thresholds_for(self, labels: Sequence[str]) -> list[float]:
        """One threshold per label: its per-type value when there is one, else the global threshold."""
        per_type = self.per_type_thresholds or {}
        return [float(per_type.get(label, self.threshold)) for label in labels]


def save_inference_config(directory: str | Path, config: InferenceConfig) -> Path:
    """Write `inference.json` into a model folder; returns its path."""
    path = Path(directory) / INFERENCE_CONFIG_NAME
    write_json_atomic(path, asdict(config))
    return path


def load_inference_config(directory: str | Path) -> InferenceConfig:
    """Read a model folder's `inference.json` (defaults when there is none); unknown keys are an error."""
    path = Path(directory) / INFERENCE_CONFIG_NAME
    if not path.is_file():
        return InferenceConfig()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None
    known = {f.name for f in fields(InferenceConfig)}
    if not isinstance(data, dict) or set(data) - known:
        raise ValueError(f"{path}: expected an object with keys {sorted(known)}, got {data!r}")
    try:
        return InferenceConfig(**data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def read_run_settings(model_dir: str | Path) -> dict:
    """The training run's resolved config when `model_dir` is one of its model folders (best/, final/, ...).

    Returns {} when the parent folder holds no training config.json.
    """
    path = Path(model_dir).resolve().parent / RUN_CONFIG_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    is_run_config = isinstance(data, dict) and {"output_dir", "max_seq_length", "annotation_format"} <= set(data)
    return data if is_run_config else {}


def _normalise_labels(labels, num_texts: int) -> list[list[str]]:
    """One shared label list, or one list per text -> one de-duplicated list per text."""
    if isinstance(labels, str):
        raise TypeError("labels must be a list of label names (or one list per text), not a string")
    labels = list(labels)
    if all(isinstance(label, str) for label in labels):
        per_text = [labels] * num_texts
    elif all(isinstance(group, list | tuple) for group in labels):
        if len(labels) != num_texts:
            raise ValueError(f"got {len(labels)} label lists for {num_texts} texts")
        per_text = [list(group) for group in labels]
    else:
        raise TypeError("labels must be a list of strings or a list of lists of strings")
    for group in per_text:
        bad = [label for label in group if not isinstance(label, str) or not label.strip()]
        if bad:
            raise ValueError(f"labels must be non-empty strings, got {bad[0]!r}")
    return [list(dict.fromkeys(group)) for group in per_text]


class SpanPredictor:
    """A model ready for prediction: window settings, decoding defaults and a cache of type embeddings.

    Each distinct label is encoded once (its saved description when the model has one) and kept, so a label
    set of any size costs one pass of the type encoder, in chunks of `type_batch_size`, over the predictor's life.
    """

    def __init__(
        self,
        model: SpanModel,
        *,
        inference_config: InferenceConfig | None = None,
        max_seq_length: int | None = None,
        stride: int | None = None,
        max_type_length: int | None = None,
        type_batch_size: int = 256,
    ) -> None:
        self.model = model.eval()
        self.config = inference_config or InferenceConfig()
        positions = getattr(model.token_encoder.config, "max_position_embeddings", None) or 512
        limit = min(positions, model.token_tokenizer.model_max_length)  # never a window the encoder cannot read
        self.max_seq_length = min(max_seq_length or DataArgs.max_seq_length, limit)
        self.stride = stride or default_stride(
            model.token_tokenizer, max_seq_length=self.max_seq_length, max_span_length=model.config.max_span_length
        )
        self.max_type_length = max_type_length or DataArgs.max_type_length
        self.type_batch_size = type_batch_size
        self._type_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "cpu", **kwargs) -> SpanPredictor:
        """Load a model folder with its `inference.json`; window and type lengths default to its training run's."""
        model = SpanModel.from_pretrained(directory).to(device)
        run = read_run_settings(directory)
        defaults = {"inference_config": load_inference_config(directory), "max_seq_length": run.get("max_seq_length"),
                    "max_type_length": run.get("max_type_length")}
        for key, value in defaults.items():
            if kwargs.get(key) is None:  # an explicit None means "the default" too
                kwargs[key] = value
        return cls(model, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def type_embeddings(self, labels: Sequence[str]) -> torch.Tensor:
        """Embeddings [C, H_type] of `labels`, encoding only those not seen before."""
        texts = [self.model.config.type_text(label) for label in labels]
        missing = sorted({t for t in texts if t not in self._type_cache}, key=lambda t: (len(t), t))
        for begin in range(0, len(missing), self.type_batch_size):
            chunk = missing[begin : begin + self.type_batch_size]
            enc = self.model.type_tokenizer(
                chunk, truncation=True, max_length=self.max_type_length, padding=True, return_tensors="pt"
            )
            ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)  # [C', T] each
            embeddings = self.model.encode_types(ids, mask)  # [C', H_type]
            self._type_cache.update(zip(chunk, embeddings, strict=True))
        if not texts:
            return torch.zeros(0, self.model.type_encoder.config.hidden_size, device=self.device)
        return torch.stack([self._type_cache[t] for t in texts])  # [C, H_type]

    @torch.no_grad()
    def predict(
        self,
        texts: str | Sequence[str],
        labels: Sequence[str] | Sequence[Sequence[str]],
        *,
        threshold: float | None = None,
        flat_ner: bool | None = None,
        batch_size: int = 8,
    ) -> list[list[dict]]:
        """Entities of each text: {"start", "end", "text", "label", "score"}, character offsets, end exclusive.

        `labels` is one list for all texts or one list per text. `threshold` (one value for all types) and
        `flat_ner` default to the model's `inference.json` (global and per-type thresholds). `batch_size` texts
        are tokenised together and `batch_size` windows go through the model at a time. A text longer than the
        window is split into overlapping windows; each span is taken from the window where it has the most
        context, then overlaps are resolved over the whole text. Entities are sorted by start, end and label.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        per_text = _normalise_labels(labels, len(texts))
        flat_ner = self.config.flat_ner if flat_ner is None else flat_ner
        config = self.config if threshold is None else InferenceConfig(threshold=threshold, flat_ner=flat_ner)
        results: list[list[dict]] = [[] for _ in texts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        for begin in range(0, len(order), batch_size):
            chunk = order[begin : begin + batch_size]
            entities = self._predict_chunk([texts[i] for i in chunk], [per_text[i] for i in chunk], config, flat_ner,
                                           batch_size)
            for i, found in zip(chunk, entities, strict=True):
                results[i] = found
        return results

    def _predict_chunk(
        self, texts: list[str], label_sets: list[list[str]], config: InferenceConfig, flat_ner: bool, batch_size: int
    ) -> list[list[dict]]:
        union = list(dict.fromkeys(label for group in label_sets for label in group))
        if not union:
            return [[] for _ in texts]
        type_index = {label: c for c, label in enumerate(union)}
        type_embeddings = self.type_embeddings(union)  # [C, H_type]
        thresholds = config.thresholds_for(union)  # [C]
        windows = encode_windows(
            self.model.token_tokenizer, texts, annotation_format="text", max_seq_length=self.max_seq_length,
            stride=self.stride,
        )
        example_mask = torch.zeros(len(texts), len(union), dtype=torch.bool)  # [B, C]
        for b, group in enumerate(label_sets):
            example_mask[b, [type_index[label] for label in group]] = True
        type_mask = example_mask[windows.window_example]  # [N, C]
        row_candidates: list[list[tuple]] = []
        for begin in range(0, len(windows.window_example), batch_size):
            rows = slice(begin, begin + batch_size)
            # Span logits only for spans whose boundaries pass: with many labels the [B, C, L, W] block is the cost.
            scores = self.model.score(
                windows.input_ids[rows].to(self.device),
                windows.attention_mask[rows].to(self.device),
                windows.start_mask[rows].to(self.device),
                windows.end_mask[rows].to(self.device),
                type_embeddings=type_embeddings,
            )
            row_candidates += scored_candidates(
                scores, threshold=thresholds, type_mask=type_mask[rows].to(self.device), best_type_only=True
            )
        merged = merge_windows_by_example(
            windows.window_example,
            [a.candidates_to_units(c) for a, c in zip(windows.alignments, row_candidates, strict=True)],
            [a.covered_units() for a in windows.alignments], len(texts),
        )
        results = []
        for text, candidates in zip(texts, merged, strict=True):
            kept = resolve_overlaps([c[:4] for c in candidates], flat_ner=flat_ner)
            results.append([
                {"start": s, "end": e + 1, "text": text[s : e + 1], "label": union[c], "score": score}
                for s, e, c, score in kept
            ])
        return results


def predict(
    model: SpanModel | SpanPredictor | str | Path,
    texts: str | Sequence[str],
    labels: Sequence[str] | Sequence[Sequence[str]],
    *,
    threshold: float | None = None,
    flat_ner: bool | None = None,
    batch_size: int = 8,
) -> list[list[dict]]:
    """Predict entities in raw texts; see `SpanPredictor.predict` for the arguments and the output.

    `model` is a loaded `SpanModel` (decoding defaults: threshold 0.5, flat), a `SpanPredictor` (keeps its type
    embedding cache across calls) or a model folder (loaded with its `inference.json`).
    """
    if isinstance(model, str | Path):
        predictor = SpanPredictor.from_pretrained(model)
    elif isinstance(model, SpanPredictor):
        predictor = model
    else:
        predictor = SpanPredictor(model)
    return predictor.predict(texts, labels, threshold=threshold, flat_ner=flat_ner, batch_size=batch_size)
