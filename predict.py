"""Predict entities in raw text with a trained span model; one JSON object per document (see docs/inference.md).

    python predict.py MODEL_DIR --labels "person,location,organization" --text "Ada Lovelace was born in London."
    python predict.py MODEL_DIR --labels person,location --input docs.txt --output predictions.jsonl
    python predict.py EXPORTED_DIR --backend onnx --labels person,location --text "Ada Lovelace was born in London."

--input is plain text with one document per line, or JSONL (.jsonl/.json, or --input-format jsonl) whose objects
have a "text" field and optionally "id" and "labels" (a per-document label list that replaces --labels).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CHUNK_DOCUMENTS = 256  # documents handed to the predictor (and written out) at a time


class InputError(ValueError):
    """A problem with the input file; the message names the file and, for JSONL, the line."""


def build_parser() -> argparse.ArgumentParser:
    """The command line of predict.py."""
    from src.precisions import ALL_PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="a saved model folder (e.g. outputs/run/best)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one document given on the command line")
    source.add_argument("--input", type=Path, help="plain text (one document per line) or JSONL with a 'text' field")
    parser.add_argument("--labels", help="comma-separated entity types, e.g. 'person,location,organization'")
    parser.add_argument("--input-format", choices=("auto", "text", "jsonl"), default="auto",
                        help="auto: JSONL for .jsonl/.json files, plain text otherwise")
    parser.add_argument("--output", type=Path, help="write JSONL here instead of stdout")
    parser.add_argument("--threshold", type=float, help="probability threshold (default: the model's inference.json, "
                                                        "else 0.5)")
    parser.add_argument("--nested", action="store_true", help="keep nested entities (default: the model's setting, "
                                                              "else flat)")
    parser.add_argument("--multi-label", action="store_true", help="a span may carry several types (every type that "
                                                                   "passes the threshold)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="torch: a saved model folder; onnx: a folder written by export.py (ONNX Runtime, CPU)")
    parser.add_argument("--precision", choices=ALL_PRECISIONS,
                        help="torch: the weights' dtype (fp32 default; bf16 for CPUs with AMX/AVX512-BF16 and GPUs; "
                             "fp16 for GPUs); onnx: the token graph (fp32, int8; default: the export's)")
    parser.add_argument("--batch-size", type=int, default=8, help="texts (and windows) per forward pass")
    parser.add_argument("--max-seq-length", type=int, help="window size in subwords (default: the training run's)")
    parser.add_argument("--device", default="auto", help="'cpu', 'cuda', 'cuda:1', ... (auto: cuda when available)")
    parser.add_argument("--sentences", action=argparse.BooleanOptionalAction, default=None,
                        help="read each document sentence by sentence (sentence rule, or a line break) instead of in "
                             "windows (default: on for a model trained with document context, off otherwise)")
    parser.add_argument("--context-size", type=int, help="with --sentences: subwords of the neighbouring sentences "
                        "read around each one (default: the training run's context_size; 0: none)")
    return parser


def read_documents(path: Path, input_format: str) -> list[dict]:
    """Documents as {"text", optional "id", optional "labels"}; InputError names the file and line on bad input."""
    from src.data import parse_text_object

    if not path.is_file():
        raise InputError(f"{path}: no such input file")
    is_jsonl = input_format == "jsonl" or (input_format == "auto" and path.suffix.lower() in (".jsonl", ".json"))
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not valid UTF-8 ({err.reason})") from None
    if not is_jsonl:
        return [{"text": line} for line in lines]
    documents = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = parse_text_object(line)
        except ValueError as err:
            raise InputError(f"{path}:{number}: {err}") from None
        labels = value.get("labels")
        if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
            raise InputError(f"{path}:{number}: field 'labels' must be a list of strings")
        documents.append({key: value[key] for key in ("id", "text", "labels") if key in value})
    return documents


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; other names pass through."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def predicted_rows(predictor, documents: list[dict], labels: list[str] | None, args: argparse.Namespace):
    """Yield {"id"?, "text", "entities"} per document, predicting CHUNK_DOCUMENTS documents at a time."""
    for begin in range(0, len(documents), CHUNK_DOCUMENTS):
        chunk = documents[begin : begin + CHUNK_DOCUMENTS]
        found = predictor.predict(
            [doc["text"] for doc in chunk], [doc.get("labels", labels) for doc in chunk],
            threshold=args.threshold, flat_ner=False if args.nested else None, multi_label=args.multi_label,
            batch_size=args.batch_size,
        )
        for doc, entities in zip(chunk, found, strict=True):
            yield {**{key: doc[key] for key in ("id", "text") if key in doc}, "entities": entities}


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Load the model, predict every document and write one JSON line per document."""
    labels = [label.strip() for label in args.labels.split(",") if label.strip()] if args.labels else None
    documents = [{"text": args.text}] if args.text is not None else read_documents(args.input, args.input_format)
    missing = [k for k, doc in enumerate(documents) if labels is None and "labels" not in doc]
    if missing:
        parser.error(f"--labels is required (document {missing[0] + 1} has no 'labels' field)")
    if not (args.model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{args.model_dir}: not a saved model folder (no config.json)")
    from src.data import write_jsonl

    if args.backend == "onnx":
        from src.serving.onnx_backend import load_onnx_predictor

        predictor = load_onnx_predictor(args.model_dir, precision=args.precision, max_seq_length=args.max_seq_length,
                                        sentences=args.sentences, context_size=args.context_size)
    else:
        from src.inference import SpanPredictor

        predictor = SpanPredictor.from_pretrained(
            args.model_dir, device=resolve_device(args.device), precision=args.precision or "fp32",
            max_seq_length=args.max_seq_length, sentences=args.sentences, context_size=args.context_size,
        )
    rows = predicted_rows(predictor, documents, labels, args)
    if args.output is None:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False), flush=True)
        return
    write_jsonl(args.output, rows)  # atomic: a failure leaves no half-written file
    print(f"{len(documents)} documents -> {args.output}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run predict.py; 0 on success, 1 on a bad model folder or input file, 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        parser.error("--threshold must lie strictly between 0 and 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be a positive integer")
    if args.context_size is not None and args.context_size < 0:
        parser.error("--context-size must be >= 0")
    if args.context_size and args.sentences is False:
        parser.error("--context-size needs --sentences: context is read around each sentence")
    from src.precisions import precision_mismatch

    if problem := precision_mismatch(args.backend, args.precision):
        parser.error(problem)
    try:
        run(args, parser)
    except (OSError, ValueError) as err:  # InputError, missing model files, BackboneNotFoundError, bad inference.json
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
