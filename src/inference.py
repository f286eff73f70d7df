"""Prediction on raw text with a trained `SpanModel`: overlapping windows, cached type embeddings, character offsets.

Also the model folder's `inference.json` (decoding settings saved beside the weights, e.g. a tuned threshold) and
the run settings a training run wrote next to its model folders.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

import torch
from transformers import PreTrainedTokenizerBase

from .args import DataArgs, TrainingArgs
from .atomic_files import write_json_atomic
from .collator import Windows, default_stride, encode_windows, words_with_context
from .config import SpanModelConfig
from .decoding import SpanScoreSource, merge_windows_by_example, resolve_overlaps, scored_candidates
from .model import SpanModel
from .precisions import torch_dtype, torch_precision_name
from .text_split import sentence_cuts, split_words

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


def document_defaults(run: dict, kwargs: dict) -> dict:
    """`sentences` and `context_size` of a predictor for a model whose training run's settings are `run`.

    A model trained with document context (`context_size` > 0) reads raw text sentence by sentence with that much
    context; an explicit `sentences` or `context_size` in `kwargs` wins, and without sentences there is no context.
    """
    trained = int(run.get("context_size") or 0)
    sentences = kwargs.get("sentences")
    if sentences is None:
        sentences = trained > 0 or bool(kwargs.get("context_size"))
    return {"sentences": sentences, "context_size": trained if sentences else 0}


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


class ScoringBackend(Protocol):
    """What `SpanPredictor` needs from a model: its config, tokenizers and the two encoders' outputs.

    `TorchBackend` wraps a `SpanModel`; `src.serving.onnx_backend.OnnxBackend` runs exported graphs. Everything
    after `score` (thresholds, candidates, overlaps, windows, offsets) is the predictor's own code, whatever runs it.
    """

    name: str
    precision: str  # e.g. "fp32", "bf16" (PyTorch weights) or "int8" (an ONNX graph)
    config: SpanModelConfig
    token_tokenizer: PreTrainedTokenizerBase
    type_tokenizer: PreTrainedTokenizerBase

    @property
    def max_positions(self) -> int:
        """The longest window (in subwords) the token encoder can read."""

    @property
    def type_hidden_size(self) -> int:
        """H_type, the width of a type embedding."""

    @property
    def device(self) -> torch.device:
        """Where the tensors passed to `encode_types` and `score` must live."""

    def encode_types(self, type_input_ids: torch.Tensor, type_attention_mask: torch.Tensor) -> torch.Tensor:
        """Type embeddings [C, H_type] of tokenised type texts [C, T]."""

    def score(
        self, input_ids, attention_mask, start_mask, end_mask, *, type_embeddings, case_ids=None
    ) -> SpanScoreSource:
        """Boundary logits of a batch [B, L] against type_embeddings [C, H_type], span logits on demand.

        case_ids [B, L]: the letter case of each subword (`src.casing`), read by models with `case_features`.
        """


class TorchBackend:
    """`ScoringBackend` of a PyTorch `SpanModel` (eager mode, any device)."""

    name = "torch"

    def __init__(self, model: SpanModel) -> None:
        self.model = model.eval()
        self.config = model.config
        self.token_tokenizer, self.type_tokenizer = model.token_tokenizer, model.type_tokenizer

    @property
    def max_positions(self) -> int:
        positions = getattr(self.model.token_encoder.config, "max_position_embeddings", None) or 512
        return min(positions, self.token_tokenizer.model_max_length)

    @property
    def type_hidden_size(self) -> int:
        return self.model.type_encoder.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def precision(self) -> str:
        """"fp32", "bf16" or "fp16": the dtype of the model's weights (`src.precisions`)."""
        return torch_precision_name(next(self.model.parameters()).dtype)

    def encode_types(self, type_input_ids: torch.Tensor, type_attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_types(type_input_ids, type_attention_mask)

    def score(
        self, input_ids, attention_mask, start_mask, end_mask, *, type_embeddings, case_ids=None
    ) -> SpanScoreSource:
        return self.model.score(input_ids, attention_mask, start_mask, end_mask, case_ids=case_ids,
                                type_embeddings=type_embeddings)


@dataclass(frozen=True)
class TextQuery:
    """One text with its own labels and decoding settings; built and checked by `SpanPredictor.queries`."""

    text: str
    labels: tuple[str, ...]  # de-duplicated, in the caller's order (it breaks ties between equal scores)
    thresholds: tuple[float, ...]  # one per label
    flat_ner: bool
    multi_label: bool = False


@dataclass
class TextPieces:
    """What the encoder reads for a chunk of queries: one input per query (a whole text), or one per sentence.

    `owner[k]` is the query of input k; `offsets[k]` (sentence mode) holds the character offsets of input k's own
    words in its query's text, which turn its word units back into characters.
    """

    windows: Windows | None  # None in sentence mode when no query has a word
    owner: list[int]
    offsets: list[list[tuple[int, int]]] | None = None


def split_sentences(text: str) -> tuple[list[str], list[tuple[int, int]], list[tuple[int, int]]]:
    """A raw text's words (`src.text_split` word rule), their character offsets, and its sentences as
    (first word, end word) ranges; a sentence ends by the sentence rule or at a line break."""
    words, offsets = split_words(text)
    bounds = [0, *sentence_cuts(words, offsets, text, line_breaks=True), len(words)] if words else []
    return words, offsets, list(zip(bounds, bounds[1:], strict=False))


class SpanPredictor:
    """A model ready for prediction: window settings, decoding defaults and a cache of type embeddings.

    Each distinct label is encoded once (its saved description when the model has one) and kept, so a label
    set of any size costs one pass of the type encoder, in chunks of `type_batch_size`, over the predictor's life.
    `model` is a `SpanModel` or any `ScoringBackend` (e.g. an exported ONNX model).

    Raw texts are read in overlapping windows of `max_seq_length` subwords by default. With `sentences` each text
    is split into sentences instead (`split_sentences`) and each sentence is read on its own, with up to
    `context_size` subwords of its neighbouring sentences around it as document context, as a model trained with
    `context_size` read its training data; spans stay inside a sentence. `from_pretrained` turns this on for
    models trained with document context.
    """

    def __init__(
        self,
        model: SpanModel | ScoringBackend,
        *,
        inference_config: InferenceConfig | None = None,
        max_seq_length: int | None = None,
        stride: int | None = None,
        max_type_length: int | None = None,
        type_batch_size: int = 256,
        sentences: bool = False,
        context_size: int = 0,
    ) -> None:
        if not isinstance(sentences, bool):
            raise TypeError(f"sentences must be true or false, got {sentences!r}")
        if isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 0:
            raise ValueError(f"context_size must be an integer >= 0, got {context_size!r}")
        if context_size and not sentences:
            raise ValueError("context_size needs sentences=True: document context is read around each sentence")
        self.sentences, self.context_size = sentences, context_size
        self.backend = TorchBackend(model) if isinstance(model, SpanModel) else model
        self.config = inference_config or InferenceConfig()
        limit = self.backend.max_positions  # never a window the encoder cannot read
        self.max_seq_length = min(max_seq_length or DataArgs.max_seq_length, limit)
        self.stride = stride or default_stride(
            self.backend.token_tokenizer, max_seq_length=self.max_seq_length,
            max_span_length=self.backend.config.max_span_length,
        )
        self.max_type_length = max_type_length or DataArgs.max_type_length
        self.type_batch_size = type_batch_size
        self._type_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, device: str | torch.device = "cpu", precision: str = "fp32", **kwargs
    ) -> SpanPredictor:
        """Load a model folder with its `inference.json`; window and type lengths and document context (sentence
        mode with the run's `context_size`) default to its training run's.

        `precision` ("fp32", "bf16", "fp16") casts the weights after loading: scores are computed in that precision
        and thresholded in fp32. bf16 is the one to try on a CPU with AMX or AVX512-BF16 (RESULTS.md, section 6).
        """
        dtype = torch_dtype(precision)  # ValueError naming the choices
        model = SpanModel.from_pretrained(directory).to(device=device, dtype=dtype)
        run = read_run_settings(directory)
        defaults = {"inference_config": load_inference_config(directory), "max_seq_length": run.get("max_seq_length"),
                    "max_type_length": run.get("max_type_length"), **document_defaults(run, kwargs)}
        for key, value in defaults.items():
            if kwargs.get(key) is None:  # an explicit None means "the default" too
                kwargs[key] = value
        return cls(model, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def cached_type_texts(self) -> list[str]:
        """The type texts (labels or their descriptions) whose embeddings are cached, in the order first seen."""
        return list(self._type_cache)

    @torch.no_grad()
    def type_embeddings(self, labels: Sequence[str]) -> torch.Tensor:
        """Embeddings [C, H_type] of `labels`, encoding only those not seen before."""
        texts = [self.backend.config.type_text(label) for label in labels]
        missing = sorted({t for t in texts if t not in self._type_cache}, key=lambda t: (len(t), t))
        for begin in range(0, len(missing), self.type_batch_size):
            chunk = missing[begin : begin + self.type_batch_size]
            enc = self.backend.type_tokenizer(
                chunk, truncation=True, max_length=self.max_type_length, padding=True, return_tensors="pt"
            )
            ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)  # [C', T] each
            embeddings = self.backend.encode_types(ids, mask)  # [C', H_type]
            self._type_cache.update(zip(chunk, embeddings, strict=True))
        if not texts:
            return torch.zeros(0, self.backend.type_hidden_size, device=self.device)
        return torch.stack([self._type_cache[t] for t in texts])  # [C, H_type]

    def queries(
        self,
        texts: str | Sequence[str],
        labels: Sequence[str] | Sequence[Sequence[str]],
        *,
        threshold: float | None = None,
        flat_ner: bool | None = None,
        multi_label: bool = False,
    ) -> list[TextQuery]:
        """Check the arguments of `predict` and turn them into one `TextQuery` per text."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        bad = [k for k, text in enumerate(texts) if not isinstance(text, str)]
        if bad:
            raise TypeError(f"texts must be strings, got {type(texts[bad[0]]).__name__} at position {bad[0]}")
        per_text = _normalise_labels(labels, len(texts))
        flat_ner = self.config.flat_ner if flat_ner is None else flat_ner
        config = self.config if threshold is None else InferenceConfig(threshold=threshold, flat_ner=flat_ner)
        if not isinstance(multi_label, bool):
            raise TypeError(f"multi_label must be true or false, got {multi_label!r}")
        return [TextQuery(text, tuple(group), tuple(config.thresholds_for(group)), flat_ner, multi_label)
                for text, group in zip(texts, per_text, strict=True)]

    @torch.no_grad()
    def predict(
        self,
        texts: str | Sequence[str],
        labels: Sequence[str] | Sequence[Sequence[str]],
        *,
        threshold: float | None = None,
        flat_ner: bool | None = None,
        multi_label: bool = False,
        batch_size: int = 8,
    ) -> list[list[dict]]:
        """Entities of each text: {"start", "end", "text", "label", "score"}, character offsets, end exclusive.

        `labels` is one list for all texts or one list per text. `threshold` (one value for all types) and
        `flat_ner` default to the model's `inference.json` (global and per-type thresholds); with `multi_label`
        a span may carry several types. `batch_size` texts are tokenised together and `batch_size` windows go
        through the model at a time. A text longer than the window is split into overlapping windows; each span
        is taken from the window where it has the most context, then overlaps are resolved over the whole text.
        Entities are sorted by start, end and label order.
        """
        queries = self.queries(texts, labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label)
        return self.run(queries, batch_size=batch_size)

    @torch.no_grad()
    def run(self, queries: Sequence[TextQuery], *, batch_size: int = 8) -> list[list[dict]]:
        """Entities of each query (as `predict`); queries may differ in labels, thresholds and overlap rules.

        A query's result does not depend on the other queries it is batched with, beyond float rounding of
        padded batches (scores agree to about 1e-6).
        """
        results: list[list[dict]] = [[] for _ in queries]
        order = sorted(range(len(queries)), key=lambda i: len(queries[i].text))  # similar lengths pad less
        for begin in range(0, len(order), batch_size):
            chunk = order[begin : begin + batch_size]
            entities = self._predict_chunk([queries[i] for i in chunk], batch_size)
            for i, found in zip(chunk, entities, strict=True):
                results[i] = found
        return results

    def pieces(self, queries: list[TextQuery]) -> TextPieces:
        """Tokenise a chunk of queries: each text in windows, or (`sentences`) each sentence with its context."""
        tokenizer = self.backend.token_tokenizer
        if not self.sentences:
            windows = encode_windows(tokenizer, [q.text for q in queries], annotation_format="text",
                                     max_seq_length=self.max_seq_length, stride=self.stride)
            return TextPieces(windows, list(range(len(queries))))
        owner, offsets, pieces = [], [], []
        for q, query in enumerate(queries):
            words, word_offsets, bounds = split_sentences(query.text)
            for first, end in bounds:  # a word is at least one subword: context_size words are always enough
                owner.append(q)
                offsets.append(word_offsets[first:end])
                pieces.append((words[max(0, first - self.context_size) : first], words[first:end],
                               words[end : end + self.context_size]))
        if not pieces:
            return TextPieces(None, owner, offsets)
        inputs, targets = words_with_context(tokenizer, pieces, context_size=self.context_size,
                                             max_seq_length=self.max_seq_length)
        windows = encode_windows(tokenizer, inputs, annotation_format="tokens", max_seq_length=self.max_seq_length,
                                 stride=self.stride, targets=targets)
        return TextPieces(windows, owner, offsets)

    def _predict_chunk(self, queries: list[TextQuery], batch_size: int) -> list[list[dict]]:
        union = list(dict.fromkeys(label for query in queries for label in query.labels))
        if not union:
            return [[] for _ in queries]
        type_index = {label: c for c, label in enumerate(union)}
        type_embeddings = self.type_embeddings(union)  # [C, H_type]
        # Each type is thresholded at the lowest value any query asks for; a candidate's level then tells every
        # query whether it passes its own value, so one pass serves them all.
        lowest = [1.0] * len(union)  # [C]
        for query in queries:
            for label, value in zip(query.labels, query.thresholds, strict=True):
                lowest[type_index[label]] = min(lowest[type_index[label]], value)
        # The best type per span is enough when every query has the same labels and thresholds and one type per
        # span; the union order is then each query's own order, so ties break the same way.
        first = queries[0]
        best_type_only = all((q.labels, q.thresholds, q.multi_label) == (first.labels, first.thresholds, False)
                             for q in queries)
        pieces = self.pieces(queries)
        windows = pieces.windows
        if windows is None:  # sentence mode, and no query has a word
            return [[] for _ in queries]
        example_mask = torch.zeros(len(queries), len(union), dtype=torch.bool)  # [B, C]
        for b, query in enumerate(queries):
            example_mask[b, [type_index[label] for label in query.labels]] = True
        type_mask = example_mask[[pieces.owner[k] for k in windows.window_example]]  # [N, C]
        # Rows go through the model shortest first, `batch_size` at a time, each batch cut to its longest row (right
        # padding): the sentences of a document, or windows and short texts, then pad little.
        lengths = windows.attention_mask.sum(1).tolist()
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        trim = getattr(self.backend.token_tokenizer, "padding_side", "right") == "right"
        row_candidates: list[list[tuple]] = [[] for _ in lengths]
        for begin in range(0, len(order), batch_size):
            rows = order[begin : begin + batch_size]
            width = max(lengths[n] for n in rows) if trim else windows.input_ids.shape[1]

            def take(tensor: torch.Tensor, rows=rows, width=width) -> torch.Tensor:
                return tensor[rows][:, :width].to(self.device)

            # Span logits only for spans whose boundaries pass: with many labels the [B, C, L, W] block is the cost.
            scores = self.backend.score(
                take(windows.input_ids), take(windows.attention_mask), take(windows.start_mask),
                take(windows.end_mask), type_embeddings=type_embeddings, case_ids=take(windows.case_ids),
            )
            found = scored_candidates(
                scores, threshold=lowest, type_mask=type_mask[rows].to(self.device), best_type_only=best_type_only
            )
            for n, candidates in zip(rows, found, strict=True):
                row_candidates[n] = candidates
        merged = merge_windows_by_example(
            windows.window_example,
            [a.candidates_to_units(c) for a, c in zip(windows.alignments, row_candidates, strict=True)],
            [a.covered_units() for a in windows.alignments], len(pieces.owner),
        )
        by_query: list[list[tuple]] = [[] for _ in queries]
        for k, candidates in enumerate(merged):
            if pieces.offsets is not None:  # word units (inclusive end) of a sentence -> characters of its text
                words = pieces.offsets[k]
                candidates = [(words[s][0], words[e][1] - 1, *rest) for s, e, *rest in candidates]
            by_query[pieces.owner[k]] += candidates
        return [_decode_query(query, candidates, type_index)
                for query, candidates in zip(queries, by_query, strict=True)]


def _decode_query(query: TextQuery, candidates: list[tuple], type_index: dict[str, int]) -> list[dict]:
    """One query's entities from its window-merged candidates (types indexed by `type_index`), in its label order."""
    local = {type_index[label]: k for k, label in enumerate(query.labels)}
    passing = [(start, end, local[c], score) for start, end, c, score, level in candidates
               if c in local and level > query.thresholds[local[c]]]
    kept = resolve_overlaps(passing, flat_ner=query.flat_ner, multi_label=query.multi_label)
    text = query.text
    return [{"start": s, "end": e + 1, "text": text[s : e + 1], "label": query.labels[k], "score": score}
            for s, e, k, score in kept]


def predict(
    model: SpanModel | SpanPredictor | str | Path,
    texts: str | Sequence[str],
    labels: Sequence[str] | Sequence[Sequence[str]],
    *,
    threshold: float | None = None,
    flat_ner: bool | None = None,
    multi_label: bool = False,
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
    return predictor.predict(texts, labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label,
                             batch_size=batch_size)
