"""Tests for src/corpus_formats.py and src/json_formats.py: every shared corpus converts to its published counts,
the benchmark JSON and SLURP readers (word rule, errors, round trip), label maps and the formatter's new options."""

from __future__ import annotations

import json

import pytest

from conll_dataset_formatter import main as formatter_main
from src.conll import WHITESPACE_REPLACEMENT, record_to_spans
from src.conversion import parse_label_map
from src.corpus_formats import CORPUS_FORMATS, label_name_problem, read_corpus
from src.data import DataValidationError, read_jsonl
from src.json_formats import benchmark_to_result, records_to_benchmark

from .conftest import SHARED_DATA, make_record, tiny_records, write_jsonl

# (folder, file, format, tag_column): (sentences, entities) as published in ../shared/data/README.md
SHARED_COUNTS = {
    ("conll2003", "train.txt", "conll", None): (14041, 23499),
    ("conll2003", "valid.txt", "conll", None): (3250, 5942),
    ("conll2003", "test.txt", "conll", None): (3453, 5648),
    ("wnut17", "wnut17train.conll", "conll", None): (3394, 1975),
    ("wnut17", "emerging.dev.conll", "conll", None): (1009, 836),
    ("wnut17", "emerging.test.annotated", "conll", None): (1287, 1079),
    ("wikigold", "wikigold.conll.txt", "conll", None): (1696, 3558),
    ("btc", "btc.train", "conll", None): (6338, 8779),
    ("btc", "btc.dev", "conll", None): (1001, 1730),
    ("btc", "btc.test", "conll", None): (2001, 4376),
    ("harveyner", "tweets.train.bio", "conll", None): (3967, 1581),
    ("harveyner", "tweets.dev.bio", "conll", None): (1301, 523),
    ("harveyner", "tweets.test.bio", "conll", None): (1303, 500),
    ("gum", "gum-train.conll", "conll", None): (2495, 8285),
    ("gum", "gum-test.conll", "conll", None): (1000, 3439),
    ("re3d", "re3d-train.conll", "conll", None): (765, 2718),
    ("re3d", "re3d-test.conll", "conll", None): (200, 676),
    ("sec_filings", "FIN5.txt", "conll", None): (1164, 1168),
    ("sec_filings", "FIN3.txt", "conll", None): (303, 318),
    ("stackoverflow", "train.txt", "conll", 2): (14545, 13460),
    ("stackoverflow", "dev.txt", "conll", 2): (4607, 4337),
    ("stackoverflow", "test.txt", "conll", 2): (4940, 4654),
    ("slurp", "devel.jsonl", "slurp", None): (2033, 2022),
    ("slurp", "test.jsonl", "slurp", None): (2974, 2823),
    ("anem", "AnEM.train", "conll", None): (2815, 1879),
    ("anem", "AnEM.test", "conll", None): (1882, 1256),
    ("bionlp13cg", "train.tsv", "conll", None): (3033, 10826),
    ("bionlp13cg", "devel.tsv", "conll", None): (1003, 3616),
    ("bionlp13cg", "test.tsv", "conll", None): (1906, 6881),
    ("bc5cdr", "train.tsv", "conll", None): (4560, 9385),
    ("bc5cdr", "devel.tsv", "conll", None): (4581, 9593),
    ("bc5cdr", "test.tsv", "conll", None): (4797, 9809),
    ("ncbi_disease", "train.tsv", "conll", None): (5424, 5134),
    ("ncbi_disease", "devel.tsv", "conll", None): (923, 787),
    ("ncbi_disease", "test.tsv", "conll", None): (940, 960),
    ("jnlpba", "devel.tsv", "conll", None): (1739, 4551),
    ("jnlpba", "test.tsv", "conll", None): (3856, 8662),
    ("bc2gm", "train.tsv", "conll", None): (12574, 15197),
    ("bc2gm", "devel.tsv", "conll", None): (2519, 3061),
    ("bc2gm", "test.tsv", "conll", None): (5038, 6325),
    ("linnaeus", "train.tsv", "conll", None): (11935, 2119),
    ("linnaeus", "devel.tsv", "conll", None): (4078, 711),
    ("linnaeus", "test.tsv", "conll", None): (7142, 1433),
}
# What the readers had to change, where anything: (empty sentences skipped, whitespace tokens replaced).
# btc.dev: one "sentence" is a single empty token (line 7465), which the README counts and the reader skips;
# its lines 15429-15432 (`ke s`, ...) and 15435 (a lone space) are the replaced tokens.
SHARED_REPAIRS = {"btc.dev": (1, 5), "btc.test": (0, 1)}


@pytest.mark.slow
@pytest.mark.parametrize(("folder", "name", "format", "tag_column"), sorted(SHARED_COUNTS))
def test_every_shared_corpus_file_converts_to_the_published_counts(folder, name, format, tag_column):
    path = SHARED_DATA / folder / name
    if not path.is_file():
        pytest.skip(f"reference data {path} not present (expected at ../shared/data next to the repository)")
    result = read_corpus(path, format=format, tag_column=tag_column)
    sentences, entities = SHARED_COUNTS[(folder, name, format, tag_column)]
    skipped, replaced = SHARED_REPAIRS.get(name, (0, 0))
    assert (len(result.records) + result.empty_sentences, result.empty_sentences) == (sentences, skipped)
    assert sum(len(record["token_spans"]) for record in result.records) == entities
    assert result.replaced_whitespace_tokens == replaced
    ids = [record["id"] for record in result.records]
    assert ids == [str(k) for k in range(len(ids))]
    for record in result.records:
        assert all(token and not any(char.isspace() for char in token) for token in record["tokens"])
        for token_span, char_span in zip(record["token_spans"], record["char_spans"], strict=True):
            covered = " ".join(record["tokens"][token_span["start"] : token_span["end"]])
            assert record["text"][char_span["start"] : char_span["end"]] == covered
    if folder == "stackoverflow":
        assert len(result.source_labels) == (28 if name == "train.txt" else 27)  # the human tags of column 2


def test_btc_dev_token_with_a_space_gets_the_visible_character():
    path = SHARED_DATA / "btc" / "btc.dev"
    if not path.is_file():
        pytest.skip("reference data not present")
    tokens = [token for record in read_corpus(path, format="conll").records for token in record["tokens"]]
    assert f"ke{WHITESPACE_REPLACEMENT}s" in tokens and tokens.count(WHITESPACE_REPLACEMENT) == 1


# ----------------------------------------------------------------------------------------------- benchmark JSON


BENCHMARK = [
    {"sentence": "The U.S.-based  firm   hired Ada Lovelace .",
     "entities": [{"name": "U.S.", "type": "country", "pos": [4, 8]},
                  {"name": "Ada Lovelace", "type": "person", "pos": [29, 41]},
                  {"name": "Ada Lovelace", "type": "person", "pos": [29, 41]}]},
    {"sentence": "nothing here", "entities": []},
]


def write_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def test_benchmark_words_are_split_at_entity_boundaries(tmp_path):
    result = read_corpus(write_json(tmp_path / "b.json", BENCHMARK), format="benchmark")
    first, second = result.records
    assert first == make_record(0, ["The", "U.S.", "-based", "firm", "hired", "Ada", "Lovelace", "."],
                                [(1, 2, "country"), (5, 7, "person")])
    assert first["text"][first["char_spans"][1]["start"] : first["char_spans"][1]["end"]] == "Ada Lovelace"
    assert second == make_record(1, ["nothing", "here"], [])
    assert (result.split_words, result.duplicate_spans, result.source_labels) == (1, 1, ["country", "person"])


def test_benchmark_round_trips_through_jsonl(tmp_path, capsys):
    records = tiny_records()
    items = records_to_benchmark(records)
    assert items[0] == {"sentence": "John Smith lives in New York .",
                        "entities": [{"name": "John Smith", "type": "PER", "pos": [0, 10]},
                                     {"name": "New York", "type": "LOC", "pos": [20, 28]}]}
    assert benchmark_to_result(items).records == records  # ids are positions here, as in tiny_records
    source = write_jsonl(tmp_path / "in.jsonl", records)
    target, back = tmp_path / "bench.json", tmp_path / "back.jsonl"
    assert formatter_main(["--to-benchmark", str(source), "--output", str(target)]) == 0
    assert json.loads(target.read_text(encoding="utf-8")) == items
    assert formatter_main(["--input", str(target), "--format", "benchmark", "--output", str(back)]) == 0
    assert read_jsonl(back) == records
    out = capsys.readouterr().out
    assert "sentences: 6  entities: 11 (benchmark format)" in out
    assert "format: benchmark  words split at entity boundaries: 0  duplicate spans dropped: 0" in out


@pytest.mark.parametrize(("item", "message"), [
    ({"sentence": "Ada wrote", "entities": [{"name": "Ada", "type": "person", "pos": [0, 4]}]},
     "item 1: entities[0] name 'Ada' differs from sentence[0:4] 'Ada '"),
    ({"sentence": "Ada wrote", "entities": [{"name": "Ada", "type": "person", "pos": [0, 40]}]},
     "item 1: entities[0].pos [0, 40] is empty or outside the sentence (9 characters)"),
    ({"sentence": "Ada wrote", "entities": [{"name": "Ada", "type": "person", "pos": ["0", 3]}]},
     "item 1: entities[0].pos must be [start, end] (integers), got ['0', 3]"),
    ({"sentence": "Ada wrote", "entities": [{"name": "Ada", "label": "person", "pos": [0, 3]}]},
     "item 1: entities[0] must be an object with exactly the keys name, type, pos; got ['label', 'name', 'pos']"),
    ({"sentence": "Ada wrote", "entities": [{"name": "Ada ", "type": "person", "pos": [0, 4]}]},
     "item 1: entities[0] 'Ada ' starts or ends with whitespace"),
    ({"sentence": "Ada wrote", "entities": [{"name": "Ada", "type": "", "pos": [0, 3]}]},
     "item 1: entities[0].type must be a non-empty string, got ''"),
    ({"sentence": "  ", "entities": []}, "item 1: 'sentence' must be a string with at least one word"),
    ({"text": "Ada", "entities": []},
     "item 1: expected an object with exactly the keys 'sentence' and 'entities', got ['entities', 'text']"),
])
def test_benchmark_errors_name_the_item(tmp_path, item, message):
    path = write_json(tmp_path / "bad.json", [BENCHMARK[1], item])
    with pytest.raises(ValueError) as caught:
        read_corpus(path, format="benchmark")
    assert str(caught.value) == f"{path}: {message}"


# ----------------------------------------------------------------------------------------------- SLURP


def slurp_line(surfaces, entities, **extra):
    tokens = [{"surface": surface, "id": k, "lemma": surface} for k, surface in enumerate(surfaces)]
    return json.dumps({"slurp_id": 1, "intent": "x", "tokens": tokens, "entities": entities, **extra})


def test_slurp_reads_token_id_spans_and_replaces_whitespace(tmp_path):
    lines = [slurp_line(["wake", "me", "at", "seven", "am"], [{"type": "time", "span": [3, 4]}]),
             "",
             slurp_line(["play", "new york", "jazz"], [{"type": "music_genre", "span": [2]},
                                                      {"type": "music_genre", "span": [2]}])]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = read_corpus(path, format="slurp", label_map={"music_genre": "music genre"})
    assert [record_to_spans(r) for r in result.records] == [
        (["wake", "me", "at", "seven", "am"], [(3, 5, "time")]),
        (["play", f"new{WHITESPACE_REPLACEMENT}york", "jazz"], [(2, 3, "music genre")]),
    ]
    assert [r["id"] for r in result.records] == ["0", "1"]
    assert (result.replaced_whitespace_tokens, result.duplicate_spans) == (1, 1)
    assert result.source_labels == ["music_genre", "time"]


@pytest.mark.parametrize(("entities", "message"), [
    ([{"type": "time", "span": [1, 3]}], "entities[0] ('time') span [1, 3] is not a run of contiguous token ids"),
    ([{"type": "time", "span": [2, 3]}], "entities[0] ('time') span [2, 3] lies outside the 3 tokens"),
    ([{"type": "time", "span": []}], "entities[0].span must be a non-empty list of token ids, got []"),
    ([{"span": [0]}], "entities[0] must be an object with 'type' and 'span'"),
])
def test_slurp_errors_name_line_and_entity(tmp_path, entities, message):
    path = tmp_path / "s.jsonl"
    path.write_text(slurp_line(["a"], []) + "\n" + slurp_line(["a", "b", "c"], entities) + "\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as caught:
        read_corpus(path, format="slurp")
    assert str(caught.value) == f"{path}:2: {message}"


# ----------------------------------------------------------------------------------------------- read_corpus


def test_jsonl_label_map_renames_spans_and_merges_duplicates(tmp_path):
    record = make_record("a", ["Ada", "Lovelace"], [(0, 2, "PER"), (0, 2, "PERSON"), (0, 1, "NAME")])
    path = write_jsonl(tmp_path / "r.jsonl", [record])
    result = read_corpus(path, format="jsonl", label_map={"PER": "person", "PERSON": "person"})
    assert result.records == [make_record("a", ["Ada", "Lovelace"], [(0, 2, "person"), (0, 1, "NAME")])]
    assert (result.source_labels, result.duplicate_spans, result.scheme) == (["NAME", "PER", "PERSON"], 1, "none")
    assert read_corpus(path, format="jsonl").records == read_jsonl(path)


def test_read_corpus_argument_errors(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", tiny_records())
    assert CORPUS_FORMATS == ("jsonl", "conll", "gliner", "benchmark", "slurp")
    only_conll = "scheme and tag_column apply to the conll format only"
    cases = [
        (dict(format="csv"), "unknown format 'csv'; expected one of jsonl, conll, gliner, benchmark, slurp"),
        (dict(format="jsonl", tag_column=2), f"{only_conll}, not jsonl"),
        (dict(format="slurp", scheme="iob2"), f"{only_conll}, not slurp"),
        (dict(format="conll", scheme="bio"), "unknown scheme 'bio'; expected auto or one of iob1, iob2, bioes"),
        (dict(format="jsonl", label_map={"PER": " person"}),
         "label_map: label 'PER' maps to ' person': it starts or ends with whitespace"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as caught:
            read_corpus(path, **kwargs)
        assert str(caught.value) == f"{path}: {message}"
    with pytest.raises(FileNotFoundError, match="no such slurp file"):
        read_corpus(tmp_path / "missing.jsonl", format="slurp")


def test_label_names_may_contain_spaces_but_not_edge_whitespace_or_control_characters():
    assert [label_name_problem(name) for name in ("point of interest", "creative-work", "C++ class", "é")] == [None] * 4
    assert label_name_problem("") == "expected a non-empty string"
    assert label_name_problem(3) == "expected a non-empty string"
    assert label_name_problem("person ") == "it starts or ends with whitespace"
    assert label_name_problem("a\tb") == "it contains a control character"
    assert parse_label_map('{"POINT": "point of interest"}') == {"POINT": "point of interest"}
    with pytest.raises(ValueError, match=r"^--label-map: label 'X' maps to 'a\\nb': it contains a control character"):
        parse_label_map('{"X": "a\\nb"}')


# ----------------------------------------------------------------------------------------------- formatter CLI


def test_formatter_reads_the_tag_column_and_reports_whitespace_tokens(tmp_path, capsys):
    source = tmp_path / "so.txt"
    source.write_text("Use\tO\tUse\tO\nNum Py\tB-Library\tNumPy\tB-Code\n\t\n", encoding="utf-8")
    out = tmp_path / "so.jsonl"
    code = formatter_main(["--input", str(source), "--tag-column", "2", "--output", str(out),
                           "--label-map", '{"Library": "software library"}'])
    assert code == 0
    [record] = read_jsonl(out)
    assert record_to_spans(record) == (["Use", f"Num{WHITESPACE_REPLACEMENT}Py"], [(1, 2, "software library")])
    assert capsys.readouterr().out.endswith(
        "  scheme: iob2  repaired tags: 0  dropped empty tokens: 0  empty sentences skipped: 0  "
        "whitespace tokens replaced: 1\n")


@pytest.mark.parametrize(("args", "message"), [
    (["--stats", "x.jsonl", "--format", "slurp"], "--format goes with --input"),
    (["--input", "x", "--format", "slurp", "--tag-column", "2", "--output", "o"], "--tag-column goes with CoNLL"),
    (["--input", "x", "--tag-column", "1", "--output", "o"], "--tag-column must be 2 or more"),
    (["--input", "x", "--format", "benchmark", "--scheme", "iob2", "--output", "o"], "--scheme goes with CoNLL"),
    (["--to-benchmark", "x.jsonl", "--output", "o.json", "--label-map", "{}"], "--label-map and --scheme go with"),
])
def test_formatter_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as caught:
        formatter_main(args)
    assert caught.value.code == 2 and message in capsys.readouterr().err


def test_formatter_converts_a_slurp_folder(tmp_path, capsys):
    folder = tmp_path / "slurp"
    folder.mkdir()
    (folder / "devel.jsonl").write_text(slurp_line(["hi", "anna"], [{"type": "person", "span": [1]}]) + "\n")
    (folder / "README.md").write_text("not a corpus file\n")
    assert formatter_main(["--input", str(folder), "--format", "slurp", "--output", str(tmp_path / "out")]) == 0
    assert read_jsonl(tmp_path / "out" / "devel.jsonl") == [make_record(0, ["hi", "anna"], [(1, 2, "person")])]
    assert "format: slurp  duplicate spans dropped: 0  whitespace tokens replaced: 0" in capsys.readouterr().out
