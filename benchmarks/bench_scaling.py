"""How SpanModel forward+backward time and peak memory grow with the sequence length and the number of types.

    python benchmarks/bench_scaling.py [--lengths 64 128 256 512 1024] [--types 4 16 64 256] [--batch-size 2]

Inputs are CoNLL-2003 training sentences concatenated into long examples, cut to exactly L subwords, with the gold
spans as labels; max_span_length 30. The length sweep uses the 4 CoNLL types, the types sweep a fixed length
(--types-length) with the 4 CoNLL types plus vocabulary words as extra type names. Beyond the backbone's 512
positions the token encoder runs on consecutive windows of 512 (stacked on the batch axis, positions restarting at
0, no extra special tokens) and their states are concatenated, so the span head and the loss see all L positions.
Each round runs every configuration once (rotated order): the full step (model(**batch).loss.backward()) and the
parts alone, under the same load: the token encoder per length and the type encoder per type count (forward +
backward of a trivial loss), and the span head + span_loss on fixed encoder outputs. One torch thread by default
(--threads), which is steady on a shared machine. Peak memory: RSS growth during one step after a warm-up step
(parameter gradients already allocated, so the growth is activations and temporaries), one fresh subprocess per
configuration with glibc's mmap threshold pinned at 128 KiB so freed tensors leave the RSS (harness.PeakMemory).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from harness import (  # noqa: E402
    CONLL_TYPES,
    PeakMemory,
    batch_span_mask,
    conll_records,
    interleaved,
    machine_summary,
    markdown_table,
    quiet_libraries,
    run_probe,
    set_threads,
    span_head_loss,
    spread,
    vocabulary_labels,
)
from torch import nn  # noqa: E402
from transformers.modeling_outputs import BaseModelOutput  # noqa: E402

from src.collator import InBatchDataCollator, model_inputs  # noqa: E402
from src.config import SpanModelConfig  # noqa: E402
from src.model import SpanModel  # noqa: E402

BACKBONE_POSITIONS = 512


class WindowedEncoder(nn.Module):
    """Runs an encoder on consecutive windows of at most `window` positions and concatenates their states."""

    def __init__(self, encoder: nn.Module, window: int = BACKBONE_POSITIONS) -> None:
        super().__init__()
        self.encoder, self.window = encoder, window

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> BaseModelOutput:
        batch, length = input_ids.shape
        if length <= self.window:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        count = math.ceil(length / self.window)
        pad = count * self.window - length
        ids = F.pad(input_ids, (0, pad)).view(batch * count, self.window)  # [B * n, window]
        mask = F.pad(attention_mask, (0, pad)).view(batch * count, self.window)  # [B * n, window]
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # [B * n, window, H]
        return BaseModelOutput(last_hidden_state=states.reshape(batch, count * self.window, -1)[:, :length])


def long_records(count: int, min_words: int) -> list[dict]:
    """`count` examples of at least `min_words` words, each made of consecutive CoNLL-2003 training sentences."""
    sentences, out, k = conll_records("train"), [], 0
    for _ in range(count):
        tokens, spans = [], []
        while len(tokens) < min_words:
            record = sentences[k % len(sentences)]
            spans += [{**s, "start": s["start"] + len(tokens), "end": s["end"] + len(tokens)}
                      for s in record["token_spans"]]
            tokens += record["tokens"]
            k += 1
        out.append({"tokens": tokens, "text": " ".join(tokens), "token_spans": spans})
    return out


class Scaling:
    """One model (windowed token encoder) and the pre-collated batch of every (length, types) configuration."""

    def __init__(self, configs: list[tuple[int, int]], batch_size: int) -> None:
        torch.manual_seed(0)
        self.model = SpanModel.from_config(SpanModelConfig(max_span_length=30)).train()
        self.model.token_encoder = WindowedEncoder(self.model.token_encoder)
        self.records = long_records(batch_size, max(length for length, _ in configs))
        self.batches = {(length, types): self.collate(length, types) for length, types in configs}
        self.free_grads = True  # False keeps parameter gradients allocated between steps (memory probes)
        self.encoded: dict = {}  # (length, types) -> detached token states and type embeddings, for head_step

    def collate(self, length: int, types: int) -> dict:
        labels = vocabulary_labels(self.model.type_tokenizer, types, first=CONLL_TYPES)
        collator = InBatchDataCollator(
            self.model.token_tokenizer, self.model.type_tokenizer, annotation_format="tokens",
            max_seq_length=length, max_span_length=self.model.config.max_span_length, label_set=labels,
        )
        batch = model_inputs(collator(list(enumerate(self.records))))
        assert batch["input_ids"].shape[1] == length and batch["type_input_ids"].shape[0] == types
        return batch

    def full_step(self, length: int, types: int) -> None:
        self.model(**self.batches[length, types]).loss.backward()
        self.model.zero_grad(set_to_none=self.free_grads)

    def encoder_step(self, length: int, types: int) -> None:
        batch = self.batches[length, types]
        states = self.model.token_encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        states.last_hidden_state.pow(2).mean().backward()
        self.model.zero_grad(set_to_none=self.free_grads)

    def head_step(self, length: int, types: int) -> None:
        """Span head + span_loss forward and backward on fixed (detached) encoder outputs."""
        batch = self.batches[length, types]
        if (length, types) not in self.encoded:
            with torch.no_grad():
                states = self.model.token_encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                types_out = self.model.encode_types(batch["type_input_ids"], batch["type_attention_mask"])
            self.encoded[length, types] = (states.last_hidden_state, types_out)
        states, type_embeddings = self.encoded[length, types]
        logits = self.model.span_head(states.requires_grad_(), type_embeddings.requires_grad_(),
                                      *batch_span_mask(self.model, batch))
        span_head_loss(self.model, batch, *logits).backward()
        self.model.zero_grad(set_to_none=self.free_grads)

    def type_encoder_step(self, length: int, types: int) -> None:
        batch = self.batches[length, types]
        self.model.encode_types(batch["type_input_ids"], batch["type_attention_mask"]).pow(2).mean().backward()
        self.model.zero_grad(set_to_none=self.free_grads)


def cpu_profile(step, repeats: int = 3) -> tuple[float, float, float]:
    """Median user CPU seconds, system CPU seconds and minor page faults of one call of `step` (after one call)."""
    step()
    samples = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF)
        step()
        after = resource.getrusage(resource.RUSAGE_SELF)
        samples.append((after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime,
                        after.ru_minflt - before.ru_minflt))
    return tuple(statistics.median(sample[k] for sample in samples) for k in range(3))


def fit(xs: list[float], ys: list[float]) -> dict:
    """Least squares y = a + b x + c x^2; `quadratic_share` is c x^2 / y at the largest x."""
    design = torch.tensor([[1.0, x, x * x] for x in xs], dtype=torch.float64)
    a, b, c = torch.linalg.lstsq(design, torch.tensor(ys, dtype=torch.float64).unsqueeze(1)).solution.squeeze(1)
    return {"a": float(a), "b": float(b), "c": float(c), "quadratic_share": float(c) * xs[-1] ** 2 / ys[-1]}


def marginal(xs: list[int], ys: list[float], scale: float = 1.0) -> list[str]:
    """Cost per added unit between consecutive points: constant when y is linear in x, doubling when quadratic."""
    out = ["-"]
    for k in range(1, len(xs)):
        out.append(f"{scale * (ys[k] - ys[k - 1]) / (xs[k] - xs[k - 1]):.3f}")
    return out


def sweep(unit: str, xs: list[int], full: dict, parts: dict[str, dict], memory: dict[str, dict]) -> tuple:
    """Table and fit rows of one sweep. `full[x]` and `parts[name][x]`: per-round seconds of the full step and of
    parts run alone (encoders, span head + loss); every series gets its cost per added unit between consecutive
    points (constant when linear, doubling when quadratic). `memory`: peak MiB of "full" and "token encoder", when
    measured; memory is reported above the token encoder (peaks of separate processes do not add part by part)."""
    unit1 = unit[:-1]
    series = {"full": full, **parts}
    medians = {name: [statistics.median(values[x]) for x in xs] for name, values in series.items()}
    marginals = {name: marginal(xs, ys, 1000.0) for name, ys in medians.items()}
    have_memory = bool(memory) and all(memory["full"].get(x) is not None for x in xs)
    m_above = [memory["full"][x] - memory["token encoder"][x] for x in xs] if have_memory else None
    dm = marginal(xs, m_above) if have_memory else ["-"] * len(xs)
    rows = []
    for k, x in enumerate(xs):
        cells = [x]
        for name, values in series.items():
            cells += [spread(values[x]), marginals[name][k]]
        cells += [f"{memory['full'][x]:.0f}" if have_memory else "-", f"{m_above[k]:.0f}" if have_memory else "-",
                  dm[k]]
        rows.append(cells)
    headers = [unit]
    for name in series:
        headers += [f"{name} s", f"{name}: ms per added {unit1}"]
    headers += ["full peak MiB", "above token encoder MiB", f"above token encoder: MiB per added {unit1}"]
    fits = []
    fitted = [(f"time, {name}", ys) for name, ys in medians.items()]
    if have_memory:
        fitted += [("memory, full step", [memory["full"][x] for x in xs]), ("memory, above token encoder", m_above)]
    for name, ys in fitted:
        f = fit(xs, ys)
        fits.append([f"{name} vs {unit}", f"{f['b']:.4g}", f"{f['c']:.3g}", f"{f['quadratic_share']:.1%}"])
    return markdown_table(headers, rows), fits


def memory_probe(spec: str, batch_size: int) -> dict:
    """In this (fresh) process: RSS growth of one step of one configuration, spec 'full|encoder:L:C', after a
    warm-up step that leaves the parameter gradients allocated (so the growth is activations and temporaries)."""
    kind, length, types = spec.split(":")
    scaling = Scaling([(int(length), int(types))], batch_size)
    scaling.free_grads = False
    step = scaling.full_step if kind == "full" else scaling.encoder_step
    step(int(length), int(types))
    with PeakMemory() as peak:
        step(int(length), int(types))
    return {"growth_mib": peak.growth_mib, "exact": peak.exact}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--types", type=int, nargs="+", default=[4, 16, 64, 256])
    parser.add_argument("--types-length", type=int, default=256, help="sequence length of the types sweep")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 is steady on a shared machine, "
                        "0 = torch's default (one per core)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quiet_libraries()
    set_threads(args.threads)
    if args.probe:
        print(json.dumps(memory_probe(args.probe, args.batch_size)))
        return 0

    wall = time.perf_counter()
    length_configs = [(length, len(CONLL_TYPES)) for length in args.lengths]
    type_configs = [(args.types_length, types) for types in args.types]
    configs = list(dict.fromkeys([*length_configs, (args.types_length, len(CONLL_TYPES)), *type_configs]))
    scaling = Scaling(configs, args.batch_size)
    print(f"{machine_summary()}\nbatch {args.batch_size} x L subwords, max_span_length 30, {args.repeats} rounds "
          f"after {args.warmup} warm-up")
    encoder_lengths = sorted({length for length, _ in configs})
    variants = {("full", *c): (lambda c=c: scaling.full_step(*c)) for c in configs}
    variants.update({("encoder", length): (lambda length=length: scaling.encoder_step(length, len(CONLL_TYPES)))
                     for length in encoder_lengths})
    variants.update({("types", c[1]): (lambda c=c: scaling.type_encoder_step(*c)) for c in type_configs})
    variants.update({("head", *c): (lambda c=c: scaling.head_step(*c)) for c in configs})
    seconds = interleaved(variants, repeats=args.repeats, warmup=args.warmup)
    memory: dict = {}
    if not args.no_memory:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
        for key in [k for k in variants if k[0] in ("full", "encoder")]:
            length, types = key[1:] if key[0] == "full" else (key[1], len(CONLL_TYPES))
            memory[key] = run_probe(__file__, ["--probe", f"{key[0]}:{length}:{types}", "--batch-size",
                                               str(args.batch_size), "--threads", str(args.threads)])["growth_mib"]

    c0, length0 = len(CONLL_TYPES), args.types_length

    def mem(kind: str, keys: dict) -> dict:
        return {x: memory.get((kind, *key)) for x, key in keys.items()} if memory else {}

    length_table, length_fits = sweep(
        "subwords", args.lengths, {x: seconds["full", x, c0] for x in args.lengths},
        {"token encoder": {x: seconds["encoder", x] for x in args.lengths},
         "span head + loss": {x: seconds["head", x, c0] for x in args.lengths}},
        {"full": mem("full", {x: (x, c0) for x in args.lengths}),
         "token encoder": mem("encoder", {x: (x,) for x in args.lengths})} if memory else {})
    types_table, types_fits = sweep(
        "types", args.types, {x: seconds["full", length0, x] for x in args.types},
        {"type encoder": {x: seconds["types", x] for x in args.types},
         "span head + loss": {x: seconds["head", length0, x] for x in args.types}},
        {"full": mem("full", {x: (length0, x) for x in args.types}),
         "token encoder": mem("encoder", {x: (length0,) for x in args.types})} if memory else {})
    type_lengths = ", ".join(f"{x}: {scaling.batches[length0, x]['type_input_ids'].shape[1]}" for x in args.types)
    print(f"\nLength sweep ({c0} types, batch {args.batch_size}); peak MiB = peak RSS growth of one step:")
    print(length_table)
    print(f"\nTypes sweep ({length0} subwords, batch {args.batch_size}; token encoder alone: "
          f"{spread(seconds['encoder', length0])} s; padded type-text length per type count: {type_lengths}):")
    print(types_table)
    rows = []
    for x in args.lengths:
        user, system, faults = cpu_profile(lambda x=x: scaling.head_step(x, c0))
        rows.append([x, f"{user:.3f}", f"{system:.3f}", f"{faults:.0f}"])
    print("\nSpan head + loss alone, CPU time of one call (page faults: fresh memory the kernel maps in; glibc maps "
          "every allocation above 32 MiB afresh):")
    print(markdown_table(["subwords", "user s", "system s", "minor page faults"], rows))
    print("\nFit y = a + b x + c x^2 on the medians (quadratic share = c x^2 / y at the largest x):")
    print(markdown_table(["series", "b (per unit)", "c", "quadratic share at max x"], length_fits + types_fits))
    print(f"wall time {time.perf_counter() - wall:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
