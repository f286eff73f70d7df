"""Prediction speed of a span model vs a GLiNER model on a zero-shot suite, each dataset with its own label set.

    python benchmarks/bench_zero_shot_speed.py --span-model outputs/open_type/best \
        --gliner-model outputs/gliner_open_type --suite configs/zero_shot_suite.json [--sentences 256] [--repeats 3]

Issue 10's "prediction speed of (a) vs (b) at the leave-out label counts". Per dataset of the suite: its first
--sentences records and the labels `evaluate.py --suite` asks for (src/suite.py). The span model runs
`SpanPredictor.predict` on the records' texts (labels encoded once in a warm-up round, then cached, as a served
model does); GLiNER runs `src.gliner_prediction.predict_gliner` on the records' words, the code that scores it
(label groups whose prompt fits, word chunks beside the prompt). Both at batch size --batch-size, at their default
decision rule (the span model's inference.json, GLiNER at 0.5), one torch thread (--threads). Rounds are
interleaved (benchmarks/harness.py); sentences/s as median (min-max) and the speed ratio per round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402 (also puts the repository on sys.path)
    interleaved,
    machine_summary,
    markdown_table,
    per_round_ratios,
    quiet_libraries,
    set_threads,
    spread,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--span-model", type=Path, required=True, help="a saved span model folder")
    parser.add_argument("--gliner-model", required=True, help="a GLiNER folder (benchmarks/train_gliner.py) or hub id")
    parser.add_argument("--suite", type=Path, required=True, help="a suite file (configs/zero_shot_suite.json)")
    parser.add_argument("--sentences", type=int, default=256, help="first N records of each dataset")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--batch-size", type=int, default=8, help="texts per forward pass, both models")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sentences < 1 or args.repeats < 1 or args.batch_size < 1:
        raise SystemExit("--sentences, --repeats and --batch-size must be positive")
    for flag, folder in (("--span-model", args.span_model), ("--gliner-model", args.gliner_model)):
        if not Path(folder).is_dir():  # before the suite is read: minutes of loading for a typo otherwise
            raise SystemExit(f"error: {flag} {folder}: no such model folder (train it first: RESULTS.md, section 5)")
    quiet_libraries()
    set_threads(args.threads)
    from src.gliner_prediction import load_gliner, predict_gliner
    from src.inference import SpanPredictor
    from src.suite import load_suite, load_suite_dataset

    datasets = [(d, *load_suite_dataset(d)) for d in load_suite(args.suite)]
    span = SpanPredictor.from_pretrained(args.span_model)
    gliner = load_gliner(args.gliner_model)
    print(machine_summary(), flush=True)
    rows, results = [], {}
    for dataset, records, labels in datasets:
        records = records[: args.sentences]
        texts = [record["text"] for record in records]
        found: dict[str, int] = {}

        def run_span(texts=texts, labels=labels, found=found):
            found["span model"] = sum(map(len, span.predict(texts, labels, batch_size=args.batch_size)))

        def run_gliner(records=records, labels=labels, found=found):
            predictions, _ = predict_gliner(gliner, records, labels, batch_size=args.batch_size)
            found["GLiNER"] = sum(map(len, predictions))

        seconds = interleaved({"span model": run_span, "GLiNER": run_gliner}, repeats=args.repeats)
        ratio = per_round_ratios(seconds["GLiNER"], seconds["span model"])
        results[dataset.name] = {"sentences": len(records), "labels": len(labels), "seconds": seconds,
                                 "entities": dict(found)}
        for name in ("span model", "GLiNER"):
            rate = [len(records) / s for s in seconds[name]]
            rows.append([dataset.name, len(labels), len(records), name, spread(rate, "{:.1f}"),
                         found[name], spread(ratio, "{:.2f}") if name == "span model" else "-"])
        print(f"timed {dataset.name}", file=sys.stderr, flush=True)
    print(markdown_table(["dataset", "labels", "sentences", "model", "sentences/s, median (min-max)", "entities",
                          "span model speed-up (per round)"], rows))
    overall = [statistics.median(per_round_ratios(r["seconds"]["GLiNER"], r["seconds"]["span model"]))
               for r in results.values()]
    print(f"median speed-up over datasets: {statistics.median(overall):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
