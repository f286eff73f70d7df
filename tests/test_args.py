"""Config reading: keys land in the right dataclass, overrides parse by type, mistakes name the key."""

from __future__ import annotations

import json

import pytest

from src.args import ConfigError, DataArgs, TrainingArgs, load_config, resolved_config
from src.config import SpanModelConfig


def write(tmp_path, data) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_keys_are_split_between_model_data_and_training(tmp_path):
    model, data, training = load_config(write(tmp_path, {
        "max_span_length": 7, "annotation_format": "text", "max_steps": 12, "type_descriptions": {"PER": "person"},
    }))
    assert isinstance(model, SpanModelConfig) and model.max_span_length == 7
    assert model.type_descriptions == {"PER": "person"}
    assert isinstance(data, DataArgs) and data.annotation_format == "text"
    assert isinstance(training, TrainingArgs) and training.max_steps == 12
    flat = resolved_config(model, data, training)
    assert flat["max_span_length"] == 7 and flat["learning_rate"] == TrainingArgs().learning_rate


def test_overrides_are_parsed_by_type(tmp_path):
    _, data, training = load_config(write(tmp_path, {"max_steps": 12}), [
        "--max_steps", "40", "--learning_rate=0.001", "--flat_ner", "false", "--run_name", "123",
        "--report_to", '["tensorboard"]', "--save_total_limit", "null", "--train_file", "x.jsonl",
    ])
    assert training.max_steps == 40 and training.learning_rate == 0.001 and training.flat_ner is False
    assert training.run_name == "123" and training.report_to == ["tensorboard"]
    assert training.save_total_limit is None and data.train_file == "x.jsonl"


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        ({"max_step": 3}, [], "unknown key 'max_step' (did you mean 'max_steps'?)"),
        ({"max_steps": "ten"}, [], "key 'max_steps' must be of type int"),
        ({"learning_rate": True}, [], "key 'learning_rate' must be of type float"),
        ({"do_train": "yes"}, [], "key 'do_train' must be of type bool"),
        ({"type_descriptions": ["PER"]}, [], "key 'type_descriptions' must be of type dict"),
        ({}, ["--eval_step", "3"], "command line: unknown key 'eval_step'"),
        ({}, ["--max_steps", "many"], "cannot parse value 'many' for key 'max_steps'"),
        ({"annotation_format": "words"}, [], "'annotation_format' must be 'tokens' or 'text'"),
        ({"threshold": 1.5}, [], "'threshold' must lie strictly between 0 and 1"),
        ({"max_span_length": 0}, [], "invalid value for 'max_span_length'"),
        ({"metric_for_best_model": "F1"}, [], "'metric_for_best_model' must be one of f1, precision,"),
        ({"optim": "sgd"}, [], "'optim' must be one of adamw_torch_fused, adamw_torch, got 'sgd'"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, config, overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, config), overrides)
    assert message in str(info.value)


def test_unreadable_configs_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.json: invalid JSON at line 1"):
        load_config(write(tmp_path, "{not json"))
    with pytest.raises(ConfigError, match="one JSON object"):
        load_config(write(tmp_path, [1, 2]))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "missing.json"))


def test_shipped_configs_parse():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.json")):
        if not path.stem.endswith("_suite"):  # zero-shot suites are read by src/suite.py (tests/test_suite.py)
            load_config(str(path))


def test_configs_readme_documents_every_key():
    from pathlib import Path

    from src.args import _all_fields

    text = (Path(__file__).resolve().parents[1] / "configs" / "README.md").read_text()
    missing = [key for key in _all_fields() if f"`{key}`" not in text]
    assert not missing, f"configs/README.md does not explain {missing}"
