"""Collator: subword alignment (exact on hand cases, round trip on all of CoNLL-2003 train), labels, truncation."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from src.collator import InBatchDataCollator, align_encoding, gold_spans
from src.config import resolve_model_name_or_path

from .conftest import SHARED_DATA, make_record, tiny_records


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_name_or_path("all-MiniLM-L6-v2"))


def collator(tokenizer, fmt="tokens", **kwargs):
    kwargs.setdefault("max_seq_length", 64)
    kwargs.setdefault("max_span_length", 8)
    return InBatchDataCollator(tokenizer, tokenizer, annotation_format=fmt, **kwargs)


def test_alignment_hand_case(tokenizer):
    record = make_record(0, ["Washington", "D.C.", "rocks"], [(0, 2, "LOC")])
    # [CLS] washington d . c . rocks [SEP]
    for fmt, expected in (("tokens", (0, 2)), ("text", (0, 15))):
        batch = collator(tokenizer, fmt)([(0, record)])
        assert batch["labels"] == ["LOC"]
        inner = fmt == "text"  # "text" words come from the pre-tokenizer, which splits "D.C." into four words
        assert batch["start_mask"][0].tolist() == [False, True, True, inner, inner, inner, True, False]
        assert batch["end_mask"][0].tolist() == [False, True, inner, inner, inner, True, True, False]
        assert torch.nonzero(batch["span_labels"][0, 0]).tolist() == [[1, 4]]  # subwords 1..5
        assert batch["start_labels"][0, 0].nonzero().flatten().tolist() == [1]
        assert batch["end_labels"][0, 0].nonzero().flatten().tolist() == [5]
        assert batch["alignments"][0].to_units(1, 5) == expected


def test_in_batch_types_and_fixed_label_set(tokenizer):
    items = list(enumerate(tiny_records()[:3]))
    assert collator(tokenizer)(items)["labels"] == ["LOC", "ORG", "PER"]
    assert collator(tokenizer)(items[2:])["labels"] == ["LOC"]
    fixed = collator(tokenizer, label_set=["PER", "LOC", "unseen type"])(items[2:])
    assert fixed["labels"] == ["PER", "LOC", "unseen type"]
    assert fixed["type_input_ids"].shape[0] == 3
    assert fixed["span_labels"][:, 1].sum() == 1 and fixed["span_labels"][:, 0].sum() == 0


def test_type_descriptions_feed_the_type_encoder(tokenizer):
    batch = collator(tokenizer, type_descriptions={"PER": "person name"})([(0, tiny_records()[0])])
    texts = tokenizer.batch_decode(batch["type_input_ids"], skip_special_tokens=True)
    assert texts == ["loc", "person name"]


def test_truncation_and_width_losses_are_counted(tokenizer):
    long_tokens = ["word"] * 40 + ["Paris"]
    record = make_record(0, long_tokens, [(40, 41, "LOC"), (0, 10, "MISC")])
    counts = collator(tokenizer, max_seq_length=20, max_span_length=4).audit([record])
    assert counts == {"entities": 2, "truncated": 1, "too_long": 1}


def test_truncated_word_cannot_end_a_span(tokenizer):
    record = make_record(0, ["a", "Washington"], [])
    enc = collator(tokenizer, max_seq_length=4).tokenize([record])  # [CLS] a washington [SEP] fits exactly
    _, _, ends = align_encoding(enc.encodings[0], annotation_format="tokens")
    assert ends == [False, True, True, False]
    enc = collator(tokenizer, max_seq_length=4).tokenize([make_record(0, ["a", "D.C."], [])])  # d . | c .
    _, _, ends = align_encoding(enc.encodings[0], annotation_format="tokens")
    assert ends == [False, True, False, False]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tokens", "text"])
def test_alignment_round_trip_on_conll_train(tokenizer, fmt):
    path = SHARED_DATA / "conll2003" / "train.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    from src.conll import convert_conll_file

    records = convert_conll_file(path).records
    assert len(records) == 14041
    col = collator(tokenizer, fmt, max_seq_length=512, max_span_length=64)
    checked = 0
    for begin in range(0, len(records), 512):
        chunk = records[begin:begin + 512]
        enc = col.tokenize(chunk)
        for b, record in enumerate(chunk):
            alignment, _, _ = align_encoding(enc.encodings[b], annotation_format=fmt)
            for start, end, _ in gold_spans(record, fmt):
                sub = alignment.to_subwords(start, end)
                assert sub is not None, (record["id"], start, end)
                assert alignment.to_units(*sub) == (start, end)
                checked += 1
    assert checked == 23499
