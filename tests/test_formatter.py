"""Tests for conll_dataset_formatter.py with src/conversion.py and src/corpus_stats.py: the reference corpora's exact
counts, folder and file conversion, label maps, exit codes, the Hugging Face path (in memory) and --stats.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conll_dataset_formatter import main
from src import conversion
from src.conll import convert_conll_file, make_record
from src.corpus_stats import compute_corpus_stats, load_tokenizer
from src.data import read_jsonl, write_jsonl

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CONLL_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]  # conll2003 ClassLabel

CORPORA = {  # folder: {file: (sentences, entities)} as published in ../shared/data/README.md
    "conll2003": {"train.txt": (14041, 23499), "valid.txt": (3250, 5942), "test.txt": (3453, 5648)},
    "wnut17": {
        "wnut17train.conll": (3394, 1975),
        "emerging.dev.conll": (1009, 836),
        "emerging.test.annotated": (1287, 1079),
    },
}
SMALL_CONLL = "-DOCSTART- -X- -X- O\n\nJohn NNP B-NP B-PER\nSmith NNP I-NP I-PER\nvisited VBD B-VP O\n" \
    "Paris NNP B-NP B-LOC\n\nIBM NNP B-NP I-ORG\n"  # the last tag is a stray IOB2 I-: one repair


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "conll_dataset_formatter.py", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env=env,
    )


def shared_file(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} not present (expected at ../shared/data next to the repository)")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_reference_corpora_convert_to_published_counts(tmp_path, capsys, corpus):
    folder = shared_file(corpus)
    assert main(["--input", str(folder), "--output", str(tmp_path)]) == 0
    summary = capsys.readouterr().out
    for name, (sentences, entities) in CORPORA[corpus].items():
        records = read_jsonl(tmp_path / f"{Path(name).stem}.jsonl")  # validates every record
        assert len(records) == sentences
        assert sum(len(record["token_spans"]) for record in records) == entities
        for record in records:
            for token_span, char_span in zip(record["token_spans"], record["char_spans"], strict=True):
                covered = " ".join(record["tokens"][token_span["start"] : token_span["end"]])
                assert record["text"][char_span["start"] : char_span["end"]] == covered
        assert f"sentences: {sentences:,}" in summary and f"entities: {entities:,}" in summary
    assert summary.count("repaired tags: 0 ") == 3


def test_wnut17_dev_bom_is_stripped_from_its_token():
    result = convert_conll_file(shared_file("wnut17", "emerging.dev.conll"))
    tokens = [token for record in result.records for token in record["tokens"]]
    assert not any("\ufeff" in token for token in tokens)
    assert "Dubbz" in tokens and result.dropped_tokens == 0


def test_file_conversion_with_label_map_and_summary(tmp_path, capsys):
    source = tmp_path / "small.txt"
    source.write_text(SMALL_CONLL, encoding="utf-8")
    label_file = tmp_path / "labels.json"
    label_file.write_text('{"PER": "person", "ORG": "organisation", "MISC": "misc"}', encoding="utf-8")
    target = tmp_path / "small.jsonl"
    assert main(["--input", str(source), "--output", str(target), "--label-map", str(label_file)]) == 0
    assert read_jsonl(tmp_path / "small.jsonl") == [  # one -DOCSTART- document of two sentences
        dict(make_record(0, ["John", "Smith", "visited", "Paris"], [(0, 2, "person"), (3, 4, "LOC")]), doc_id="0",
             sentence_index=0),
        dict(make_record(1, ["IBM"], [(0, 1, "organisation")]), doc_id="0", sentence_index=1),
    ]
    summary = capsys.readouterr().out
    assert "sentences: 2  tokens: 5" in summary
    assert "entities: 3 (LOC 1, organisation 1, person 1)" in summary
    assert "scheme: iob2  repaired tags: 1" in summary  # IOB2 needs one repair (IBM), IOB1 two (John, Paris)
    assert "label map keys not found in this file: MISC" in summary
    # A JSON string works as well, and an explicit scheme is honoured: same spans, IOB1's repair count.
    args = ["--input", str(source), "--output", str(tmp_path), "--scheme", "iob1", "--label-map", '{"LOC": "place"}']
    assert main(args) == 0
    assert [r["token_spans"][-1]["label"] for r in read_jsonl(tmp_path / "small.jsonl")] == ["place", "ORG"]
    assert "scheme: iob1  repaired tags: 2" in capsys.readouterr().out


def test_folder_conversion_skips_readme_hidden_and_jsonl(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.txt").write_text("a B-X\n", encoding="utf-8")
    (corpus / "emerging.test.annotated").write_text("b O\n", encoding="utf-8")
    for skipped in ("README.md", "README", ".hidden", "old.jsonl"):
        (corpus / skipped).write_text("not conll\n", encoding="utf-8")
    assert main(["--input", str(corpus), "--output", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["emerging.test.jsonl", "train.jsonl"]
    (corpus / "train.conll").write_text("c O\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.conll and .*train\.txt would both be written to .*train\.jsonl"):
        conversion.convert_paths(corpus, tmp_path / "out")


def test_exit_codes_and_messages(tmp_path):
    missing = run_cli("--input", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "x.jsonl"))
    assert missing.returncode == 1
    assert f"{tmp_path / 'missing.txt'}: no such file or folder" in missing.stderr
    # A malformed file leaves an existing output (and the folder) exactly as it was.
    source = tmp_path / "bad.txt"
    source.write_text("a O\nb B-PER\nc\n", encoding="utf-8")
    target = tmp_path / "out.jsonl"
    target.write_text("precious\n", encoding="utf-8")
    bad = run_cli("--input", str(source), "--output", str(target))
    assert bad.returncode == 1
    assert f"error: {source}:3: expected a token and a tag" in bad.stderr
    assert target.read_text(encoding="utf-8") == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "out.jsonl"]
    bad_jsonl = run_cli("--stats", str(target))
    assert bad_jsonl.returncode == 1 and f"{target}:1: invalid JSON" in bad_jsonl.stderr
    assert main(["--input", str(source), "--output", str(target), "--label-map", "[1]"]) == 1
    with pytest.raises(SystemExit) as usage:
        main(["--output", str(target)])
    assert usage.value.code == 2


def conll2003_dataset_dict():
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=CONLL_NAMES))})
    train = Dataset.from_dict(
        {"tokens": [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]], "ner_tags": [[3, 0, 7, 0], [1, 2]]},
        features=features,
    )
    test = Dataset.from_dict({"tokens": [["In", "Paris"]], "ner_tags": [[0, 5]]}, features=features)
    return DatasetDict({"train": train, "test": test})


def test_hf_dataset_conversion_in_memory(tmp_path, capsys, monkeypatch):
    dataset_dict = conll2003_dataset_dict()
    result = conversion.hf_split_to_records(dataset_dict["train"], label_map={"PER": "person"})
    assert result.records == [
        make_record(0, ["EU", "rejects", "German", "call"], [(0, 1, "ORG"), (2, 3, "MISC")]),
        make_record(1, ["Peter", "Blackburn"], [(0, 2, "person")]),
    ]
    assert (result.scheme, result.repaired_tags) == ("iob2", 0)
    # The command line runs the same conversion on what load_dataset returns (replaced here: no network in tests).
    monkeypatch.setattr(conversion, "load_hf_dataset", lambda name, config=None: dataset_dict)
    assert main(["--hf-dataset", "conll2003", "--output", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.jsonl", "train.jsonl"]
    assert read_jsonl(tmp_path / "test.jsonl") == [make_record(0, ["In", "Paris"], [(1, 2, "LOC")])]
    assert "conll2003[train] -> " in capsys.readouterr().out


def test_hf_dataset_with_string_tags_and_a_bad_tag():
    from datasets import Dataset

    dataset = Dataset.from_dict({"tokens": [["a", "b"], ["c"]], "ner_tags": [["B-X", "I-X"], ["Q-X"]]})
    with pytest.raises(ValueError, match=r"^wnut\[train\]:2: invalid tag 'Q-X'"):
        conversion.hf_split_to_records(dataset, source="wnut[train]")
    good = conversion.hf_split_to_records(dataset.select([0]))
    assert good.records == [make_record(0, ["a", "b"], [(0, 2, "X")])]


def test_unreachable_hub_fails_at_once_with_the_local_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k.upper() not in
           ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # a closed local port stands in for "no network"; nothing leaves the host
    started = time.monotonic()
    result = run_cli("--hf-dataset", "conll2003", "--output", str(tmp_path), env=env)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert "hub is unreachable" in result.stderr
    assert "python conll_dataset_formatter.py --input ../shared/data/conll2003 --output" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_offline_mode_error_from_datasets_is_reported_as_unreachable(monkeypatch):
    import datasets

    def refuse(name, config=None):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(conversion.HubUnreachableError, match="hub is unreachable.*OfflineModeIsEnabled.*--input"):
        conversion.load_hf_dataset("conll2003")


@pytest.fixture(scope="module")
def embedded_tokenizer():
    return load_tokenizer("all-MiniLM-L6-v2")


# Hand-checkable with MiniLM's uncased WordPiece: every word is one subword except Schwarzenegger and Dubbz
# (3 each), and the zero-width space, which has none.
LONG = ["Anna"] + ["the"] * 12 + ["New", "York"] + ["the"] * 3 + ["Paris"]  # 19 words -> 21 subwords with CLS/SEP
STATS_RECORDS = [
    make_record(0, LONG, [(0, 1, "PER"), (13, 15, "LOC"), (18, 19, "LOC")]),
    make_record(1, ["Schwarzenegger", "met", "\u200b", "Dubbz"], [(0, 1, "PER"), (3, 4, "PER")]),
    # nested: (0,3)>(1,2) twice; crossing: (0,3)x(2,4); same offsets: the two (1,2)
    make_record(2, ["a", "b", "c", "d", "e"], [(0, 3, "ORG"), (1, 2, "LOC"), (1, 2, "PER"), (2, 4, "MISC")]),
]


def test_stats_counts_truncation_span_lengths_and_overlaps(embedded_tokenizer):
    # max_seq_length 16 keeps CLS + 14 words + SEP: "New" (word 13) survives, "York" (14) and "Paris" (18) do not.
    stats = compute_corpus_stats(STATS_RECORDS, tokenizer=embedded_tokenizer, max_seq_length=16, max_span_length=2)
    assert (stats.sentences, stats.tokens) == (3, 28)
    assert dict(stats.entities) == {"PER": 4, "LOC": 3, "ORG": 1, "MISC": 1}
    assert dict(stats.span_lengths) == {1: 6, 2: 2, 3: 1}
    assert (stats.nested_pairs, stats.crossing_pairs, stats.same_offset_pairs) == (2, 1, 1)
    assert stats.special_tokens == 2 and stats.subwords_max == 21
    assert (stats.sentences_truncated, stats.entities_truncated) == (1, 2)
    assert stats.entities_over_max_span_tokens == 1  # (0, 3, ORG)
    assert stats.entities_over_max_span_subwords == 3  # Schwarzenegger, Dubbz, (0, 3, ORG)
    assert stats.words_without_subwords == 1
    loose = compute_corpus_stats(STATS_RECORDS, tokenizer=embedded_tokenizer, max_seq_length=21)
    assert (loose.sentences_truncated, loose.entities_truncated, loose.max_seq_length) == (0, 0, 21)


def test_stats_command_prints_the_report(tmp_path, capsys, embedded_tokenizer):
    path = tmp_path / "stats.jsonl"
    write_jsonl(path, STATS_RECORDS)
    args = ["--stats", str(path), "--tokenizer", "sentence-transformers/all-MiniLM-L6-v2", "--max-seq-length", "16"]
    assert main(args) == 0
    report = capsys.readouterr().out
    for line in ("sentences: 3", "entities: 9 in 4 types", "overlapping span pairs: 4 (nested 2, crossing 1, same",
                 "max_seq_length 16, 2 special tokens", "entities cut by truncation: 2", "words with no subword: 1"):
        assert line in report
    assert main(["--stats", str(path)]) == 0
    assert "tokenizer" not in capsys.readouterr().out
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[1])["tokens"][2] == "\u200b"
