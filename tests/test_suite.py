"""Zero-shot suites (src/suite.py and evaluate.py --suite): strict suite files, per-dataset formats, renames and
label sets, gold of unasked types kept as misses, hand-computed P/R/F1 and average, the table, and the fixed suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import evaluate as evaluate_cli
from src.config import SpanModelConfig
from src.model import SpanModel
from src.suite import (
    SUITE_KEYS,
    SuiteDataset,
    SuiteError,
    format_suite_table,
    load_suite,
    load_suite_dataset,
    suite_results,
)

from .conftest import REPO_ROOT, SHARED_DATA, make_record, write_jsonl
from .span_stub import WordSpotter

# Dataset "news" (project JSONL, labels from its gold: LOC, PER): the spotter finds both Paris LOC, misses Anna.
NEWS = [make_record("n0", ["Anna", "visited", "Paris", "."], [(0, 1, "PER"), (2, 3, "LOC")]),
        make_record("n1", ["Paris", "is", "big"], [(0, 1, "LOC")])]
# Dataset "bench" (benchmark JSON, city -> LOC, labels ["LOC"]): person entities are not asked for, so misses.
BENCH = [
    {"sentence": "Ann met Bob in Paris and Rome",
     "entities": [{"name": "Paris", "type": "city", "pos": [15, 20]}, {"name": "Rome", "type": "city", "pos": [25, 29]},
                  {"name": "Ann", "type": "person", "pos": [0, 3]}]},
    {"sentence": "Paris-based firms", "entities": [{"name": "Paris", "type": "city", "pos": [0, 5]}]},
    {"sentence": "Paris Hilton sings", "entities": [{"name": "Paris Hilton", "type": "person", "pos": [0, 12]}]},
]
# Hand-computed: news 2 of 2 predictions right, 2 of 3 gold found; bench 2 of 3 right, 2 of 5 gold found.
EXPECTED = {"news": (1.0, 2 / 3, 0.8), "bench": (2 / 3, 2 / 5, 0.5)}
EXPECTED_AVERAGE = ((1.0 + 2 / 3) / 2, (2 / 3 + 2 / 5) / 2, (0.8 + 0.5) / 2)


def write_two_dataset_suite(folder: Path) -> Path:
    """The news (JSONL) + bench (benchmark JSON) suite in `folder`; returns the suite file."""
    write_jsonl(folder / "news.jsonl", NEWS)
    (folder / "bench.json").write_text(json.dumps(BENCH), encoding="utf-8")
    suite = [{"name": "news", "path": str(folder / "news.jsonl")},
             {"name": "bench", "path": str(folder / "bench.json"), "format": "benchmark", "labels": ["LOC"],
              "label_map": {"city": "LOC"}}]
    path = folder / "suite.json"
    path.write_text(json.dumps(suite), encoding="utf-8")
    return path


def spot_paris(records: list[dict], labels: list[str]) -> list[list[tuple]]:
    """What WordSpotter(word="Paris", label="LOC") predicts, in token units: every word "Paris" as LOC."""
    return [[(k, k + 1, "LOC", 1.0) for k, token in enumerate(r["tokens"]) if token == "Paris" and "LOC" in labels]
            for r in records]


def check_expected(results: dict) -> None:
    assert list(results["datasets"]) == ["news", "bench"]
    for name, (precision, recall, f1) in EXPECTED.items():
        entry = results["datasets"][name]
        assert (entry["precision"], entry["recall"], entry["f1"]) == pytest.approx((precision, recall, f1), abs=1e-12)
    average = results["average"]
    assert (average["precision"], average["recall"], average["f1"]) == pytest.approx(EXPECTED_AVERAGE, abs=1e-12)
    bench = results["datasets"]["bench"]
    assert (bench["num_gold_entities"], bench["num_unasked_gold_entities"], bench["labels"]) == (5, 2, ["LOC"])
    assert results["datasets"]["news"]["labels"] == ["LOC", "PER"]


EXPECTED_TABLE = """\
dataset  sentences     gold  types       P       R      F1
----------------------------------------------------------
news             2        3      2  1.0000  0.6667  0.8000
bench            3        5      1  0.6667  0.4000  0.5000
----------------------------------------------------------
average                             0.8333  0.5333  0.6500
average: unweighted mean over the 2 datasets of their micro P, R and F1
note: bench: 2 gold entities have types outside its labels; they count as misses"""


# ----------------------------------------------------------------------------------------------- suite files


def test_load_suite_reads_entries_with_defaults(tmp_path):
    datasets = load_suite(write_two_dataset_suite(tmp_path))
    assert datasets == [
        SuiteDataset("news", tmp_path / "news.jsonl"),
        SuiteDataset("bench", tmp_path / "bench.json", format="benchmark", labels=("LOC",), label_map={"city": "LOC"}),
    ]
    assert datasets[0].format == "jsonl" and datasets[0].scheme == "auto"
    records, labels = load_suite_dataset(datasets[1])
    assert labels == ["LOC"] and records[1]["tokens"] == ["Paris", "-based", "firms"]
    assert [s["label"] for s in records[0]["token_spans"]] == ["LOC", "LOC", "person"]  # unasked gold stays
    first, labels = load_suite_dataset(SuiteDataset("n", tmp_path / "news.jsonl", max_examples=1))
    assert [r["id"] for r in first] == ["n0"] and labels == ["LOC", "PER"]


@pytest.mark.parametrize(("content", "message"), [
    ('{"name": "a"}', "expected a JSON list of datasets, got object"),
    ("[]", "the suite lists no datasets"),
    ('[\n{"name": }]', "2: invalid JSON: Expecting value (column 10)"),
    ('["a.jsonl"]', "entry 0: expected an object with name, path, ..., got string"),
    ('[{"name": "a", "path": "a.jsonl"}, {"name": "b", "path": "b", "lables": ["x"]}]',
     f"entry 1: unknown key 'lables'; allowed: {', '.join(SUITE_KEYS)}"),
    ('[{"name": "a"}]', "entry 0: missing key 'path'"),
    ('[{"name": "", "path": "a"}]', "entry 0: key 'name' must be a non-empty string, got ''"),
    ('[{"name": "a", "path": "a", "format": "csv"}]',
     "entry 0: key 'format' must be one of jsonl, conll, gliner, benchmark, slurp, got 'csv'"),
    ('[{"name": "a", "path": "a", "labels": "x"}]', "entry 0: key 'labels' must be a non-empty list of label names, "
                                                   "got string"),
    ('[{"name": "a", "path": "a", "labels": ["x", " area"]}]',
     "entry 0: key 'labels' [1] ' area': it starts or ends with whitespace"),
    ('[{"name": "a", "path": "a", "labels": ["x", "x"]}]', "entry 0: key 'labels' lists 'x' twice"),
    ('[{"name": "a", "path": "a", "label_map": {"X": ""}}]',
     "entry 0: key 'label_map' 'X' maps to '': expected a non-empty string"),
    ('[{"name": "a", "path": "a", "label_map": ["X"]}]',
     "entry 0: key 'label_map' must be an object mapping old label to new label, got array"),
    ('[{"name": "a", "path": "a", "format": "conll", "tag_column": 1}]',
     "entry 0: key 'tag_column' must be an integer >= 2 (column 1 holds the token), got 1"),
    ('[{"name": "a", "path": "a", "tag_column": 2}]', "entry 0: key 'tag_column' applies to the conll format only, "
                                                      "not jsonl"),
    ('[{"name": "a", "path": "a", "format": "conll", "scheme": "bio"}]',
     "entry 0: key 'scheme' must be auto or one of iob1, iob2, bioes, got 'bio'"),
    ('[{"name": "a", "path": "a", "max_examples": 0}]', "entry 0: key 'max_examples' must be a positive integer, "
                                                        "got 0"),
    ('[{"name": "a", "path": "a", "max_examples": true}]', "entry 0: key 'max_examples' must be a positive integer, "
                                                           "got True"),
    ('[{"name": "a", "path": "a"}, {"name": "a", "path": "b"}]', "entry 1: key 'name' 'a' is also the name of entry 0"),
])
def test_suite_errors_name_the_file_entry_and_key(tmp_path, content, message):
    path = tmp_path / "suite.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    separator = ":" if message[0].isdigit() else ": "
    assert str(caught.value) == f"{path}{separator}{message}"


def test_dataset_without_gold_entities_needs_labels(tmp_path):
    path = write_jsonl(tmp_path / "empty.jsonl", [make_record(0, ["nothing"], [])])
    with pytest.raises(ValueError, match="dataset 'e' has no gold entities; give its 'labels'"):
        load_suite_dataset(SuiteDataset("e", path))
    assert load_suite_dataset(SuiteDataset("e", path, labels=("x",)))[1] == ["x"]


# ----------------------------------------------------------------------------------------------- scoring


def test_scores_average_and_table_from_stub_predictions(tmp_path):
    from src.suite import score_suite_dataset

    per_dataset = {}
    for dataset in load_suite(write_two_dataset_suite(tmp_path)):
        records, labels = load_suite_dataset(dataset)
        per_dataset[dataset.name] = score_suite_dataset(dataset, records, labels, spot_paris(records, labels),
                                                        annotation_format="tokens")
    results = suite_results(per_dataset)
    check_expected(results)
    assert format_suite_table(results) == EXPECTED_TABLE


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_backbone, tmp_path_factory):
    torch.manual_seed(0)
    config = SpanModelConfig(token_encoder=tiny_backbone, type_encoder=tiny_backbone, max_span_length=4,
                             linear_hidden_size=16, dropout=0.0)
    model = SpanModel.from_config(config).eval()
    folder = tmp_path_factory.mktemp("suite_model") / "model"
    model.save_pretrained(folder)
    return folder, model


@pytest.mark.parametrize("annotation_format", ["tokens", "text"])
def test_evaluate_cli_suite_prints_the_table_and_writes_json(tiny_model_dir, tmp_path, monkeypatch, capsys,
                                                              annotation_format):
    folder, model = tiny_model_dir
    spotter = WordSpotter(model, word="Paris", label="LOC")
    monkeypatch.setattr(SpanModel, "from_pretrained", lambda *args, **kwargs: spotter)
    out = tmp_path / "results.json"
    argv = [str(folder), "--suite", str(write_two_dataset_suite(tmp_path)), "--output", str(out),
            "--annotation-format", annotation_format]
    assert evaluate_cli.main(argv) == 0
    assert EXPECTED_TABLE in capsys.readouterr().out
    results = json.loads(out.read_text(encoding="utf-8"))
    check_expected(results)
    assert results["tool"] == "evaluate.py" and results["suite"] == argv[2]
    assert (results["threshold"], results["flat_ner"], results["annotation_format"]) == (0.5, True, annotation_format)


def test_evaluate_cli_suite_usage_and_bad_files(tiny_model_dir, tmp_path, capsys):
    folder, _ = tiny_model_dir
    suite = write_two_dataset_suite(tmp_path)
    for extra in (["--data", "x.jsonl"], ["--tune-threshold", "v.jsonl"], ["--labels", "a,b"]):
        with pytest.raises(SystemExit) as caught:
            evaluate_cli.main([str(folder), "--suite", str(suite), *extra])
        assert caught.value.code == 2
    assert "--suite excludes --data, --tune-threshold and --labels" in capsys.readouterr().err
    (tmp_path / "bench.json").write_text(json.dumps([{"sentence": "a b", "entities": [
        {"name": "b", "type": "x", "pos": [0, 1]}]}]), encoding="utf-8")
    assert evaluate_cli.main([str(folder), "--suite", str(suite)]) == 1
    assert f"{tmp_path / 'bench.json'}: item 0: entities[0] name 'b' differs from sentence[0:1] 'a'" in \
        capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- the fixed suite


def test_the_zero_shot_suite_reads_its_three_leave_out_corpora():
    datasets = load_suite(REPO_ROOT / "configs" / "zero_shot_suite.json")
    assert [d.name for d in datasets] == ["bc5cdr", "harveyner", "stackoverflow"]
    stackoverflow = datasets[2]
    assert stackoverflow.tag_column == 2 and len(stackoverflow.labels) == 28
    assert set(stackoverflow.label_map.values()) == set(stackoverflow.labels)
    assert all(label == label.lower() and "_" not in label for label in stackoverflow.labels)
    assert stackoverflow.label_map["Keyboard_IP"] == "keyboard input"
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    # the suite's paths are relative to the repository root, where the commands run
    counts = {}
    for dataset in datasets:
        records, labels = load_suite_dataset(SuiteDataset(**{**vars(dataset), "path": REPO_ROOT / dataset.path}))
        gold = {span["label"] for record in records for span in record["token_spans"]}
        assert gold <= set(labels)  # every gold type is asked for: no silent misses
        counts[dataset.name] = (len(records), sum(len(r["token_spans"]) for r in records), len(labels))
    assert counts == {"bc5cdr": (4797, 9809, 2), "harveyner": (1303, 500, 4), "stackoverflow": (4940, 4654, 28)}
