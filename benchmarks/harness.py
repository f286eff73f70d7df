"""Measurement tools shared by the benchmarks: CoNLL-2003 sentences, interleaved timing, peak memory, tables.

Timing: every repetition runs each variant once, in a rotated order, so slow drifts of a shared machine hit all
variants alike; ratios are taken per repetition and summarised by their median and range. Memory: peak resident
set size (RSS) in a fresh subprocess per variant, see `PeakMemory`.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
CONLL_DIR = REPO_ROOT.parent / "shared" / "data" / "conll2003"
CONLL_TYPES = ("LOC", "MISC", "ORG", "PER")
BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
MIB = 1024 * 1024

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is first imported: it reads TQDM_* when imported
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def quiet_libraries() -> None:
    """Silence model-loading reports and progress bars (they would bury the tables)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def set_threads(threads: int) -> None:
    """Use `threads` torch threads (0 keeps torch's default, one per core). One thread is steadier on a busy
    machine: a multi-threaded op waits for its slowest thread, and a thread the scheduler parks stalls it."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def conll_records(split: str, data_dir: str | Path = CONLL_DIR) -> list[dict]:
    """JSONL-style records (tokens, text, token_spans, char_spans) of one CoNLL-2003 split: train, valid or test."""
    from src.conll import convert_conll_file

    return convert_conll_file(Path(data_dir) / f"{split}.txt").records


def interleaved(
    variants: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each variant over `repeats` rounds; round r starts at variant r mod V (rotation).

    `warmup` untimed rounds run first (kernel selection, allocator growth, optimizer state creation).
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            variants[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def per_round_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Ratio of two interleaved series, round by round (both measured in the same round, under the same load)."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def spread(values: Sequence[float], fmt: str = "{:.3f}") -> str:
    """'median (min-max)' of a series."""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


class PeakMemory:
    """Peak RSS growth of this process inside a `with` block, in MiB.

    Measured as (peak RSS during the block) - (RSS when the block starts). The peak is the kernel's high-water
    mark `ru_maxrss` when the block raised it (exact), otherwise the highest RSS seen by a thread sampling
    /proc every `interval` seconds (may miss peaks shorter than the interval). Run each variant in a fresh
    process: memory a previous variant freed can stay mapped by the allocator and hide growth.
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.process = psutil.Process()
        self.sampled_peak = 0
        self.baseline = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sampled_peak = max(self.sampled_peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self.maxrss_before = _maxrss_bytes()
        self.baseline = self.sampled_peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        maxrss_after = _maxrss_bytes()
        self.exact = maxrss_after > self.maxrss_before
        self.peak = maxrss_after if self.exact else self.sampled_peak
        self.growth_mib = (self.peak - self.baseline) / MIB
        self.baseline_mib = self.baseline / MIB
        self.peak_mib = self.peak / MIB


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def run_probe(script: str | Path, args: Sequence[str], timeout: float = 900) -> dict:
    """Run `python script args...` in a fresh process and return the JSON object on its last stdout line."""
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"probe {script} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def score_raw_text(predictor, records: list[dict], labels: Sequence[str], batch_size: int = 16) -> dict:
    """Predict every record's `text` with `predictor` and score its character spans with the project's metric code
    (`src.scoring.score_predictions`); the metrics plus `seconds`, the wall time of the predictions."""
    from src.scoring import score_predictions

    start = time.perf_counter()
    found = predictor.predict([r["text"] for r in records], list(labels), batch_size=batch_size)
    seconds = time.perf_counter() - start
    predictions = [[(e["start"], e["end"], e["label"], e["score"]) for e in entities] for entities in found]
    return {**score_predictions(records, predictions, annotation_format="text"), "seconds": seconds}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_summary() -> str:
    """One line: CPU model, cores, torch threads, Python and library versions."""
    import torch
    import transformers

    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"{model}, {psutil.cpu_count(logical=True)} logical cores, torch threads {torch.get_num_threads()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"load average {' '.join(f'{x:.1f}' for x in psutil.getloadavg())}"
    )


def vocabulary_labels(tokenizer, count: int, first: Sequence[str] = ()) -> list[str]:
    """`count` distinct label names: `first`, then alphabetic whole words (5+ letters) of the tokenizer's vocabulary,
    evenly spaced over it, so every run gets the same names."""
    vocab = tokenizer.get_vocab()
    words = [t for t in sorted(vocab, key=vocab.get) if t.isascii() and t.isalpha() and len(t) >= 5]
    step = max(1, len(words) // max(1, count))
    names = list(dict.fromkeys([*first, *words[::step], *words]))
    return names[:count]


def batch_span_mask(model, batch: dict):
    """A collated batch's boundary masks [B, L] and legal-span mask [B, L, W], as `SpanModel` computes them."""
    from src.model import span_candidate_mask

    start_mask, end_mask = batch["start_mask"].bool(), batch["end_mask"].bool()
    return start_mask, end_mask, span_candidate_mask(start_mask, end_mask, model.config.max_span_length)


def span_head_loss(model, batch: dict, start_logits, end_logits, span_logits):
    """`span_loss` on given logits, called exactly as `SpanModel.forward` calls it (to time the loss on its own)."""
    from src.model import span_loss

    start_mask, end_mask = batch["start_mask"].bool(), batch["end_mask"].bool()
    c = model.config
    return span_loss(
        start_logits=start_logits, end_logits=end_logits, span_logits=span_logits,
        start_labels=batch["start_labels"], end_labels=batch["end_labels"], span_labels=batch["span_labels"],
        start_mask=start_mask, end_mask=end_mask,
        span_mask=batch_span_mask(model, batch)[2], type_mask=batch["type_mask"].bool(),
        start_weight=c.start_loss_weight, end_weight=c.end_loss_weight, span_weight=c.span_loss_weight,
    )
