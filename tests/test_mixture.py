"""Training mixtures: the `datasets` entries, cached Arrow conversion, label sets, sampling, and a mixture run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from src.args import ConfigError, load_config
from src.mixture import draws_per_epoch, load_mixture, sampling_plan, sampling_shares
from src.sources import parse_sources

from .conftest import make_record, write_jsonl
from .training_runs import read_json, train_in_process, write_run_config

CONLL = """John B-PER
Smith I-PER
works O

Paris B-LOC
is O
big O

Nothing O
here O
"""


def test_sampling_shares_follow_weight_and_temperature():
    assert sampling_shares([100, 400], [1.0, 1.0], 1.0).tolist() == [0.2, 0.8]
    assert sampling_shares([100, 400], [1.0, 1.0], 2.0).tolist() == pytest.approx([1 / 3, 2 / 3])
    assert sampling_shares([100, 400], [4.0, 1.0], 1.0).tolist() == [0.5, 0.5]
    assert sampling_shares([0, 10], [1.0, 1.0], 1.0).tolist() == [0.0, 1.0]


def test_draws_add_up_exactly_and_plan_repeats_whole_passes():
    counts = draws_per_epoch(np.array([1 / 3, 1 / 3, 1 / 3]), 10)
    assert counts.tolist() == [4, 3, 3] and counts.sum() == 10
    corpus, rows = sampling_plan([np.arange(3), np.arange(10, 20)], [7, 4], seed=0)
    assert corpus.tolist() == [0] * 7 + [1] * 4
    small = rows[:7].tolist()
    assert sorted(small[:3]) == [0, 1, 2] and sorted(small[3:6]) == [0, 1, 2]  # whole passes before repeats
    assert len(set(rows[7:].tolist())) == 4 and set(rows[7:].tolist()) <= set(range(10, 20))


@pytest.mark.parametrize("entries, message", [
    ([], "'datasets' must be a non-empty list"),
    ([{"train": "a.jsonl"}], "datasets[0]: missing key 'name'"),
    ([{"name": "a", "train": "a.jsonl", "wieght": 2}], "datasets[0]: unknown key 'wieght'"),
    ([{"name": "a", "train": "a.jsonl", "weight": "x"}], "datasets[0]: key 'weight' has the wrong type"),
    ([{"name": "a", "format": "xml", "train": "a"}], "datasets[0] ('a'): 'format' must be one of"),
    ([{"name": "a", "train": "a", "validation": "b", "validation_split": 0.1}], "'validation' files or"),
    ([{"name": "a", "train": "a"}, {"name": "a", "train": "b"}], "datasets[1]: name 'a' is also used by datasets[0]"),
    ([{"name": "a", "train": "a", "type_descriptions": {"x": "one"}},
      {"name": "b", "train": "b", "type_descriptions": {"x": "two"}}], "type_descriptions['x'] differs"),
])
def test_bad_dataset_entries_name_the_entry_and_key(entries, message):
    with pytest.raises(ValueError) as err:
        parse_sources(entries)
    assert message in str(err.value)


def test_config_refuses_datasets_together_with_files(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"datasets": [{"name": "a", "train": "a.jsonl"}], "train_file": "t.jsonl"}))
    with pytest.raises(ConfigError, match="give either 'datasets'"):
        load_config(path)


def _news_records():
    return [make_record(0, ["John", "Smith", "visited", "Paris"], [(0, 2, "PER"), (3, 4, "LOC")]),
            make_record(1, ["Apple", "hired", "Mary"], [(0, 1, "ORG"), (2, 3, "PER")]),
            {**make_record(2, ["Rome", "is", "old"], [(0, 1, "LOC")]), "labels": ["LOC", "DATE"]}]


def test_load_mixture_converts_renames_and_gives_every_record_a_label_set(tmp_path):
    write_jsonl(tmp_path / "news.jsonl", _news_records())
    (tmp_path / "bio.conll").write_text(CONLL, encoding="utf-8")
    sources = parse_sources([
        {"name": "news", "train": str(tmp_path / "news.jsonl"), "label_map": {"PER": "person", "LOC": "location"}},
        {"name": "bio", "format": "conll", "train": str(tmp_path / "bio.conll"), "validation_split": 0.34,
         "labels": ["person", "location", "gene"], "label_map": {"PER": "person", "LOC": "location"}},
    ])
    mixture = load_mixture(sources, temperature=1.0, seed=0, cache_dir=str(tmp_path / "cache"))
    news, bio = mixture.corpora
    assert news.labels == ["DATE", "ORG", "location", "person"]  # every label in the files, renamed
    assert bio.labels == ["person", "location", "gene"]  # the configured set
    assert [r["tokens"] for r in bio.validation] == [["Nothing", "here"]]  # the tail of the training file
    assert len(bio.train_rows) == 2 and len(mixture.train) == 5
    records = {tuple(r["tokens"]): r for _, r in (mixture.train[j] for j in range(len(mixture.train)))}
    assert records[("Rome", "is", "old")]["labels"] == ["location", "DATE"]  # its own label set, renamed
    assert records[("John", "Smith", "visited", "Paris")]["labels"] == news.labels
    assert records[("Paris", "is", "big")]["labels"] == bio.labels
    assert records[("John", "Smith", "works")]["token_spans"] == [{"start": 0, "end": 2, "label": "person"}]
    assert mixture.eval_sets("validation") == [("bio", bio.validation, bio.labels)]


def test_conversion_is_cached_and_follows_file_changes(tmp_path):
    path = write_jsonl(tmp_path / "news.jsonl", _news_records())
    sources = parse_sources([{"name": "news", "train": str(path)}])
    first = load_mixture(sources, temperature=1.0, seed=0, cache_dir=str(tmp_path / "cache"))
    cached = load_mixture(sources, temperature=1.0, seed=0, cache_dir=str(tmp_path / "cache"))
    assert cached.corpora[0].train.cache_files == first.corpora[0].train.cache_files
    write_jsonl(path, _news_records()[:2])
    changed = load_mixture(sources, temperature=1.0, seed=0, cache_dir=str(tmp_path / "cache"))
    assert len(changed.train) == 2


def test_configured_labels_must_hold_every_gold_label(tmp_path):
    path = write_jsonl(tmp_path / "news.jsonl", _news_records())
    sources = parse_sources([{"name": "news", "train": str(path), "labels": ["PER", "LOC"]}])
    with pytest.raises(ValueError, match=r"'news': the files use labels \['DATE', 'ORG'\] that are not in its"):
        load_mixture(sources, temperature=1.0, seed=0, cache_dir=str(tmp_path / "cache"))


def _mixture_config(tmp_path, backbone, **overrides):
    folder = tmp_path / "mix"
    config = write_run_config(folder, backbone)  # also writes the tiny news corpus (LOC, ORG, PER)
    bio = [make_record(i, ["Aspirin", "eases", "migraine", str(i)], [(0, 1, "chemical"), (2, 3, "disease")])
           for i in range(5)]
    write_jsonl(folder / "bio.jsonl", bio)
    values = json.loads(config.read_text())
    for key in ("train_file", "validation_file", "test_file"):
        values.pop(key)
    values.update({
        "datasets": [
            {"name": "news", "train": str(folder / "train.jsonl"), "validation": str(folder / "validation.jsonl"),
             "test": str(folder / "test.jsonl")},
            {"name": "bio", "train": str(folder / "bio.jsonl"), "validation_split": 0.4,
             "test": str(folder / "bio.jsonl")},
        ],
        "data_cache_dir": str(tmp_path / "cache"), "metric_for_best_model": "mean_corpus_f1",
        "calibrate_threshold": True, **overrides,
    })
    config.write_text(json.dumps(values))
    return config, folder / "out"


def test_mixture_run_reports_each_corpus_and_saves_a_calibrated_threshold(tmp_path, tiny_backbone):
    config, out = _mixture_config(tmp_path, tiny_backbone)
    assert train_in_process(config) == 0
    results = read_json(out / "test_results.json")
    metrics = results["test_metrics"]
    assert set(metrics["corpora"]) == {"news", "bio"}
    corpora = metrics["corpora"]
    assert metrics["mean_corpus_f1"] == pytest.approx((corpora["news"]["f1"] + corpora["bio"]["f1"]) / 2)
    # Every test sentence of both corpora is scored exactly once, and so is every gold entity.
    assert metrics["num_examples"] == 7 + 5
    assert metrics["num_gold_entities"] == corpora["news"]["num_gold_entities"] + 10
    saved = read_json(out / "best" / "inference.json")
    assert saved["threshold"] == results["threshold"]
    log = (out / "run.log").read_text()
    assert "Corpus news: train 7" in log and "Corpus bio: train 3" in log and "Calibrated threshold" in log
    history = read_json(out / "checkpoint-12" / "trainer_state.json")["log_history"]
    assert any("eval_corpus_f1/bio" in entry for entry in history)


def test_single_corpus_training_is_unchanged_by_record_label_sets(tmp_path, tiny_backbone):
    """Records without `labels`: the default mode trains exactly as the batch-union code path did."""
    histories = {}
    for mode in ("record", "batch_union"):
        config = write_run_config(tmp_path / mode, tiny_backbone, label_sets=mode, max_steps=6, eval_steps=6)
        assert train_in_process(config) == 0
        state = read_json(tmp_path / mode / "out" / "checkpoint-6" / "trainer_state.json")
        histories[mode] = [entry for entry in state["log_history"] if "loss" in entry]
    assert histories["record"] == histories["batch_union"] and len(histories["record"]) == 3


def test_length_grouped_order_is_reproducible_per_epoch_and_groups_lengths():
    from src.sampling import EpochLengthGroupedSampler

    lengths = [(7 * k) % 50 + 1 for k in range(400)]
    sampler = EpochLengthGroupedSampler(lengths, batch_size=4, seed=1)
    first = list(sampler)
    assert sorted(first) == list(range(400))  # every index once
    assert list(EpochLengthGroupedSampler(lengths, batch_size=4, seed=1)) == first  # a resumed run draws the same
    sampler.set_epoch(1)
    assert list(sampler) != first
    spread = [max(lengths[i] for i in first[b:b + 4]) - min(lengths[i] for i in first[b:b + 4])
              for b in range(0, 400, 4)]
    assert sum(spread) / len(spread) < 5  # random batches would differ by about 30


def test_accelerate_forwards_the_epoch_to_the_length_grouped_sampler():
    from accelerate import Accelerator

    from src.args import TrainingArgs
    from src.collator import IndexedRecords
    from src.trainer import build_train_loader

    from .training_runs import single_thread_fresh_accelerate

    with single_thread_fresh_accelerate():
        records = IndexedRecords([{"tokens": ["w"] * (k % 5 + 1)} for k in range(20)])
        args = TrainingArgs(group_by_length=True, per_device_train_batch_size=4, use_cpu=True)
        loader = Accelerator(cpu=True).prepare(build_train_loader(records, collate_fn=list, args=args))
        loader.set_epoch(3)
        assert loader.batch_sampler.sampler.epoch == 3
        assert sorted(i for batch in loader for i, _ in batch) == list(range(20))


def test_export_mixture_writes_one_epoch_of_draws_in_gliner_format(tmp_path, tiny_backbone):
    import sys

    from .conftest import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import export_mixture

    config, _ = _mixture_config(tmp_path, tiny_backbone)
    target = tmp_path / "mix.json"
    assert export_mixture.main([str(config), "--output", str(target)]) == 0
    items = json.loads(target.read_text())
    assert len(items) == 7 + 3  # every training sentence of both corpora once (temperature 1: shares = sizes)
    assert {"tokenized_text", "ner"} == set(items[0])
    assert sum(1 for item in items if item["tokenized_text"][:2] == ["Aspirin", "eases"]) == 3
    assert export_mixture.main([str(tmp_path / "missing.json"), "--output", str(target)]) == 2
