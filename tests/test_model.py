"""SpanModel on a tiny random backbone: shapes, masks, loss, overfitting, save/load and label-set invariance."""

from __future__ import annotations

import math

import pytest
import torch

from src.collator import InBatchDataCollator, model_inputs
from src.config import SpanModelConfig
from src.model import IGNORED_SPAN_LOGIT, SpanModel, span_candidate_mask, span_loss

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
    for name in ("config.json", "span_head.safetensors", "token_encoder", "type_encoder"):
        assert (tmp_path / "saved" / name).exists(), name
    loaded = SpanModel.from_pretrained(tmp_path / "saved")
    assert loaded.config == model.config
    with torch.no_grad():
        after = loaded(**model_inputs(batch))
    for name in ("start_logits", "end_logits", "span_logits", "loss"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name


def test_folders_with_the_legacy_head_file_still_load(tiny_backbone, tmp_path):
    from safetensors.torch import load_file

    model = build(tiny_backbone).eval()
    model.save_pretrained(tmp_path / "saved")
    head = tmp_path / "saved" / "span_head.safetensors"
    torch.save(load_file(head), tmp_path / "saved" / "model.pt")  # the first releases' layout
    head.unlink()
    loaded = SpanModel.from_pretrained(tmp_path / "saved")
    for name, value in model.span_head.state_dict().items():
        assert torch.equal(value, loaded.span_head.state_dict()[name]), name
    (tmp_path / "saved" / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match="no span-head weights"):
        SpanModel.from_pretrained(tmp_path / "saved")


def test_span_logits_match_a_per_span_reference(tiny_backbone):
    """Each legal span's logit is the formula computed one span at a time; illegal spans hold the ignored value."""
    model = build(tiny_backbone).eval()
    with torch.no_grad():
        model.span_head.log_temperature.fill_(-1.2)
    batch = model_inputs(collate(model, tiny_records()), with_labels=False)
    head = model.span_head
    with torch.no_grad():
        out = model(**batch)
        states = model.token_encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        types = model.encode_types(batch["type_input_ids"], batch["type_attention_mask"])  # [C, H]
        type_span = torch.nn.functional.normalize(head.type_span(types), dim=-1)  # [C, D]
        legal = out.span_mask.nonzero().tolist()
        assert len(legal) > 10
        for b, i, w in legal:
            pre = head.span_start(states[b, i]) + head.span_end(states[b, i + w]) + head.width_embedding.weight[w]
            vector = torch.nn.functional.normalize(head.span_norm(torch.nn.functional.gelu(pre)), dim=-1)  # [D]
            expected = type_span @ vector / math.exp(-1.2)  # [C]
            torch.testing.assert_close(out.span_logits[b, :, i, w], expected, rtol=1e-5, atol=1e-5)
        illegal = ~out.span_mask[:, None].expand_as(out.span_logits)
        assert (out.span_logits[illegal] == IGNORED_SPAN_LOGIT).all()
        for logits, mask in ((out.start_logits, batch["start_mask"]), (out.end_logits, batch["end_mask"])):
            assert (logits.transpose(1, 2)[~mask.bool()] == IGNORED_SPAN_LOGIT).all()
            assert (logits.transpose(1, 2)[mask.bool()] > IGNORED_SPAN_LOGIT / 2).all()
        # The lazy path gives the same logits for any subset of legal spans.
        scores = model.score(batch["input_ids"], batch["attention_mask"], batch["start_mask"], batch["end_mask"],
                             type_input_ids=batch["type_input_ids"], type_attention_mask=batch["type_attention_mask"])
        picked = torch.tensor(legal[::3]).T  # [3, S]
        torch.testing.assert_close(scores.span_logits_at(*picked), out.span_logits[picked[0], :, picked[1], picked[2]])
        torch.testing.assert_close(scores.start_logits, out.start_logits)


def test_gradients_reach_every_head_parameter(tiny_backbone):
    model = build(tiny_backbone)
    model(**model_inputs(collate(model, tiny_records()))).loss.backward()
    for name, param in model.span_head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


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


@pytest.mark.parametrize("optim", ["adamw_torch_fused", "adamw_torch"])
def test_optimizer_groups_and_implementation(tiny_backbone, optim):
    from src.args import TrainingArgs
    from src.trainer import build_optimizer

    model = build(tiny_backbone)
    optimizer = build_optimizer(model, TrainingArgs(learning_rate=1e-4, head_learning_rate=1e-3, optim=optim))
    assert all(group["fused"] is (optim == "adamw_torch_fused") for group in optimizer.param_groups)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    assert lr_of[id(model.span_head.span_start.weight)] == (1e-3, 0.01)
    assert lr_of[id(model.span_head.log_temperature)] == (1e-3, 0.0)
    assert lr_of[id(model.token_encoder.embeddings.word_embeddings.weight)] == (1e-4, 0.01)
    assert len(lr_of) == sum(1 for _ in model.parameters())
