"""SpanModel on a tiny random backbone: shapes, masks, loss, overfitting, save/load and label-set invariance."""

from __future__ import annotations

import math

import pytest
import torch

from src.collator import InBatchDataCollator, model_inputs
from src.config import SpanModelConfig
from src.model import SpanModel, span_candidate_mask, span_loss

from .conftest import tiny_records


def build(tiny_backbone: str, **overrides) -> SpanModel:
    torch.manual_seed(0)
    config = SpanModelConfig(token_encoder=tiny_backbone, type_encoder=tiny_backbone, max_span_length=4,
                             linear_hidden_size=16, dropout=0.0, **overrides)
    return SpanModel.from_config(config)


def collate(model: SpanModel, records, **kwargs):
    collator = InBatchDataCollator(model.token_tokenizer, model.type_tokenizer, annotation_format="tokens",
                                   max_seq_length=32, max_span_length=model.config.max_span_length, **kwargs)
    return collator(list(enumerate(records)))


def test_span_candidate_mask_exact():
    start = torch.tensor([[False, True, True, False, True]])
    end = torch.tensor([[False, True, False, True, True]])
    mask = span_candidate_mask(start, end, 3)  # [1, 5, 3]
    expected = torch.zeros(1, 5, 3, dtype=torch.bool)
    expected[0, 1, 0] = True  # 1..1
    expected[0, 1, 2] = True  # 1..3
    expected[0, 2, 1] = True  # 2..3
    expected[0, 2, 2] = True  # 2..4
    expected[0, 4, 0] = True  # 4..4
    assert torch.equal(mask, expected)


def test_span_loss_masks_and_weights():
    # One example, one type, two positions; only position 1 is legal for start/end, only span (1, w=0) for spans.
    start_logits = torch.tensor([[[5.0, 0.0]]])
    end_logits = torch.tensor([[[-7.0, 2.0]]])
    span_logits = torch.tensor([[[[9.0], [1.0]]]])
    labels = torch.tensor([[[0.0, 1.0]]])
    start_mask = end_mask = torch.tensor([[False, True]])
    span_mask = torch.tensor([[[False], [True]]])
    loss = span_loss(
        start_logits=start_logits, end_logits=end_logits, span_logits=span_logits, start_labels=labels,
        end_labels=labels, span_labels=labels[..., None], start_mask=start_mask, end_mask=end_mask,
        span_mask=span_mask, type_mask=torch.tensor([[True]]), start_weight=1.0, end_weight=2.0, span_weight=3.0,
    )
    bce_pos = lambda x: math.log1p(math.exp(-x))  # noqa: E731 - BCE of a positive label
    expected = 1.0 * bce_pos(0.0) + 2.0 * bce_pos(2.0) + 3.0 * bce_pos(1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # With the type masked out nothing is left to score.
    masked = span_loss(
        start_logits=start_logits, end_logits=end_logits, span_logits=span_logits, start_labels=labels,
        end_labels=labels, span_labels=labels[..., None], start_mask=start_mask, end_mask=end_mask,
        span_mask=span_mask, type_mask=torch.tensor([[False]]), start_weight=1.0, end_weight=1.0, span_weight=1.0,
    )
    assert masked.item() == 0.0


def test_output_shapes_and_finite_loss(tiny_backbone):
    model = build(tiny_backbone)
    batch = collate(model, tiny_records())
    out = model(**model_inputs(batch))
    b, length = batch["input_ids"].shape
    c = len(batch["labels"])
    assert batch["labels"] == ["LOC", "ORG", "PER"]
    assert out.start_logits.shape == (b, c, length)
    assert out.end_logits.shape == (b, c, length)
    assert out.span_logits.shape == (b, c, length, 4)
    assert out.span_mask.shape == (b, length, 4)
    assert torch.isfinite(out.loss) and out.loss.item() > 0.1
    # No legal span touches [CLS] or padding.
    assert not out.span_mask[:, 0].any()
    assert not out.span_mask[~batch["attention_mask"].bool()].any()


def test_loss_falls_when_overfitting_one_batch(tiny_backbone):
    model = build(tiny_backbone)
    batch = collate(model, tiny_records())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(60):
        loss = model(**model_inputs(batch)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]


def test_save_load_gives_identical_logits(tiny_backbone, tmp_path):
    model = build(tiny_backbone, type_descriptions={"PER": "person"}).eval()
    with torch.no_grad():
        model.span_head.log_temperature.fill_(-1.5)  # a non-initial value must survive the round trip
    batch = collate(model, tiny_records(), type_descriptions={"PER": "person"})
    with torch.no_grad():
        before = model(**model_inputs(batch))
    model.save_pretrained(tmp_path / "saved")
    for name in ("config.json", "model.pt", "token_encoder", "type_encoder"):
        assert (tmp_path / "saved" / name).exists(), name
    loaded = SpanModel.from_pretrained(tmp_path / "saved")
    assert loaded.config == model.config
    with torch.no_grad():
        after = loaded(**model_inputs(batch))
    for name in ("start_logits", "end_logits", "span_logits", "loss"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name


def test_scores_do_not_depend_on_other_types_in_batch(tiny_backbone):
    model = build(tiny_backbone).eval()
    records = tiny_records()
    with torch.no_grad():
        alone = model(**model_inputs(collate(model, records, label_set=["PER"]), with_labels=False))
        crowd = model(**model_inputs(
            collate(model, records, label_set=["a very long type description of things", "LOC", "PER", "x"]),
            with_labels=False,
        ))
    torch.testing.assert_close(alone.span_logits[:, 0], crowd.span_logits[:, 2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone.start_logits[:, 0], crowd.start_logits[:, 2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone.end_logits[:, 0], crowd.end_logits[:, 2], rtol=1e-5, atol=1e-5)


def test_missing_backbone_error_names_model(tmp_path):
    from src.model import BackboneNotFoundError, load_backbone

    with pytest.raises(BackboneNotFoundError, match="no-such-folder"):
        load_backbone(str(tmp_path / "no-such-folder"))


def test_batch_without_entities_trains_with_zero_loss(tiny_backbone):
    model = build(tiny_backbone)
    empty = [r for r in tiny_records() if not r["token_spans"]]
    batch = collate(model, empty)
    assert batch["labels"] == [] and batch["type_input_ids"].shape == (0, 1)
    out = model(**model_inputs(batch))
    assert out.span_logits.shape[1] == 0 and out.loss.item() == 0.0
    out.loss.backward()  # must not fail: the step is a no-op for the weights
