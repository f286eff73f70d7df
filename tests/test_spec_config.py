"""The specification's example config (`spec_example_config.json`, kept as the specification prints it) trains with
only its three data paths changed, the embedded backbone for the hub's bert-base-uncased, and 2 steps.
"""

from __future__ import annotations

import json
from pathlib import Path

from src.args import load_config

from .conftest import tiny_records, write_jsonl
from .training_runs import read_json, train_in_process

SPEC_CONFIG = Path(__file__).with_name("spec_example_config.json")


def test_spec_config_parses_as_printed():
    model, data, training = load_config(SPEC_CONFIG)
    assert (data.dataset_name, data.annotation_format, data.train_file) == (
        "conll2003", "text", "data/processed/train.jsonl")
    assert (model.linear_hidden_size, model.init_temperature, model.span_loss_weight) == (128, 0.03, 3.0)
    # The specification gives no output_dir: the run goes to outputs/<run_name>, not into outputs/ itself.
    assert training.output_dir == "outputs/bert-base-conll"


def test_spec_config_trains_with_local_paths(tmp_path):
    records = tiny_records()
    paths = {split: write_jsonl(tmp_path / f"{split}.jsonl", records) for split in ("train", "validation", "test")}
    out = tmp_path / "out"
    code = train_in_process(
        SPEC_CONFIG, "--train_file", str(paths["train"]), "--validation_file", str(paths["validation"]),
        "--test_file", str(paths["test"]), "--token_encoder", "sentence-transformers/all-MiniLM-L6-v2",
        "--type_encoder", "sentence-transformers/all-MiniLM-L6-v2", "--output_dir", str(out), "--max_steps", "2",
        "--disable_tqdm", "true",
    )
    assert code == 0
    results = read_json(out / "test_results.json")
    assert results["config"]["dataset_name"] == "conll2003"
    assert results["config"]["annotation_format"] == "text"
    metrics = results["test_metrics"]
    assert (metrics["num_examples"], metrics["num_gold_entities"]) == (
        len(records), sum(len(r["char_spans"]) for r in records))
    resolved = read_json(out / "config.json")
    spec = json.loads(SPEC_CONFIG.read_text())
    unchanged = {key for key in spec if key not in ("train_file", "validation_file", "test_file", "token_encoder",
                                                     "type_encoder", "max_steps")}
    assert {key: resolved[key] for key in unchanged} == {key: spec[key] for key in unchanged}
    log = (out / "run.log").read_text()
    assert f"Data: JSONL files (train {paths['train']}, " in log
    assert "named 'conll2003' by dataset_name" in log
    assert (out / "best" / "span_head.safetensors").is_file()
