"""Hugging Face datasets as training data: load a hub id, `name:config`, a `save_to_disk` folder or a local folder of
data files with `datasets`, and convert the train / validation / test splits to records with the formatter's code.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from . import conversion
from .data import DEMO_DATASETS

# Our split -> the names a dataset may give it (matched case-insensitively).
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}
_SAVE_TO_DISK_DICT = "dataset_dict.json"  # what DatasetDict.save_to_disk writes at the top of its folder
_SAVE_TO_DISK_SPLIT = "state.json"  # ... and Dataset.save_to_disk (a single split)
LOCAL_FILES_HINT = (
    "To train on local files instead, convert them to JSONL (python conll_dataset_formatter.py --input ... or "
    "--hf-dataset ..., see docs/data.md) and set 'train_file', 'validation_file' and 'test_file' "
    "('dataset_name' may stay, to name the data). Embedded corpora that need no download: "
    + ", ".join(sorted(DEMO_DATASETS))
)


class DatasetLoadError(ValueError):
    """A `dataset_name` that cannot be loaded or converted; the message names the dataset and what to do."""


def looks_like_path(name: str) -> bool:
    """True for names that can only be a folder: hub ids are 'name' or 'owner/name'."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def load_dataset_dict(name: str):
    """The splits of `name` as a `datasets.DatasetDict` (or a mapping of split name -> Dataset).

    `name` is a folder written by `DatasetDict.save_to_disk`, a local folder of data files (parquet, JSON, CSV), a
    hub id, or `id:config` for a dataset with several configurations. Hub ids go through
    `conversion.load_hf_dataset`: the local cache is used, `HF_DATASETS_OFFLINE` is respected, and an unreachable
    hub fails within seconds.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        import datasets

        if (path / _SAVE_TO_DISK_DICT).is_file():
            return datasets.load_from_disk(str(path))
        if (path / _SAVE_TO_DISK_SPLIT).is_file():
            raise DatasetLoadError(
                f"{name}: this folder holds a single Dataset (Dataset.save_to_disk); save a DatasetDict with "
                "train / validation / test splits instead (DatasetDict({'train': ..., 'test': ...}).save_to_disk)"
            )
        return datasets.load_dataset(str(path))  # data files in a local folder: no hub involved
    if looks_like_path(name):
        raise DatasetLoadError(f"{name}: no such folder (and not a Hugging Face dataset id)")
    repo, _, config = name.partition(":")
    return conversion.load_hf_dataset(repo, config or None)


def match_splits(split_names: Iterable[str], *, source: str = "<dataset>") -> dict[str, str]:
    """Our split -> the dataset's split of that name (train; validation, valid or dev; test), in our order.

    Splits of other names are not used; two names for one split (e.g. 'valid' and 'dev') are an error.
    """
    by_lower = {name.lower(): name for name in split_names}
    matched = {}
    for split, aliases in SPLIT_ALIASES.items():
        found = [by_lower[alias] for alias in aliases if alias in by_lower]
        if len(found) > 1:
            raise DatasetLoadError(f"{source}: splits {' and '.join(map(repr, found))} both look like {split!r}")
        if found:
            matched[split] = found[0]
    if not matched:
        names = ", ".join(map(repr, by_lower.values())) or "none"
        raise DatasetLoadError(f"{source}: no train, validation (valid, dev) or test split; it has {names}")
    return matched


def _wrapped(name: str, error: Exception) -> DatasetLoadError:
    if isinstance(error, DatasetLoadError):
        return DatasetLoadError(f"{error}. {LOCAL_FILES_HINT}")
    return DatasetLoadError(f"dataset_name {name!r}: {error}. {LOCAL_FILES_HINT}")


def check_dataset_name(name: str | None, *, has_files: bool) -> None:
    """Fail fast (DatasetLoadError) when `name` is the run's data but cannot be loaded: without files, a name other
    than an embedded corpus is loaded once here, so an unreachable hub or a missing dataset is reported before the
    model stack is imported; `load_hub_splits` then reads it from the local cache."""
    if name is None or has_files or name in DEMO_DATASETS:
        return
    try:
        match_splits(load_dataset_dict(name).keys(), source=name)
    except (OSError, ValueError) as error:
        raise _wrapped(name, error) from None


def load_hub_splits(name: str) -> dict[str, list[dict]]:
    """Records per split of the Hugging Face dataset `name` (see `load_dataset_dict`), converted like
    `conll_dataset_formatter.py --hf-dataset`: a `tokens` column and a `ner_tags` column of ClassLabel ids or tag
    strings, tag scheme detected per split (IOB1, IOB2, BIOES)."""
    try:
        dataset_dict = load_dataset_dict(name)
        splits = match_splits(dataset_dict.keys(), source=name)
        return {
            split: conversion.hf_split_to_records(dataset_dict[source], source=f"{name}[{source}]").records
            for split, source in splits.items()
        }
    except (OSError, ValueError) as error:  # unreachable hub, not found, bad columns or tags (names the row)
        raise _wrapped(name, error) from None
