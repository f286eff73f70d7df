"""Per-record label sets: batch types, negative sampling, the type mask, and what reaches the loss and gradients."""

from __future__ import annotations

import pytest
import torch

from src.collator import InBatchDataCollator
from src.config import SpanModelConfig
from src.model import SpanModel

from .conftest import make_record


def _collator(tiny_backbone, **kwargs) -> InBatchDataCollator:
    model = SpanModel.from_config(SpanModelConfig(token_encoder=tiny_backbone, type_encoder=tiny_backbone,
                                                  max_span_length=4, linear_hidden_size=16))
    collator = InBatchDataCollator(model.token_tokenizer, model.type_tokenizer, annotation_format="tokens",
                                   max_seq_length=32, max_span_length=4, **kwargs)
    return collator, model


def _with_labels(record: dict, labels: list[str] | None) -> dict:
    return {**record, "labels": labels} if labels is not None else dict(record)


NEWS = make_record(0, ["John", "Smith", "visited", "Paris"], [(0, 2, "person"), (3, 4, "location")])
BIO = make_record(1, ["Aspirin", "eases", "migraine"], [(2, 3, "disease")])


def test_batch_types_are_present_types_plus_negatives_from_the_records_label_sets(tiny_backbone):
    collator, _ = _collator(tiny_backbone)
    news = _with_labels(NEWS, ["person", "location", "organization"])
    bio = _with_labels(BIO, ["disease", "chemical"])
    batch = collator([(0, news), (1, bio)])
    assert batch["labels"] == ["chemical", "disease", "location", "organization", "person"]
    # Row 0 (news) gives loss only for its own three types, row 1 (bio) only for its two.
    assert batch["type_mask"].tolist() == [[False, False, True, True, True], [True, True, False, False, False]]
    # The disease entity of row 1 is labelled; row 0 has no disease label (and no loss for that type anyway).
    disease = batch["labels"].index("disease")
    assert batch["start_labels"][1, disease].sum() == 1 and batch["start_labels"][0, disease].sum() == 0


def test_max_types_keeps_every_positive_and_draws_negatives_reproducibly(tiny_backbone):
    collator, _ = _collator(tiny_backbone, max_types=4, seed=3)
    news = _with_labels(NEWS, ["person", "location", "organization", "date", "money", "event"])
    bio = _with_labels(BIO, ["disease", "chemical", "gene"])
    first = collator([(0, news), (1, bio)])["labels"]
    assert {"person", "location", "disease"} <= set(first) and len(first) == 4
    assert collator([(0, news), (1, bio)])["labels"] == first  # same batch, same draw
    draws = {tuple(collator([(k, news), (k + 1, bio)])["labels"]) for k in range(0, 40, 2)}
    assert len(draws) > 1  # other batches draw other negatives
    # More positives than max_types: all positives stay, no negatives.
    tight, _ = _collator(tiny_backbone, max_types=2)
    assert tight([(0, news), (1, bio)])["labels"] == ["disease", "location", "person"]


def test_records_without_labels_keep_the_single_corpus_behaviour(tiny_backbone):
    collator, _ = _collator(tiny_backbone)
    batch = collator([(0, NEWS), (1, BIO)])
    assert batch["labels"] == ["disease", "location", "person"]  # exactly the present gold types
    assert batch["type_mask"].all()


def test_batch_union_mode_ignores_record_label_sets(tiny_backbone):
    collator, _ = _collator(tiny_backbone, label_sets="batch_union")
    batch = collator([(0, _with_labels(NEWS, ["person", "location", "date"])), (1, _with_labels(BIO, ["disease"]))])
    assert batch["labels"] == ["disease", "location", "person"]
    assert batch["type_mask"].all()


def _row_loss(model, batch, rows, type_embeddings, types):
    """Loss of the chosen rows of a collated batch, scored against `types` (indices into the batch's types)."""
    keys = ("input_ids", "attention_mask", "start_mask", "end_mask")
    inputs = {k: batch[k][rows] for k in keys}
    labels = {k: batch[k][rows][:, types] for k in ("start_labels", "end_labels", "span_labels")}
    type_mask = batch["type_mask"][rows][:, types]
    out = model(**inputs, **labels, type_embeddings=type_embeddings[types], type_mask=type_mask)
    return out.loss


@pytest.mark.parametrize("mode", ["record", "batch_union"])
def test_no_gradient_reaches_a_type_outside_the_records_label_set(tiny_backbone, mode):
    torch.manual_seed(0)
    collator, model = _collator(tiny_backbone, label_sets=mode)
    model.eval()  # no dropout, so the two losses below hold the same terms
    news = _with_labels(NEWS, ["person", "location"])
    bio = _with_labels(BIO, ["disease"])
    batch = collator([(0, news), (1, bio)])
    types = batch["labels"]
    embeddings = model.encode_types(batch["type_input_ids"], batch["type_attention_mask"]).detach()
    embeddings.requires_grad_(True)
    loss = _row_loss(model, batch, [1], embeddings, list(range(len(types))))  # the bio record alone
    loss.backward()
    grad = {label: embeddings.grad[c].abs().sum().item() for c, label in enumerate(types)}
    assert grad["disease"] > 0
    if mode == "record":
        assert grad["person"] == 0.0 and grad["location"] == 0.0
        # The record's loss is the same whether or not the batch holds types outside its label set.
        alone = _row_loss(model, batch, [1], embeddings.detach(), [types.index("disease")])
        assert torch.allclose(loss.detach(), alone, atol=0, rtol=1e-6)  # same terms, summed in another order
    else:  # today's batch union: the news types are negatives for the bio record, so they get gradient
        assert grad["person"] > 0 and grad["location"] > 0
