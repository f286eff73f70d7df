"""`dataset_name` as a Hugging Face dataset: split matching, conversion of a `save_to_disk` folder, training from it
with no *_file key, and a missing dataset failing at once with a message naming it and the local-file alternative.
"""

from __future__ import annotations

import json
import os
import time

import pytest

import train
from src.conll import make_record
from src.data import describe_data_source, load_splits
from src.hub_datasets import DatasetLoadError, load_dataset_dict, looks_like_path, match_splits

from .training_runs import read_json, train_in_process

TAG_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
ROWS = {  # split name as the dataset spells it -> (tokens, tag ids)
    "train": [(["John", "Smith", "lives", "in", "Paris"], [1, 2, 0, 0, 5]),
              (["Apple", "hired", "Mary"], [3, 0, 1]),
              (["Google", "is", "in", "New", "York"], [3, 0, 0, 5, 6])],
    "dev": [(["Mary", "Jones", "visited", "Berlin"], [1, 2, 0, 5])],
    "test": [(["Microsoft", "hired", "Anna"], [3, 0, 1]), (["Nothing", "here"], [0, 0])],
}


@pytest.fixture()
def saved_dataset(tmp_path):
    """A DatasetDict with ClassLabel tags (train, dev, test) written by save_to_disk; returns its folder."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=TAG_NAMES))})
    splits = {name: Dataset.from_dict({"tokens": [t for t, _ in rows], "ner_tags": [g for _, g in rows]},
                                      features=features) for name, rows in ROWS.items()}
    folder = tmp_path / "hf_dataset"
    DatasetDict(splits).save_to_disk(str(folder))
    return folder


def test_match_splits_by_the_usual_names():
    assert match_splits(["test", "dev", "train"]) == {"train": "train", "validation": "dev", "test": "test"}
    assert match_splits(["Train", "Valid"]) == {"train": "Train", "validation": "Valid"}
    assert match_splits(["validation", "extra"]) == {"validation": "validation"}
    with pytest.raises(DatasetLoadError, match="splits 'valid' and 'dev' both look like 'validation'"):
        match_splits(["train", "valid", "dev"])
    with pytest.raises(DatasetLoadError, match=r"x: no train, validation \(valid, dev\) or test split; it has 'a'"):
        match_splits(["a"], source="x")


def test_names_that_can_only_be_folders():
    assert [looks_like_path(n) for n in ("conll2003", "eriktks/conll2003", "./data", "/d/x", "a/b/c", "~/x")] == [
        False, False, True, True, True, True]


def test_hub_ids_and_configs_go_to_the_formatters_loader(monkeypatch):
    from src import conversion

    calls = []
    monkeypatch.setattr(conversion, "load_hf_dataset", lambda name, config=None: calls.append((name, config)) or {})
    load_dataset_dict("eriktks/conll2003")
    load_dataset_dict("tner/wnut2017:wnut2017")
    assert calls == [("eriktks/conll2003", None), ("tner/wnut2017", "wnut2017")]


def test_describe_data_source(tmp_path):
    assert describe_data_source(dataset_name="conll2003", train_file="a.jsonl", test_file="b.jsonl") == (
        "JSONL files (train a.jsonl, test b.jsonl), named 'conll2003' by dataset_name")
    assert describe_data_source(validation_file="v.jsonl") == "JSONL files (validation v.jsonl)"
    assert describe_data_source(dataset_name="wnut16_demo") == "embedded demo corpus 'wnut16_demo'"
    assert describe_data_source(dataset_name="conll2003") == "Hugging Face dataset 'conll2003' (hub or local cache)"
    assert describe_data_source(dataset_name=str(tmp_path)) == f"Hugging Face dataset in the folder {tmp_path}"


def test_files_win_over_dataset_name(tmp_path):
    from .conftest import tiny_records, write_jsonl

    path = write_jsonl(tmp_path / "t.jsonl", tiny_records())
    assert load_splits(dataset_name="no-such-dataset", test_file=path) == {"test": tiny_records()}


def test_save_to_disk_folder_converts_like_the_formatter(saved_dataset):
    splits = load_splits(dataset_name=str(saved_dataset))
    assert list(splits) == ["train", "validation", "test"]
    assert splits["validation"] == [make_record(0, ["Mary", "Jones", "visited", "Berlin"], [(0, 2, "PER"),
                                                                                             (3, 4, "LOC")])]
    assert splits["test"] == [make_record(0, ["Microsoft", "hired", "Anna"], [(0, 1, "ORG"), (2, 3, "PER")]),
                              make_record(1, ["Nothing", "here"], [])]
    assert splits["train"][2] == make_record(2, ["Google", "is", "in", "New", "York"], [(0, 1, "ORG"), (3, 5, "LOC")])


def test_formatter_reads_a_save_to_disk_folder(saved_dataset, tmp_path):
    from conll_dataset_formatter import main

    assert main(["--hf-dataset", str(saved_dataset), "--output", str(tmp_path / "jsonl")]) == 0
    assert sorted(p.name for p in (tmp_path / "jsonl").iterdir()) == ["dev.jsonl", "test.jsonl", "train.jsonl"]


def test_single_split_folder_and_missing_folder_are_refused(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"tokens": [["a"]], "ner_tags": [["O"]]}).save_to_disk(str(tmp_path / "one"))
    with pytest.raises(DatasetLoadError, match="holds a single Dataset"):
        load_dataset_dict(str(tmp_path / "one"))
    with pytest.raises(DatasetLoadError, match="no such folder .*'train_file', 'validation_file' and 'test_file'"):
        load_splits(dataset_name=str(tmp_path / "missing" / "x"))


def test_training_from_a_save_to_disk_folder_without_file_keys(tmp_path, tiny_backbone, saved_dataset):
    config = {
        "token_encoder": tiny_backbone, "type_encoder": tiny_backbone, "max_span_length": 4, "linear_hidden_size": 16,
        "dataset_name": str(saved_dataset), "max_seq_length": 32, "per_device_train_batch_size": 2,
        "max_steps": 2, "eval_steps": 2, "output_dir": str(tmp_path / "out"), "disable_tqdm": True,
        "type_descriptions": {"PER": "person", "LOC": "location", "ORG": "organization"},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert train_in_process(path) == 0
    results = read_json(tmp_path / "out" / "test_results.json")
    assert results["config"]["dataset_name"] == str(saved_dataset)
    assert (results["test_metrics"]["num_examples"], results["test_metrics"]["num_gold_entities"]) == (2, 2)
    log = (tmp_path / "out" / "run.log").read_text()
    assert f"Data: Hugging Face dataset in the folder {saved_dataset}" in log
    assert "Dataset validation: 1 examples, 2 entities, labels ['LOC', 'PER']" in log


@pytest.mark.parametrize("offline", [True, False])
def test_missing_hub_dataset_fails_at_once_naming_it(tmp_path, monkeypatch, capsys, offline):
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
    if offline:
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # datasets itself then refuses: nothing cached
    else:
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed local port stands in for "no network"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"dataset_name": "no-such-owner/no-such-dataset", "output_dir": str(tmp_path / "o")}))
    started = time.monotonic()
    code = train.main([str(config)])
    assert time.monotonic() - started < 10
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset_name 'no-such-owner/no-such-dataset': cannot load"), err
    assert "hub is unreachable" in err
    assert "set 'train_file', 'validation_file' and 'test_file'" in err
    assert not os.path.exists(tmp_path / "o")
