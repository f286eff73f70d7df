"""Raw-text prediction of whole documents vs sentence by sentence: does `predict` read documents as training did?

    python benchmarks/bench_document_prediction.py --model MODEL_DIR [MODEL_DIR ...] \
        --data data/processed/conll2003/test.jsonl [--threads 1] [--output FILE.json]

For every model, the records of --data are predicted as raw text with `SpanPredictor.predict`, at the model's own
threshold (its inference.json), four ways: (a) each sentence's text alone; (b) each document (records sharing
`doc_id`, in `sentence_index` order) as one text, its sentences joined by single spaces, read in `predict`'s
overlapping windows of the run's `max_seq_length` subwords; (c) the same documents with one sentence per line, read
in sentence mode (`sentences=True`: split at line breaks and by the sentence rule, each sentence read with the
model's training `context_size` subwords of its neighbours, none for a model trained without context); (d) the
space-joined documents of (b) in sentence mode, where only the sentence rule finds the sentences. All are scored on
character spans by the project's metric code (`src.scoring.score_predictions`): (a) per sentence, (b)-(d) per
document with each gold span moved to its offset in the document, so every gold entity is scored exactly once and a
predicted span that crosses a sentence boundary counts as a false positive. Records without `doc_id` form
one-sentence documents.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine_summary, markdown_table, quiet_libraries, score_raw_text, set_threads  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, nargs="+", required=True, help="saved model folders")
    parser.add_argument("--data", type=Path, required=True, help="JSONL records with doc_id/sentence_index")
    parser.add_argument("--batch-size", type=int, default=16, help="texts (and windows) per forward pass")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    return parser


def documents_of(records: list[dict], separator: str = " ") -> list[dict]:
    """One record per document: its sentences' tokens, and texts joined by `separator` (one character), gold char
    spans moved."""
    groups: dict[object, list[dict]] = {}
    for position, record in enumerate(records):
        key = record.get("doc_id")
        groups.setdefault(("doc", key) if key is not None else ("sentence", position), []).append(record)
    documents = []
    for key, members in groups.items():
        if key[0] == "doc":
            members = sorted(members, key=lambda r: r.get("sentence_index", 0))
        tokens, texts, spans, offset = [], [], [], 0
        for record in members:
            tokens.extend(record["tokens"])
            texts.append(record["text"])
            spans.extend({"start": s["start"] + offset, "end": s["end"] + offset, "label": s["label"]}
                         for s in record["char_spans"])
            offset += len(record["text"]) + 1
        documents.append({"id": str(key[1]), "tokens": tokens, "text": separator.join(texts), "char_spans": spans})
    return documents


def score(predictor, records: list[dict], labels: list[str], batch_size: int) -> dict:
    """Predict every record's text and score the character spans; also the wall time of the predictions."""
    metrics = score_raw_text(predictor, records, labels, batch_size)
    keys = ("precision", "recall", "f1", "num_gold_entities", "num_predicted_entities", "true_positives")
    return {**{key: metrics[key] for key in keys}, "seconds": round(metrics["seconds"], 1)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    set_threads(args.threads)
    from src.data import label_set, read_jsonl
    from src.inference import SpanPredictor

    records = read_jsonl(args.data)
    documents, documents_by_line = documents_of(records), documents_of(records, "\n")
    labels = label_set(records)
    print(f"machine: {machine_summary()}")
    print(f"data: {args.data} | {len(records)} sentences in {len(documents)} documents | labels {labels}")
    rows, figures = [], {}
    for model_dir in args.model:
        windows = SpanPredictor.from_pretrained(model_dir, sentences=False)
        by_sentence = SpanPredictor.from_pretrained(model_dir, sentences=True)  # the run's context_size
        results = {
            "sentences": score(windows, records, labels, args.batch_size),
            "documents": score(windows, documents, labels, args.batch_size),
            "documents_by_line_sentence_mode": score(by_sentence, documents_by_line, labels, args.batch_size),
            "documents_sentence_mode": score(by_sentence, documents, labels, args.batch_size),
        }
        if len({m["num_gold_entities"] for m in results.values()}) != 1:
            raise AssertionError("the document records lost or gained gold entities")
        figures[str(model_dir)] = {**results, "threshold": windows.config.threshold,
                                   "max_seq_length": windows.max_seq_length, "context_size": by_sentence.context_size}
        names = {"sentences": "(a) sentence by sentence", "documents": "(b) whole documents, windows",
                 "documents_by_line_sentence_mode": "(c) documents, a sentence per line, sentence mode",
                 "documents_sentence_mode": "(d) documents, sentence mode, sentence rule only"}
        for key, m in results.items():
            rows.append((str(model_dir), names[key], by_sentence.context_size, f"{m['precision']:.4f}",
                         f"{m['recall']:.4f}", f"{m['f1']:.4f}", m["num_gold_entities"], m["num_predicted_entities"],
                         m["seconds"]))
    print(markdown_table(["model", "input", "context", "precision", "recall", "micro F1", "gold", "predicted",
                          "seconds"], rows))
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
