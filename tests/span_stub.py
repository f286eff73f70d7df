"""A span model whose logits the test controls: it finds one word, by its subword ids, and nothing else."""

from __future__ import annotations

import torch

from src.decoding import DenseScores
from src.model import SpanModel, SpanModelOutput, span_candidate_mask

HIGH, LOW = 20.0, -20.0


class WordSpotter(SpanModel):
    """Scores the span covering every whole occurrence of `word` high for `label`, and everything else low.

    Built on a real (tiny) model's encoders and tokenizers, so tokenisation, windowing, type encoding and
    decoding run for real; only the logits are fixed. The label's type is recognised by its embedding.
    """

    def __init__(self, model: SpanModel, *, word: str, label: str) -> None:
        super().__init__(model.config, model.token_encoder, model.type_encoder, model.token_tokenizer,
                         model.type_tokenizer)
        self.span_head = model.span_head
        self.pattern = model.token_tokenizer(word, add_special_tokens=False)["input_ids"]  # subword ids of the word
        enc = model.type_tokenizer([model.config.type_text(label)], return_tensors="pt")
        with torch.no_grad():
            self.label_embedding = model.encode_types(enc["input_ids"], enc["attention_mask"])[0]  # [H_type]
        self.eval()

    def forward(self, input_ids, attention_mask, start_mask, end_mask, type_input_ids=None,
                type_attention_mask=None, type_embeddings=None, type_mask=None, **labels) -> SpanModelOutput:
        if type_embeddings is None:
            type_embeddings = self.encode_types(type_input_ids, type_attention_mask)
        batch_size, length = input_ids.shape
        num_types, width = type_embeddings.shape[0], self.config.max_span_length
        start_mask, end_mask = start_mask.bool(), end_mask.bool()
        span_mask = span_candidate_mask(start_mask, end_mask, width)  # [B, L, W]
        start = torch.full((batch_size, num_types, length), LOW)  # [B, C, L]
        end = torch.full((batch_size, num_types, length), LOW)  # [B, C, L]
        span = torch.full((batch_size, num_types, length, width), LOW)  # [B, C, L, W]
        target = [c for c in range(num_types) if torch.allclose(type_embeddings[c], self.label_embedding, atol=1e-5)]
        n = len(self.pattern)
        for b in range(batch_size):
            ids = input_ids[b].tolist()
            for i in range(length - n + 1):
                if ids[i : i + n] == self.pattern and start_mask[b, i] and end_mask[b, i + n - 1]:
                    for c in target:
                        start[b, c, i], end[b, c, i + n - 1], span[b, c, i, n - 1] = HIGH, HIGH, HIGH
        return SpanModelOutput(start, end, span, span_mask, None)

    def score(self, input_ids, attention_mask, start_mask, end_mask, **types) -> DenseScores:
        out = self.forward(input_ids, attention_mask, start_mask, end_mask, **types)
        return DenseScores(out.start_logits, out.end_logits, out.span_logits, out.span_mask)
