"""PyTorch eager (fp32 and bf16) vs ONNX Runtime fp32 vs ONNX Runtime int8: prediction throughput at batch 1 and 8,
and test F1.

    python benchmarks/bench_export.py --model MODEL_DIR --data TEST.jsonl [--sentences 256] [--repeats 5]

The model is exported once with int8 (`src.serving.onnx_export.export_model`, into a temporary folder unless
--export-dir names an existing export), so all variants read the same weights; "eager bf16" is the PyTorch model
with its weights cast to bfloat16 (`precision="bf16"`). Throughput: `predict` over the
first --sentences texts of the data, labels already encoded (cached), rounds interleaved as in every benchmark
(`benchmarks/harness.py`); sentences/s as median (min-max) and the speed-up over eager per round. F1: every record
of the data predicted by each variant at the model's own threshold and scored by `src.evaluation.score_predictions`
on character spans (one code path for all, so only the backend differs). A second table times the token encoder
alone (the ONNX token graph's work, and the same modules in PyTorch) on the same batches: the most any backend
can gain over eager before `predict`'s own per-text work. Without --model an untrained head
on the embedded backbone is used (timing only: its F1 means nothing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    interleaved,
    machine_summary,
    markdown_table,
    per_round_ratios,
    quiet_libraries,
    score_raw_text,
    spread,
)

BATCH_SIZES = (1, 8)
VARIANTS = ("eager", "eager bf16", "onnx fp32", "onnx int8")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a saved model folder (default: untrained head, embedded backbone)")
    parser.add_argument("--data", type=Path, required=True, help="JSONL with text and char_spans (e.g. CoNLL test)")
    parser.add_argument("--export-dir", type=Path, help="an existing export.py --quantize int8 folder of --model")
    parser.add_argument("--labels", help="comma-separated types (default: the labels of --data)")
    parser.add_argument("--sentences", type=int, default=256, help="texts timed per call")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (after one warm-up round)")
    parser.add_argument("--f1-records", type=int, help="score only the first N records (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads (0: theirs)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of {', '.join(VARIANTS)} (eager is always run: the reference)")
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    return parser


def untrained_model_dir(folder: Path) -> Path:
    import torch

    from src.config import SpanModelConfig
    from src.model import SpanModel

    torch.manual_seed(0)
    SpanModel.from_config(SpanModelConfig()).save_pretrained(folder)
    return folder


def encoder_calls(predictors: dict, texts: list[str], batch_size: int) -> dict:
    """Per variant, a call that runs only its token encoder (with the span head's boundary projections: what the
    ONNX token graph holds) over `texts` sorted by length, `batch_size` at a time, as `predict` feeds it. No
    tokenising, decoding or type encoder: the ceiling of each backend's speed-up."""
    import torch

    from src.serving.onnx_export import CasedTokenGraph, TokenGraph, graph_inputs

    ordered = sorted(texts, key=len)
    eager = predictors["eager"].backend  # always run: the reference, and the model every export came from
    with_case = eager.model.case_embedding is not None
    batches = [graph_inputs(eager.token_tokenizer, ordered[i : i + batch_size], with_case=with_case)
               for i in range(0, len(ordered), batch_size)]
    calls = {}
    for name, predictor in predictors.items():
        backend = predictor.backend
        if backend.name == "torch":
            graph = (CasedTokenGraph if with_case else TokenGraph)(backend.model).eval()

            def run(graph=graph) -> None:
                with torch.no_grad():
                    for inputs in batches:
                        graph(*inputs)
        else:
            def run(backend=backend) -> None:
                for inputs in batches:
                    backend.token_states(*inputs)
        calls[name] = run
    return calls


def micro_f1(predictor, records: list[dict], labels: list[str]) -> dict:
    """Predict every record's text and score the character spans with the project's metric code."""
    metrics = score_raw_text(predictor, records, labels)
    return {key: metrics[key] for key in ("precision", "recall", "f1", "num_predicted_entities", "num_gold_entities")}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    import torch

    from src.data import label_set, read_jsonl
    from src.inference import SpanPredictor
    from src.serving.onnx_backend import load_onnx_predictor
    from src.serving.onnx_export import export_model

    variants = [x.strip() for x in args.variants.split(",") if x.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = args.threads or None
    records = read_jsonl(args.data)
    labels = [x.strip() for x in args.labels.split(",")] if args.labels else sorted(label_set(records))
    texts = [r["text"] for r in records[: args.sentences]]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or untrained_model_dir(Path(tmp) / "model")
        export_dir = args.export_dir
        if export_dir is None:
            export_dir = Path(tmp) / "exported"
            export_model(model_dir, export_dir, quantize="int8")
        loaders = {
            "eager": lambda: SpanPredictor.from_pretrained(model_dir),
            "eager bf16": lambda: SpanPredictor.from_pretrained(model_dir, precision="bf16"),
            "onnx fp32": lambda: load_onnx_predictor(export_dir, precision="fp32", threads=threads),
            "onnx int8": lambda: load_onnx_predictor(export_dir, precision="int8", threads=threads),
        }
        predictors = {name: load() for name, load in loaders.items() if name == "eager" or name in variants}
        for predictor in predictors.values():
            predictor.type_embeddings(labels)  # encoded once, as in a long-running service
        print(f"machine: {machine_summary()}")
        print(f"model: {args.model or 'untrained head, all-MiniLM-L6-v2'} | data: {args.data} | {len(texts)} "
              f"sentences timed | labels {labels} | threads {args.threads or 'default'}")
        calls = {f"{name} b{bs}": (lambda p=p, bs=bs: p.predict(texts, labels, batch_size=bs))
                 for bs in BATCH_SIZES for name, p in predictors.items()}
        seconds = interleaved(calls, repeats=args.repeats, warmup=1)
        rows, figures = [], {"throughput": {}, "speedup": {}, "f1": {}}
        for bs in BATCH_SIZES:
            eager = seconds[f"eager b{bs}"]
            for name in predictors:
                series = seconds[f"{name} b{bs}"]
                rate = [len(texts) / s for s in series]
                speedup = per_round_ratios(eager, series)
                figures["throughput"][f"{name} b{bs}"] = statistics.median(rate)
                figures["speedup"][f"{name} b{bs}"] = statistics.median(speedup)
                rows.append((name, bs, spread(rate, "{:.1f}"), spread(speedup, "{:.2f}")))
        print(markdown_table(["variant", "batch", "sentences/s median (min-max)", "speed-up vs eager"], rows))
        rows, figures["encoder_speedup"] = [], {}
        for bs in BATCH_SIZES:
            calls = encoder_calls(predictors, texts, bs)
            encoder_seconds = interleaved(calls, repeats=args.repeats, warmup=1)
            for name in predictors:
                rate = [len(texts) / s for s in encoder_seconds[name]]
                speedup = per_round_ratios(encoder_seconds["eager"], encoder_seconds[name])
                figures["encoder_speedup"][f"{name} b{bs}"] = statistics.median(speedup)
                rows.append((name, bs, spread(rate, "{:.1f}"), spread(speedup, "{:.2f}")))
        print("The token encoder alone (the exported graph's work; no tokenising, type encoder or decoding):")
        print(markdown_table(["variant", "batch", "sentences/s median (min-max)", "speed-up vs eager"], rows))
        scored = records[: args.f1_records] if args.f1_records else records
        f1_rows = []
        for name, predictor in predictors.items():
            metrics = micro_f1(predictor, scored, labels)
            figures["f1"][name] = metrics
            f1_rows.append((name, f"{metrics['precision']:.4f}", f"{metrics['recall']:.4f}", f"{metrics['f1']:.4f}",
                            f"{metrics['f1'] - figures['f1']['eager']['f1']:+.4f}", metrics["num_predicted_entities"]))
        print(f"F1 on {len(scored)} records ({args.data}), character spans, the model's threshold:")
        print(markdown_table(["variant", "precision", "recall", "micro F1", "vs eager", "predicted"], f1_rows))
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
