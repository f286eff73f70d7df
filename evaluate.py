"""Score a trained span model on a JSONL file with the training metrics, tune its decoding threshold, or score it
zero-shot on a suite of datasets (each with its own format and label set).

    python evaluate.py outputs/run/best --data test.jsonl --output results.json
    python evaluate.py outputs/run/best --tune-threshold valid.jsonl --per-type --save-threshold --data test.jsonl
    python evaluate.py outputs/run/best --suite configs/zero_shot_suite.json --output zero_shot.json

Settings not given on the command line come from the model folder's inference.json (threshold, flat_ner), then
from the training run's config.json one folder up (annotation_format, max_seq_length, context_size, batch size,
threshold, flat_ner), then from the defaults, so a model saved by training scores exactly what its
test_results.json says.
The scoring is src/evaluation.py, the same code the trainer runs; suites are src/suite.py; see docs/inference.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TOOL_NAME = "evaluate.py"


def build_parser() -> argparse.ArgumentParser:
    """The command line of evaluate.py."""
    from src.precisions import BACKEND_PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="a saved model folder (e.g. outputs/run/best)")
    parser.add_argument("--data", type=Path, help="JSONL file to score")
    parser.add_argument("--suite", type=Path, metavar="SUITE.json",
                        help="score every dataset of a zero-shot suite (see docs/inference.md); excludes --data")
    parser.add_argument("--annotation-format", choices=("tokens", "text"), help="score token_spans or char_spans")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    parser.add_argument("--threshold", type=float, help="one probability threshold for every type")
    parser.add_argument("--nested", action="store_true", help="decode nested spans instead of flat ones")
    parser.add_argument("--multi-label", action="store_true", help="a span may carry several types")
    parser.add_argument("--batch-size", type=int, help="windows per forward pass")
    parser.add_argument("--max-seq-length", type=int, help="window size in subwords")
    parser.add_argument("--context-size", type=int,
                        help="subwords of document context around each sentence (records with doc_id); 0: none")
    parser.add_argument("--labels", help="comma-separated types to ask for (default: the labels of the data files)")
    parser.add_argument("--tune-threshold", type=Path, metavar="VALIDATION.jsonl",
                        help="search the threshold that maximises micro F1 on this file")
    parser.add_argument("--per-type", action="store_true", help="with --tune-threshold: also tune one per type")
    parser.add_argument("--save-threshold", action="store_true",
                        help="with --tune-threshold: write the result to MODEL_DIR/inference.json")
    parser.add_argument("--device", default="auto", help="'cpu', 'cuda', ... (auto: cuda when available)")
    parser.add_argument("--precision", choices=BACKEND_PRECISIONS["torch"], default="fp32",
                        help="the weights' dtype while scoring (as predict.py --precision; default fp32)")
    return parser


def resolve_settings(args: argparse.Namespace) -> dict:
    """Each setting with where it came from: command line > inference.json > the run's config.json > default."""
    from src.args import DataArgs, TrainingArgs
    from src.inference import INFERENCE_CONFIG_NAME, load_inference_config, read_run_settings

    run = read_run_settings(args.model_dir)
    has_inference = (args.model_dir / INFERENCE_CONFIG_NAME).is_file()
    saved = load_inference_config(args.model_dir)
    settings, sources = {}, {}

    def pick(key, given, *fallbacks):
        for source, value in (("command line", given), *fallbacks):
            if value is not None:
                settings[key], sources[key] = value, source
                return

    run_source = "run config.json"
    pick("annotation_format", args.annotation_format, (run_source, run.get("annotation_format")),
         ("default", DataArgs.annotation_format))
    pick("max_seq_length", args.max_seq_length, (run_source, run.get("max_seq_length")),
         ("default", DataArgs.max_seq_length))
    pick("context_size", args.context_size, (run_source, run.get("context_size")),
         ("default", DataArgs.context_size))
    pick("max_type_length", None, (run_source, run.get("max_type_length")), ("default", DataArgs.max_type_length))
    pick("batch_size", args.batch_size, (run_source, run.get("per_device_eval_batch_size")),
         ("default", TrainingArgs.per_device_eval_batch_size))
    pick("threshold", args.threshold, (INFERENCE_CONFIG_NAME, saved.threshold if has_inference else None),
         (run_source, run.get("threshold")), ("default", TrainingArgs.threshold))
    pick("flat_ner", False if args.nested else None, (INFERENCE_CONFIG_NAME, saved.flat_ner if has_inference else None),
         (run_source, run.get("flat_ner")), ("default", TrainingArgs.flat_ner))
    per_type = saved.per_type_thresholds if has_inference and args.threshold is None else None
    settings["per_type_thresholds"] = per_type
    sources["per_type_thresholds"] = INFERENCE_CONFIG_NAME if per_type else "default"
    return {"values": settings, "sources": sources}


def labels_of(records_by_file: list[list[dict]], given: str | None) -> list[str]:
    """--labels, else the sorted union of the files' labels (as the trainer does over its splits)."""
    from src.data import label_set

    if given:
        return sorted({label.strip() for label in given.split(",") if label.strip()})
    return sorted({label for records in records_by_file for label in label_set(records)})


def tune(model, records, collator, values: dict, per_type: bool):
    """Run the model once over the validation records and search the thresholds."""
    from src.evaluation import DEFAULT_THRESHOLD_GRID, collect_record_candidates, search_thresholds

    candidates = collect_record_candidates(
        model, records, collator, batch_size=values["batch_size"], min_threshold=min(DEFAULT_THRESHOLD_GRID)
    )
    return search_thresholds(
        records, candidates, annotation_format=values["annotation_format"], flat_ner=values["flat_ner"],
        per_type=per_type,
    )


def format_search(search) -> str:
    """The threshold curve and the chosen values, for the console."""
    lines = ["threshold  precision  recall      f1  predicted"]
    for point in search.curve:
        lines.append(f"{point['threshold']:9.2f}  {point['precision']:9.4f}  {point['recall']:6.4f}  "
                     f"{point['f1']:6.4f}  {point['num_predicted_entities']:9d}")
    lines.append(f"best threshold {search.threshold:.2f}")
    if search.per_type_thresholds:
        chosen = ", ".join(f"{label} {value:.2f}" for label, value in search.per_type_thresholds.items())
        lines.append(f"per-type thresholds: {chosen} (validation micro F1 {search.f1:.4f})")
    return "\n".join(lines)


def load_model(args: argparse.Namespace):
    """The saved span model, on --device (auto: cuda when available), its weights in --precision."""
    import torch

    from src.model import SpanModel
    from src.precisions import torch_dtype

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    return SpanModel.from_pretrained(args.model_dir).to(device=device, dtype=torch_dtype(args.precision))


def make_collator(model, values: dict, labels: list[str]):
    """The evaluation collator for a fixed label set, with the resolved settings."""
    from src.collator import InBatchDataCollator

    return InBatchDataCollator(
        model.token_tokenizer, model.type_tokenizer, annotation_format=values["annotation_format"],
        max_seq_length=values["max_seq_length"], max_span_length=model.config.max_span_length,
        max_type_length=values["max_type_length"], type_descriptions=model.config.type_descriptions,
        label_set=labels, context_size=values["context_size"],
    )


def with_context(records: list[dict], values: dict) -> list[dict]:
    """`records` with their documents' neighbouring words attached when the resolved context_size asks for them."""
    from src.context import attach_document_context

    if not values["context_size"]:
        return records
    return attach_document_context(records, max_words=values["context_size"])


def decision_rule(values: dict) -> dict:
    """The decoding settings a results file records."""
    return {"threshold": values["threshold"], "per_type_thresholds": values["per_type_thresholds"],
            "flat_ner": values["flat_ner"], "annotation_format": values["annotation_format"],
            "settings": {k: values[k] for k in ("max_seq_length", "context_size", "max_type_length", "batch_size")}}


def run_suite(args: argparse.Namespace) -> dict:
    """Score the model on every dataset of --suite with its default decision rule; prints the table."""
    from src.evaluation import make_eval_loader, run_inference, type_thresholds
    from src.suite import format_suite_table, load_suite, load_suite_dataset, score_suite_dataset, suite_results

    resolved = resolve_settings(args)
    values = resolved["values"]
    datasets = load_suite(args.suite)
    loaded = [(dataset, *load_suite_dataset(dataset)) for dataset in datasets]  # bad files fail before the model
    model = load_model(args)
    for key, value in values.items():
        print(f"{key}: {value} ({resolved['sources'][key]})", file=sys.stderr)
    per_dataset = {}
    for dataset, records, labels in loaded:
        records = with_context(records, values)
        collator = make_collator(model, values, labels).with_windows()
        loader = make_eval_loader(records, collator, values["batch_size"])
        result = run_inference(
            model, loader, num_examples=len(records), flat_ner=values["flat_ner"], compute_loss=False,
            threshold=type_thresholds(labels, values["threshold"], values["per_type_thresholds"]),
            window_batch_size=values["batch_size"],
        )
        per_dataset[dataset.name] = score_suite_dataset(dataset, records, labels, result.predictions,
                                                        annotation_format=values["annotation_format"])
        print(f"scored {dataset.name}", file=sys.stderr)
    results = {"tool": TOOL_NAME, "model": str(args.model_dir), "suite": str(args.suite), **decision_rule(values),
               **suite_results(per_dataset)}
    print(format_suite_table(results))
    return results


def run(args: argparse.Namespace) -> dict:
    """Tune (optionally) and score; returns the results written to --output."""
    from dataclasses import asdict

    from src.data import read_jsonl
    from src.evaluation import evaluate_records, type_thresholds
    from src.inference import InferenceConfig, save_inference_config
    from src.metrics import format_metrics

    if args.suite is not None:
        return run_suite(args)
    resolved = resolve_settings(args)
    values = resolved["values"]
    data = with_context(read_jsonl(args.data), values) if args.data else None
    validation = with_context(read_jsonl(args.tune_threshold), values) if args.tune_threshold else None
    labels = labels_of([r for r in (data, validation) if r is not None], args.labels)
    model = load_model(args)
    collator = make_collator(model, values, labels)
    for key, value in values.items():
        print(f"{key}: {value} ({resolved['sources'][key]})", file=sys.stderr)
    results: dict = {"tool": TOOL_NAME, "model": str(args.model_dir), "labels": labels}
    if validation is not None:
        search = tune(model, validation, collator, values, args.per_type)
        print(format_search(search), file=sys.stderr)
        values["threshold"], values["per_type_thresholds"] = search.threshold, search.per_type_thresholds
        results["threshold_search"] = {"validation": str(args.tune_threshold), **asdict(search)}
        if args.save_threshold:
            config = InferenceConfig(search.threshold, search.per_type_thresholds, values["flat_ner"])
            print(f"saved {save_inference_config(args.model_dir, config)}", file=sys.stderr)
    results.update(decision_rule(values))
    if data is not None:
        thresholds = type_thresholds(labels, values["threshold"], values["per_type_thresholds"])
        metrics, _ = evaluate_records(model, data, collator, batch_size=values["batch_size"], threshold=thresholds,
                                      flat_ner=values["flat_ner"], multi_label=args.multi_label)
        print(format_metrics(metrics))
        results.update(data=str(args.data), metrics=metrics)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run evaluate.py; 0 on success, 1 on bad files or model folder, 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.suite is not None and (args.data or args.tune_threshold or args.labels):
        parser.error("--suite excludes --data, --tune-threshold and --labels (each dataset has its own labels)")
    if args.data is None and args.tune_threshold is None and args.suite is None:
        parser.error("give --data (and/or --tune-threshold), or --suite")
    if (args.per_type or args.save_threshold) and args.tune_threshold is None:
        parser.error("--per-type and --save-threshold go with --tune-threshold")
    if args.threshold is not None and (args.tune_threshold is not None or not 0.0 < args.threshold < 1.0):
        parser.error("--threshold must lie strictly between 0 and 1, and cannot be combined with --tune-threshold")
    for name in ("batch_size", "max_seq_length"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.context_size is not None and args.context_size < 0:
        parser.error("--context-size must be >= 0")
    if not (args.model_dir / "config.json").is_file():
        print(f"error: {args.model_dir}: not a saved model folder (no config.json)", file=sys.stderr)
        return 1
    try:
        results = run(args)
    except (OSError, ValueError) as err:  # DataValidationError, missing files, BackboneNotFoundError
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.output:
        from src.atomic_files import write_json_atomic

        write_json_atomic(args.output, results)  # an earlier results file survives a failed write
        print(f"results -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
