"""Throughput and memory of annotate.py: documents per second with 1 and 2 processes, peak RSS at 1x vs 10x input.

    python benchmarks/bench_annotate.py --teacher outputs/conll2003/best
    python benchmarks/bench_annotate.py --teacher outputs/conll2003/best --limit 200 --memory-scale 10
    python benchmarks/bench_annotate.py --teacher outputs/conll2003/best --skip-memory --precision bf16

The input is CoNLL-2003 test text: each sentence's tokens joined by spaces, one document per line (3,453 lines).
Each variant runs `annotate.py` in a fresh process (the pool's workers are its children) into a fresh output; the
wall time includes loading the teacher. The memory runs annotate the input and the input repeated --memory-scale
times, sampling the summed RSS of the process tree; flat means the 10x peak stays close to the 1x peak.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from harness import CONLL_TYPES, MIB, REPO_ROOT, conll_records, machine_summary, markdown_table


def write_text(path: Path, limit: int | None, repeat: int) -> int:
    """CoNLL-2003 test sentences as lines (the first `limit`), the whole list `repeat` times; returns the count."""
    lines = [" ".join(record["tokens"]) for record in conll_records("test")][:limit]
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(repeat):
            handle.writelines(line + "\n" for line in lines)
    return len(lines) * repeat


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (0 for those that just ended)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_annotate(args: list[str], timeout: float) -> tuple[float, float]:
    """Run annotate.py with `args`; returns (wall seconds, peak process-tree RSS in MiB)."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "annotate.py", *args, "--no-progress"], cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched, peak, done = psutil.Process(child.pid), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(watched))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        _, stderr = child.communicate(timeout=timeout)
    finally:
        done.set()
        sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"annotate.py {' '.join(args)} failed:\n{stderr[-3000:]}")
    return time.perf_counter() - started, peak[0] / MIB


def main(argv: list[str] | None = None) -> int:
    """Run the variants and print the markdown tables for RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="a saved span model folder")
    parser.add_argument("--limit", type=int, help="only the first N test sentences (a smoke run)")
    parser.add_argument("--memory-scale", type=int, default=10, help="the larger input is the text this many times")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per annotate.py run")
    parser.add_argument("--skip-memory", action="store_true", help="only the throughput runs")
    parser.add_argument("--precision", default="fp32", help="annotate.py --precision (the teacher's weights)")
    args = parser.parse_args(argv)
    labels = ",".join(CONLL_TYPES)
    print(f"{machine_summary()} | teacher {args.teacher} in {args.precision}")
    with tempfile.TemporaryDirectory(prefix="bench_annotate_") as tmp:
        folder = Path(tmp)
        text = folder / "test.txt"
        count = write_text(text, args.limit, 1)
        common = ["--labels", labels, "--batch-size", str(args.batch_size), "--chunk-size", str(args.batch_size * 64),
                  "--precision", args.precision]
        rows, speeds = [], {}
        for workers in (1, 2):
            seconds, peak = run_annotate([args.teacher, "--input", str(text), "--output",
                                          str(folder / f"out-{workers}.jsonl"), "--num-workers", str(workers),
                                          *common], args.timeout)
            speeds[workers] = count / seconds
            rows.append([workers, count, f"{seconds:.1f}", f"{count / seconds:.1f}", f"{peak:.0f}"])
        print(markdown_table(["processes", "documents", "wall s (incl. loading)", "documents/s", "peak RSS MiB"],
                             rows))
        print(f"2 processes / 1 process: {speeds[2] / speeds[1]:.2f}x")
        if args.skip_memory:
            return 0
        big = folder / "big.txt"
        big_count = write_text(big, args.limit, args.memory_scale)
        rows, peaks = [], {}
        for name, path, documents in (("1x", text, count), (f"{args.memory_scale}x", big, big_count)):
            seconds, peaks[name] = run_annotate([args.teacher, "--input", str(path), "--output",
                                                 str(folder / f"mem-{name}.jsonl"), *common], args.timeout)
            rows.append([name, documents, f"{seconds:.1f}", f"{peaks[name]:.0f}"])
        print(markdown_table(["input", "documents", "wall s", "peak RSS MiB (process tree)"], rows))
        print(f"peak RSS {args.memory_scale}x / 1x: {peaks[f'{args.memory_scale}x'] / peaks['1x']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
