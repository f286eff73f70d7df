"""Train a span-based dual-encoder NER model: `python train.py CONFIG.json [--key value ...]`."""

from __future__ import annotations

import sys


def _fail(err: Exception) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Parse the config and overrides, run training; on bad input print one clear error and return 2."""
    argv = sys.argv[1:] if argv is None else argv
    from src.args import ConfigError, config_help, load_config

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python train.py CONFIG.json [--key value ...]\n\nConfig keys (JSON or --key value):")
        print(config_help())
        return 0 if argv else 2
    from src.hub_datasets import DatasetLoadError, check_dataset_name

    path, overrides = (None, argv) if argv[0].startswith("--") else (argv[0], argv[1:])
    try:
        model_config, data_args, training_args = load_config(path, overrides)
        files = (data_args.train_file, data_args.validation_file, data_args.test_file)
        check_dataset_name(data_args.dataset_name, has_files=any(files))  # before the model stack is imported
    except (ConfigError, DatasetLoadError) as err:
        return _fail(err)
    from src.checkpoints import OutputDirError
    from src.conll import ConllFormatError
    from src.data import DataValidationError
    from src.launch import LaunchError
    from src.mixture import MixtureDataError
    from src.model import BackboneNotFoundError
    from src.trainer import train_from_config

    try:
        train_from_config(model_config, data_args, training_args)
    except (ConfigError, DataValidationError, ConllFormatError, MixtureDataError, DatasetLoadError, LaunchError,
            OutputDirError, BackboneNotFoundError, FileNotFoundError) as err:
        return _fail(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
