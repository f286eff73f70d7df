"""Peer baseline for F1: Hugging Face token classification on the embedded backbone, trained on CoNLL-2003.

    nice -n 5 python benchmarks/peer_token_classification.py [--max-steps 3000] [--threads 1] [--output FILE]

AutoModelForTokenClassification over all-MiniLM-L6-v2 with 9 IOB2 labels; AdamW, linear schedule, batch 16, seed
42. Each word is labelled on its first subword (-100 on the rest) and predicted from its first subword. Scored
with seqeval on the test split (strict mode, IOB2): micro P/R/F1, macro F1, per type. Writes a JSON result file
and prints a markdown table with the wall time. Use `--max-steps 20 --test-sentences 200` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from harness import (  # noqa: E402
    BACKBONE,
    CONLL_DIR,
    CONLL_TYPES,
    conll_records,
    machine_summary,
    markdown_table,
    quiet_libraries,
)
from seqeval.metrics import accuracy_score, classification_report, f1_score  # noqa: E402
from seqeval.scheme import IOB2  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    get_linear_schedule_with_warmup,
    set_seed,
)

from src.config import resolve_model_name_or_path  # noqa: E402

TAGS = ["O"] + [f"{prefix}-{label}" for label in CONLL_TYPES for prefix in ("B", "I")]  # 9 IOB2 tags
TAG_ID = {tag: i for i, tag in enumerate(TAGS)}


def iob2_tags(record: dict) -> list[str]:
    """The record's token_spans as one IOB2 tag per word."""
    tags = ["O"] * len(record["tokens"])
    for span in record["token_spans"]:
        tags[span["start"]] = f"B-{span['label']}"
        for k in range(span["start"] + 1, span["end"]):
            tags[k] = f"I-{span['label']}"
    return tags


def encode(tokenizer, record: dict, max_length: int) -> dict:
    """Subword ids with the word's tag id on its first subword and -100 elsewhere (specials, continuations)."""
    enc = tokenizer(record["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
    tags, labels, previous = iob2_tags(record), [], None
    for word in enc.word_ids():
        labels.append(-100 if word is None or word == previous else TAG_ID[tags[word]])
        previous = word
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def train(model, tokenizer, records: list[dict], args) -> tuple[float, list[float]]:
    """Run `args.max_steps` AdamW updates over shuffled epochs; returns (seconds, losses every 100 steps)."""
    features = [encode(tokenizer, r, args.max_length) for r in records]
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(
        features, batch_size=args.batch_size, shuffle=True, generator=generator,
        collate_fn=DataCollatorForTokenClassification(tokenizer),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=args.max_steps
    )
    model.train()
    step, losses, window, start = 0, [], [], time.perf_counter()
    while step < args.max_steps:
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            window.append(loss.item())
            step += 1
            if step % 100 == 0 or step == args.max_steps:
                losses.append(sum(window) / len(window))
                elapsed = time.perf_counter() - start
                print(f"step {step}/{args.max_steps} loss {losses[-1]:.4f} {elapsed:.0f}s", flush=True)
                window = []
            if step == args.max_steps:
                break
    return time.perf_counter() - start, losses


@torch.no_grad()
def predict(model, tokenizer, records: list[dict], batch_size: int) -> tuple[list[list[str]], int]:
    """IOB2 tags per word from each word's first subword; words cut by the 512-subword limit get "O" (counted)."""
    model.eval()
    order = sorted(range(len(records)), key=lambda i: len(records[i]["tokens"]))
    predictions: list[list[str]] = [[] for _ in records]
    cut_words = 0
    for begin in range(0, len(order), batch_size):
        chunk = order[begin : begin + batch_size]
        words = [records[i]["tokens"] for i in chunk]
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=512, padding=True,
                        return_tensors="pt")
        best = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.argmax(-1)  # [B, L]
        for row, i in enumerate(chunk):
            tags, previous = ["O"] * len(words[row]), None
            for position, word in enumerate(enc.word_ids(row)):
                if word is not None and word != previous:
                    tags[word] = TAGS[best[row, position]]
                previous = word
            cut_words += len(words[row]) - (max(w for w in enc.word_ids(row) if w is not None) + 1)
            predictions[i] = tags
    return predictions, cut_words


def score(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """seqeval, strict IOB2: micro and macro figures, per-type figures and token accuracy."""
    report = classification_report(gold, predicted, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    micro, macro = report["micro avg"], report["macro avg"]
    return {
        "precision": float(micro["precision"]), "recall": float(micro["recall"]), "f1": float(micro["f1-score"]),
        "macro_precision": float(macro["precision"]), "macro_recall": float(macro["recall"]),
        "macro_f1": float(macro["f1-score"]),
        "macro_f1_check": float(f1_score(gold, predicted, average="macro", mode="strict", scheme=IOB2)),
        "accuracy": float(accuracy_score(gold, predicted)),
        "per_type": {k: {m: float(x) for m, x in v.items()} for k, v in report.items() if k in CONLL_TYPES},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(CONLL_DIR), help="folder with CoNLL-2003 train.txt and test.txt")
    parser.add_argument("--model", default=BACKBONE, help="backbone (default: the embedded all-MiniLM-L6-v2)")
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--max-length", type=int, default=256, help="training truncation, in subwords")
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--test-sentences", type=int, default=None, help="score only the first N (smoke runs)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--output", default="/tmp/peer_token_classification.json", help="JSON result file")
    args = parser.parse_args(argv)
    quiet_libraries()

    wall_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed)
    path = resolve_model_name_or_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(TAGS), id2label=dict(enumerate(TAGS)), label2id=TAG_ID
    )
    train_records = conll_records("train", args.data_dir)
    test_records = conll_records("test", args.data_dir)[: args.test_sentences]
    print(f"{machine_summary()}\ntrain {len(train_records)} sentences, test {len(test_records)}", flush=True)

    train_seconds, losses = train(model, tokenizer, train_records, args)
    eval_start = time.perf_counter()
    predicted, cut_words = predict(model, tokenizer, test_records, args.eval_batch_size)
    metrics = score([iob2_tags(r) for r in test_records], predicted)
    eval_seconds = time.perf_counter() - eval_start
    result = {
        "test_metrics": metrics, "cut_test_words": cut_words, "num_test_sentences": len(test_records),
        "train_seconds": train_seconds, "eval_seconds": eval_seconds,
        "wall_seconds": time.perf_counter() - wall_start, "losses_every_100_steps": losses,
        "settings": {k: v for k, v in vars(args).items() if k != "output"}, "machine": machine_summary(),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown_table(
        ["model", "steps", "micro P", "micro R", "micro F1", "macro F1", "train s", "wall s"],
        [[f"HF token classification ({args.model})", args.max_steps, f"{metrics['precision']:.4f}",
          f"{metrics['recall']:.4f}", f"{metrics['f1']:.4f}", f"{metrics['macro_f1']:.4f}",
          f"{train_seconds:.0f}", f"{result['wall_seconds']:.0f}"]],
    ))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
