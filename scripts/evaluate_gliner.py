"""Evaluate a GLiNER model on a project JSONL file with the project's own metric code, for a like-for-like comparison.

    python scripts/evaluate_gliner.py urchade/gliner_small-v2.1 --data test.jsonl --output gliner_results.json \
        --label-map '{"PER": "person", "LOC": "location", "ORG": "organization", "MISC": "miscellaneous"}'
    python scripts/evaluate_gliner.py urchade/gliner_small-v2.1 --suite configs/zero_shot_suite.json

With --suite every dataset of the suite is read, labelled and scored exactly as `evaluate.py --suite` does
(src/suite.py), and the same table and results layout are written.

Writes the same JSON schema as evaluate.py (tool, model, labels, threshold, flat_ner, annotation_format, settings,
data, metrics), scored by src/scoring.score_predictions. Traps of gliner 0.2.29 that this script avoids:
- its default word splitter cuts "U.S." into four words: the records' own `tokens` are fed instead, so predicted
  boundaries are the gold's words;
- `GLiNER.evaluate()` decodes nested spans, `inference()` flat ones: flat is chosen here explicitly (--nested);
- a uni-encoder model puts the label prompt in front of the text and silently cuts what passes the encoder's
  length (and `max_len` words): labels are split into groups whose prompt fits, and sentences into word chunks that
  fit beside it; spans of all groups and chunks are merged with src/decoding.resolve_overlaps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.gliner_prediction import (  # noqa: E402  (after the sys.path line; re-exported for the tests)
    Span,
    label_groups,
    load_gliner,
    predict_gliner,
    prompt_length,
    sequence_limit,
    word_chunks,
)

TOOL_NAME = "scripts/evaluate_gliner.py"
__all__ = ["Span", "label_groups", "load_gliner", "predict_gliner", "prompt_length", "sequence_limit", "word_chunks"]


def to_annotation_units(records: list[dict], predictions: list[list[Span]], annotation_format: str) -> list[list[Span]]:
    """Token spans -> the units of `annotation_format` (character offsets for "text")."""
    if annotation_format == "tokens":
        return predictions
    from src.data import token_span_to_char_span

    return [
        [(*token_span_to_char_span(record, start, end), label, score) for start, end, label, score in spans]
        for record, spans in zip(records, predictions, strict=True)
    ]


def score(records: list[dict], predictions: list[list[Span]], annotation_format: str) -> dict:
    """The project's metrics (src/scoring.score_predictions) of spans given in annotation units."""
    from src.scoring import score_predictions

    return score_predictions(records, predictions, annotation_format=annotation_format)


def parse_prompts(value: str | None) -> dict[str, str]:
    """--label-map: a JSON object (or a JSON file) from data label to the text GLiNER is asked for."""
    if not value:
        return {}
    text = value if value.lstrip().startswith("{") else Path(value).read_text(encoding="utf-8")
    mapping = json.loads(text)
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v.strip() for v in mapping.values()):
        raise ValueError("--label-map must be a JSON object mapping each data label to a non-empty string")
    if len(set(mapping.values())) != len(mapping):
        raise ValueError("--label-map gives two labels the same text")
    return mapping


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="GLiNER hub id or local folder")
    parser.add_argument("--data", type=Path, help="project JSONL file to score")
    parser.add_argument("--suite", type=Path, metavar="SUITE.json",
                        help="score every dataset of a zero-shot suite, as evaluate.py --suite; excludes --data")
    parser.add_argument("--annotation-format", choices=("tokens", "text"), default="tokens")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    parser.add_argument("--predictions", type=Path, help="also write the predicted spans as JSONL here")
    parser.add_argument("--labels", help="comma-separated types (default: the data's labels)")
    parser.add_argument("--label-map", help='JSON object or file: data label -> GLiNER prompt, e.g. {"PER": "person"}')
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--nested", action="store_true", help="decode nested spans (default: flat)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-labels-per-group", type=int, help="cap on labels per prompt (default: by length)")
    parser.add_argument("--device", default="cpu")
    return parser


def run_suite(args: argparse.Namespace, model, prompts: dict[str, str], loaded: list[tuple]) -> dict:
    """Predict and score each loaded (dataset, records, labels) as evaluate.py --suite does; prints the table."""
    from src.suite import format_suite_table, score_suite_dataset, suite_results

    flat_ner = not args.nested
    per_dataset, splits = {}, {}
    for dataset, records, labels in loaded:
        token_predictions, splits[dataset.name] = predict_gliner(
            model, records, labels, prompts=prompts, threshold=args.threshold, flat_ner=flat_ner,
            batch_size=args.batch_size, max_group_size=args.max_labels_per_group,
        )
        predictions = to_annotation_units(records, token_predictions, args.annotation_format)
        per_dataset[dataset.name] = score_suite_dataset(dataset, records, labels, predictions,
                                                        annotation_format=args.annotation_format)
    results = {
        "tool": TOOL_NAME, "model": args.model, "suite": str(args.suite), "threshold": args.threshold,
        "per_type_thresholds": None, "flat_ner": flat_ner, "annotation_format": args.annotation_format,
        "settings": {"batch_size": args.batch_size, "max_len": model.config.max_len,
                     "sequence_limit": sequence_limit(model), "splits": splits},
        **suite_results(per_dataset),
    }
    print(format_suite_table(results))
    return results


def run_data(args: argparse.Namespace, model, prompts: dict[str, str], records: list[dict], labels: list[str]) -> dict:
    """Predict and score one JSONL file; writes --predictions; returns the results."""
    from src.data import write_jsonl
    from src.metrics import format_metrics

    flat_ner = not args.nested
    token_predictions, splits = predict_gliner(
        model, records, labels, prompts=prompts, threshold=args.threshold, flat_ner=flat_ner,
        batch_size=args.batch_size, max_group_size=args.max_labels_per_group,
    )
    predictions = to_annotation_units(records, token_predictions, args.annotation_format)
    metrics = score(records, predictions, args.annotation_format)
    print(format_metrics(metrics))
    if args.predictions:
        write_jsonl(args.predictions, (
            {"id": record["id"], "spans": [dict(zip(("start", "end", "label", "score"), span, strict=True))
                                           for span in spans]}
            for record, spans in zip(records, predictions, strict=True)
        ))
    return {
        "tool": TOOL_NAME, "model": args.model, "labels": labels, "threshold": args.threshold,
        "per_type_thresholds": None, "flat_ner": flat_ner, "annotation_format": args.annotation_format,
        "settings": {"batch_size": args.batch_size, "max_len": model.config.max_len,
                     "sequence_limit": sequence_limit(model), "label_prompts": [prompts.get(x, x) for x in labels],
                     **splits},
        "data": str(args.data), "metrics": metrics,
    }


def main(argv: list[str] | None = None) -> int:
    """Predict with GLiNER, score with the project's code, write the results; 1 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 < args.threshold < 1.0:
        parser.error("--threshold must lie strictly between 0 and 1")
    if (args.data is None) == (args.suite is None):
        parser.error("give exactly one of --data and --suite")
    if args.suite is not None and (args.labels or args.predictions):
        parser.error("--suite excludes --labels (each dataset has its own) and --predictions")
    from src.data import label_set, read_jsonl
    from src.suite import load_suite, load_suite_dataset

    try:
        prompts = parse_prompts(args.label_map)
        if args.suite is not None:  # every dataset is read before the model loads, so bad files fail fast
            loaded = [(dataset, *load_suite_dataset(dataset)) for dataset in load_suite(args.suite)]
        else:
            records = read_jsonl(args.data)
            labels = sorted({x.strip() for x in args.labels.split(",") if x.strip()}) if args.labels \
                else label_set(records)
        model = load_gliner(args.model, args.device)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.suite is not None:
        results = run_suite(args, model, prompts, loaded)
    else:
        results = run_data(args, model, prompts, records, labels)
    if args.output:
        from src.atomic_files import write_json_atomic

        write_json_atomic(args.output, results)  # an earlier results file survives a failed write
        print(f"results -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
