"""Run logging: timestamped lines to the console and to `output_dir/run.log` (main process only)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LOGGER_NAME = "span_ner"


def get_logger() -> logging.Logger:
    """The project's logger (configure it once with `setup_logging`)."""
    return logging.getLogger(LOGGER_NAME)


def setup_logging(output_dir: str | Path | None, *, is_main_process: bool = True) -> logging.Logger:
    """Log INFO to stdout and, when `output_dir` is given, append to `output_dir/run.log`.

    Non-main processes of a multi-process run only log warnings and errors, to the console, so every line of
    `run.log` is written once.
    """
    logger = get_logger()
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.INFO if is_main_process else logging.WARNING)
    logger.propagate = False
    formatter = logging.Formatter(LOG_FORMAT, datefmt=DATE_FORMAT)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(formatter)
    logger.addHandler(console)
    if output_dir is not None and is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(Path(output_dir) / "run.log", encoding="utf-8")
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    # transformers' own per-file loading bars and info lines would drown the run's log.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return logger
