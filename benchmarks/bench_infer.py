"""Prediction throughput with 4, 32, 256 and 1,024 labels: `src.inference.predict` against the `gliner` library.

    python benchmarks/bench_infer.py [--model outputs/conll2003/best] [--sentences 256] [--repeats 3]

Texts: the first `--sentences` CoNLL-2003 test sentences (words joined by spaces). Labels: person, organization,
location, miscellaneous, then whole words of the backbone's vocabulary. Peers: GLiNER 0.2.x models built from a
GLiNERConfig around the same embedded backbone (all-MiniLM-L6-v2 folder, no download; span heads untrained, which
is enough for timing): the uni-encoder (labels in the prompt) and the bi-encoder (labels through a second copy of
the backbone), the latter also with label embeddings computed once (as `encode_labels`, padded to the longest
label) and `batch_predict_with_embeds`.
A uni-encoder reads "prompt + text" in one 512-subword window and silently cuts what does not fit, so the labels
are split into groups that fit beside the longest text (checked: every label marker and every word survive), and
a call's time is the sum over its groups. Untrained GLiNER scores sit near 0.5, so it runs at --gliner-threshold
(0.9), which keeps its decoding at its lightest (in GLiNER's favour); every cell reports how many entities it returned.
Each round times every cell once (rotated order); "cold" calls include encoding the labels, "warm" reuse them.
Cells whose peer is very slow run on an evenly spaced subset (--slow-subset), stated in the table. One torch
thread by default (--threads).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from harness import (  # noqa: E402
    BACKBONE,
    conll_records,
    interleaved,
    machine_summary,
    markdown_table,
    per_round_ratios,
    quiet_libraries,
    set_threads,
    spread,
)
from harness import vocabulary_labels as vocab_labels  # noqa: E402

from src.config import SpanModelConfig, resolve_model_name_or_path  # noqa: E402
from src.model import SpanModel  # noqa: E402

FEW_LABELS = ("person", "organization", "location", "miscellaneous")
BACKBONE_POSITIONS = 512


def load_span_model(model_dir: str | None) -> SpanModel:
    if model_dir:
        return SpanModel.from_pretrained(model_dir).eval()
    torch.manual_seed(0)
    return SpanModel.from_config(SpanModelConfig()).eval()


def build_gliner(bi_encoder: bool):
    """A GLiNER around the embedded backbone: pretrained encoder(s), randomly initialised GLiNER layers."""
    from gliner import GLiNER, GLiNERConfig

    path = resolve_model_name_or_path(BACKBONE)
    config = GLiNERConfig(model_name=path, labels_encoder=path if bi_encoder else None)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GLiNER.from_config(config, backbone_from_pretrained=True, local_files_only=True).eval()


def label_groups(gliner, texts: list[str], labels: list[str]) -> list[list[str]]:
    """Split labels into groups whose uni-encoder prompt fits in the window beside the longest text."""
    tokenizer = gliner.data_processor.transformer_tokenizer
    words = gliner.prepare_inputs(texts)[0]
    longest = max(len(tokenizer(w, is_split_into_words=True)["input_ids"]) for w in words)  # text + [CLS] [SEP]
    budget = BACKBONE_POSITIONS - longest - 1  # - 1 for the <<SEP>> marker
    groups, used = [[]], 0
    for label in labels:
        cost = 1 + len(tokenizer(label.split(), is_split_into_words=True, add_special_tokens=False)["input_ids"])
        if used + cost > budget and groups[-1]:
            groups.append([])
            used = 0
        groups[-1].append(label)
        used += cost
    for group in groups:
        check_prompt(gliner, texts, group)
    return groups


def check_prompt(gliner, texts: list[str], labels: list[str]) -> None:
    """Fail unless every label marker and every word of the longest text survive the uni-encoder's truncation."""
    tokenizer = gliner.data_processor.transformer_tokenizer
    words = gliner.prepare_inputs(texts)[0]
    longest = max(range(len(texts)), key=lambda i: len(tokenizer(words[i], is_split_into_words=True)["input_ids"]))
    prepared = gliner.prepare_batch([texts[longest]], labels)
    batch = gliner.collate_batch(prepared["input_x"], prepared["entity_types"], gliner.create_collator())
    markers = int((batch["input_ids"][0] == gliner.config.class_token_index).sum())
    seen_words = int(batch["words_mask"][0].max())
    if markers != len(labels) or seen_words != len(words[longest]):
        raise RuntimeError(f"GLiNER prompt cut: {markers}/{len(labels)} labels, {seen_words}/{len(words[longest])} "
                           "words; use smaller groups")


class Cells:
    """Every (system, label count) cell as a closure returning the number of entities it predicted."""

    def __init__(self, args, model: SpanModel, texts: list[str], label_sets: dict[int, list[str]]) -> None:
        from src.inference import SpanPredictor, predict

        self.model = model
        self.uni, self.bi = build_gliner(False), build_gliner(True)
        self.texts, self.args, self.label_sets = texts, args, label_sets
        slow = texts[:: args.slow_subset]
        self.subset = {n: slow if n >= args.slow_from else texts for n in label_sets}
        self.groups = {n: label_groups(self.uni, self.subset[n], labels) for n, labels in label_sets.items()}
        self.warm = {n: SpanPredictor(self.model) for n in label_sets}
        self.bi_embeddings = {n: self.encode_bi(labels) for n, labels in label_sets.items()}
        threshold = args.threshold
        self.cells = {}
        for n, labels in label_sets.items():
            self.cells["span predict (cold)", n] = lambda labels=labels: self._count(
                predict(self.model, self.texts, labels, threshold=threshold, batch_size=args.batch_size))
            self.cells["span predict (warm)", n] = lambda n=n, labels=labels: self._count(
                self.warm[n].predict(self.texts, labels, threshold=threshold, batch_size=args.batch_size))
            self.cells["GLiNER uni-encoder", n] = lambda n=n: self._count(self.run_uni(n))
            self.cells["GLiNER bi-encoder (cold)", n] = lambda n=n, labels=labels: self._count(self.bi.inference(
                self.subset[n], labels, threshold=args.gliner_threshold, batch_size=args.batch_size))
            self.cells["GLiNER bi-encoder (warm)", n] = lambda n=n, labels=labels: self._count(
                self.bi.batch_predict_with_embeds(self.subset[n], self.bi_embeddings[n], labels,
                                                  threshold=args.gliner_threshold, batch_size=args.batch_size))

    @torch.no_grad()
    def encode_bi(self, labels: list[str]) -> torch.Tensor:
        """The bi-encoder's label embeddings, computed once (untimed) for its warm cells. Same as its
        `encode_labels` (masked mean pooling), but padded to the longest label rather than to 512 subwords."""
        tokenizer = self.bi.data_processor.labels_tokenizer
        chunks = []
        for begin in range(0, len(labels), 256):
            enc = tokenizer(labels[begin : begin + 256], return_tensors="pt", truncation=True, padding="longest")
            chunks.append(self.bi.model.token_rep_layer.encode_labels(enc["input_ids"], enc["attention_mask"]))
        return torch.cat(chunks)

    def warm_up(self) -> None:
        """Run every cell once on 8 texts (kernel choice, lazy initialisation), untimed."""
        texts, subset = self.texts, self.subset
        self.texts, self.subset = texts[:8], {n: texts[:8] for n in subset}
        try:
            for cell in self.cells.values():
                cell()
        finally:
            self.texts, self.subset = texts, subset

    def run_uni(self, n: int) -> list[list[dict]]:
        """One uni-encoder call per label group over the cell's texts, results concatenated per text."""
        results = [[] for _ in self.subset[n]]
        for group in self.groups[n]:
            found = self.uni.inference(self.subset[n], group, threshold=self.args.gliner_threshold,
                                       batch_size=self.args.batch_size)
            for i, entities in enumerate(found):
                results[i] += entities
        return results

    @staticmethod
    def _count(results: list[list[dict]]) -> int:
        return sum(map(len, results))

    def texts_of(self, system: str, n: int) -> int:
        return len(self.texts) if system.startswith("span") else len(self.subset[n])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="trained SpanModel folder (default: untrained head on the embedded backbone)")
    parser.add_argument("--sentences", type=int, default=256, help="first N CoNLL-2003 test sentences")
    parser.add_argument("--labels", type=int, nargs="+", default=[4, 32, 256, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=0, help="untimed full rounds (after a warm-up on 8 texts)")
    parser.add_argument("--batch-size", type=int, default=8, help="texts per batch, both libraries (their default)")
    parser.add_argument("--threshold", type=float, default=None, help="SpanModel threshold (default: the model's)")
    parser.add_argument("--gliner-threshold", type=float, default=0.9)
    parser.add_argument("--slow-subset", type=int, default=4, help="GLiNER cells from --slow-from labels use every "
                        "k-th sentence")
    parser.add_argument("--slow-from", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 is steady on a shared machine, "
                        "0 = torch's default (one per core)")
    args = parser.parse_args(argv)
    quiet_libraries()
    set_threads(args.threads)

    wall = time.perf_counter()
    texts = [r["text"] for r in conll_records("test")[: args.sentences]]
    span_model = load_span_model(args.model)
    label_sets = {n: vocab_labels(span_model.type_tokenizer, n, first=FEW_LABELS) for n in args.labels}
    cells = Cells(args, span_model, texts, label_sets)
    print(f"{machine_summary()}\n{len(texts)} CoNLL-2003 test sentences; SpanModel: "
          f"{args.model or 'untrained head'}; GLiNER uni-encoder label groups: "
          + ", ".join(f"{n} labels -> {len(g)}" for n, g in cells.groups.items()))
    entities: dict = {}

    def timed(key):
        return lambda: entities.__setitem__(key, cells.cells[key]())

    cells.warm_up()
    seconds = interleaved({key: timed(key) for key in cells.cells}, repeats=args.repeats, warmup=args.warmup)
    rates = {key: [cells.texts_of(key[0], key[1]) / s for s in values] for key, values in seconds.items()}
    rows = []
    for system, n in sorted(cells.cells, key=lambda key: (key[0], key[1])):
        median = statistics.median(rates[system, n])
        rows.append([system, n, cells.texts_of(system, n), spread(rates[system, n], "{:.1f}"),
                     f"{statistics.median(seconds[system, n]):.2f}", entities[system, n],
                     f"{median / statistics.median(rates[system, args.labels[0]]):.2f}"])
    print(markdown_table(["system", "labels", "sentences", "sentences/s, median (min-max)", "median s",
                          "entities", f"throughput vs {args.labels[0]} labels"], rows))
    speedups = []
    for n in args.labels:
        for peer in ("GLiNER uni-encoder", "GLiNER bi-encoder (cold)", "GLiNER bi-encoder (warm)"):
            ours = "span predict (warm)" if "warm" in peer else "span predict (cold)"
            speedups.append([n, f"{ours} / {peer}", spread(per_round_ratios(rates[ours, n], rates[peer, n]), "{:.2f}")])
    print(markdown_table(["labels", "throughput ratio (per round)", "median (min-max)"], speedups))
    print(f"wall time {time.perf_counter() - wall:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
