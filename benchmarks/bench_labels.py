"""Prediction throughput with 4 vs 1,000 entity labels on the same sentences (`src.inference.predict`).

    python benchmarks/bench_labels.py [--model MODEL_DIR] [--sentences 128] [--repeats 5] [--batch-size 16]

Without --model it builds an untrained span head on the embedded backbone (all-MiniLM-L6-v2), which is enough
for timing. Sentences are the embedded WNUT-16 demo test split; the 1,000 labels are distinct whole words of the
tokenizer's vocabulary, the 4 labels the CoNLL types. Repetitions alternate the two label sets and the median is
reported. Throughput is measured with the labels already encoded (a predictor's cache, as in a server answering
many requests); the one-time cost of encoding the 1,000 labels is timed on its own and also reported folded into
one call over these sentences.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from src.config import SpanModelConfig  # noqa: E402
from src.data import load_demo_dataset  # noqa: E402
from src.inference import SpanPredictor  # noqa: E402
from src.model import SpanModel  # noqa: E402

FEW_LABELS = ["person", "location", "organization", "miscellaneous"]


def many_labels(model: SpanModel, count: int) -> list[str]:
    """`count` distinct label names: the 4 CoNLL types, then whole alphabetic words of the type vocabulary."""
    ids = model.type_tokenizer.get_vocab()
    vocab = sorted(ids, key=ids.__getitem__)
    words = [token for token in vocab if token.isalpha() and token.isascii() and len(token) >= 5]
    step = max(1, len(words) // count)
    extra = [w for w in words[::step] if w not in FEW_LABELS]
    return (FEW_LABELS + extra)[:count]


def time_predict(predictor: SpanPredictor, texts: list[str], labels: list[str], batch_size: int) -> tuple[float, int]:
    """Seconds for one `predict` call over all texts, and the number of entities it returned."""
    start = time.perf_counter()
    found = predictor.predict(texts, labels, batch_size=batch_size)
    return time.perf_counter() - start, sum(map(len, found))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained model folder (default: untrained head on the embedded backbone)")
    parser.add_argument("--sentences", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-labels", type=int, default=1000)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    if args.model:
        model = SpanModel.from_pretrained(args.model)
    else:
        model = SpanModel.from_config(SpanModelConfig()).eval()
    texts = [r["text"] for r in load_demo_dataset("wnut16_demo")["test"][: args.sentences]]
    label_sets = {len(FEW_LABELS): FEW_LABELS, args.num_labels: many_labels(model, args.num_labels)}
    subwords = sum(len(model.token_tokenizer(t)["input_ids"]) for t in texts) / len(texts)
    print(f"model: {args.model or 'untrained head, all-MiniLM-L6-v2'} (max_span_length "
          f"{model.config.max_span_length}) | {len(texts)} sentences, {subwords:.1f} subwords on average | "
          f"batch size {args.batch_size} | torch threads {torch.get_num_threads()}")

    warm = {n: SpanPredictor(model) for n in label_sets}
    for n, labels in label_sets.items():  # fill the caches and warm up the kernels
        time_predict(warm[n], texts[:8], labels, args.batch_size)
    timings: dict[str, list[float]] = {}
    entities: dict[int, int] = {}
    for _ in range(args.repeats):
        start = time.perf_counter()
        SpanPredictor(model).type_embeddings(label_sets[args.num_labels])
        timings.setdefault("encode", []).append(time.perf_counter() - start)
        for n, labels in label_sets.items():
            seconds, entities[n] = time_predict(warm[n], texts, labels, args.batch_size)
            timings.setdefault(f"warm {n}", []).append(seconds)

    median = {key: statistics.median(values) for key, values in timings.items()}
    few, many = len(FEW_LABELS), args.num_labels
    print(f"encoding {many} labels once (type encoder, chunks of 256): {median['encode']:.2f} s")
    print(f"{'labels':>6}  {'sentences/s':>11}  {'median s':>8}  {'entities':>8}  runs (s)")
    for n in (few, many):
        seconds = median[f"warm {n}"]
        runs = " ".join(f"{v:.2f}" for v in timings[f"warm {n}"])
        print(f"{n:>6}  {len(texts) / seconds:>11.1f}  {seconds:>8.2f}  {entities[n]:>8}  {runs}")
    ratio = median[f"warm {few}"] / median[f"warm {many}"]
    cold = median[f"warm {few}"] / (median[f"warm {many}"] + median["encode"])
    print(f"throughput with {many} labels = {ratio:.2f} x throughput with {few} (labels already encoded)")
    print(f"including encoding the {many} labels once for these {len(texts)} sentences: {cold:.2f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
