"""Peak memory of mixture training against corpus size: 100k vs 1M training sentences (synthetic CoNLL-2003 copies).

    python benchmarks/bench_mixture_memory.py                       # 100k and 1M sentences, 100 steps each
    python benchmarks/bench_mixture_memory.py --sizes 10000 100000 --steps 20

For each size the script writes a JSONL file of that many sentences (CoNLL-2003 training sentences repeated, each
with a new id), then runs `train.py` twice in fresh processes on a one-corpus `datasets` mixture of it: the first
run converts the file into the Arrow cache and trains, the second reuses the cache and trains. The peak resident set
size (ru_maxrss of the training process) of each is reported; the goal is at most 1.5x from 100k to 1M. Files go to
a temporary folder that is removed at the end (--workdir keeps them).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import BACKBONE, REPO_ROOT, conll_records, machine_summary, markdown_table, run_probe


def write_synthetic(path: Path, size: int) -> None:
    """`size` CoNLL-2003 training sentences, cycling through the corpus, ids 0..size-1, one JSON line each."""
    base = conll_records("train")
    with path.open("w", encoding="utf-8") as handle:
        for k in range(size):
            record = base[k % len(base)]
            handle.write(json.dumps({**record, "id": str(k)}, ensure_ascii=False) + "\n")


def run_config(workdir: Path, data: Path, steps: int, tag: str) -> dict:
    config = {
        "run_name": f"memory-{tag}", "token_encoder": BACKBONE, "type_encoder": BACKBONE,
        "datasets": [{"name": "synthetic", "train": str(data)}], "data_cache_dir": str(workdir / "cache"),
        "output_dir": str(workdir / f"out-{tag}"), "overwrite_output_dir": True, "do_eval": False,
        "do_predict": False, "max_steps": steps, "eval_steps": steps, "logging_steps": max(1, steps // 4),
        "per_device_train_batch_size": 16, "max_seq_length": 128, "max_span_length": 24, "disable_tqdm": True,
        "save_total_limit": 1,
    }
    path = workdir / f"config-{tag}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return run_probe(Path(__file__), ["--probe", str(path)], timeout=3600)


def probe(config: str) -> None:
    """Run training in this process and print its peak RSS and wall time as one JSON line."""
    sys.path.insert(0, str(REPO_ROOT))
    import train

    start = time.time()
    status = train.main([config])
    if status != 0:
        raise SystemExit(status)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(json.dumps({"peak_rss_mib": peak, "seconds": time.time() - start}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=100, help="training steps per run")
    parser.add_argument("--workdir", type=Path, help="keep the synthetic files and runs here")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-mixture-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(machine_summary())
    rows, peaks = [], {}
    try:
        for size in args.sizes:
            data = workdir / f"synthetic-{size}.jsonl"
            write_synthetic(data, size)
            first = run_config(workdir, data, args.steps, f"{size}-convert")
            cached = run_config(workdir, data, args.steps, f"{size}-cached")
            peaks[size] = (first["peak_rss_mib"], cached["peak_rss_mib"])
            rows.append([f"{size:,}", f"{data.stat().st_size / 2**20:,.0f}", f"{first['peak_rss_mib']:,.0f}",
                         f"{first['seconds']:.0f}", f"{cached['peak_rss_mib']:,.0f}", f"{cached['seconds']:.0f}"])
            print(f"{size:,} sentences: peak RSS {first['peak_rss_mib']:,.0f} MiB converting, "
                  f"{cached['peak_rss_mib']:,.0f} MiB cached", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(markdown_table(["training sentences", "JSONL MiB", "peak RSS, first run (MiB)", "first run (s)",
                          "peak RSS, cached (MiB)", "cached run (s)"], rows))
    small, large = min(peaks), max(peaks)
    for k, name in ((0, "first run"), (1, "cached run")):
        ratio = peaks[large][k] / peaks[small][k]
        verdict = "met" if ratio <= 1.5 else f"MISSED by {ratio - 1.5:.2f}"
        print(f"{name}: peak RSS {large:,} / {small:,} sentences = {ratio:.2f}x (goal <= 1.5x: {verdict})")


if __name__ == "__main__":
    main()
