"""Training-step cost of the SpanModel against a bare encoder step and a Hugging Face token-classification step.

    python benchmarks/bench_train.py [--repeats 20] [--batch-size 16] [--batches 4] [--no-memory] [--no-breakdown]
        [--case-features]

On the same pre-collated CoNLL-2003 training batches and the embedded backbone (all-MiniLM-L6-v2), each repetition
runs, in rotated order: (a) the token encoder alone (forward, a trivial loss, backward, AdamW step), (b) the SpanModel
step (model(**model_inputs(batch)).loss.backward(), AdamW from src.trainer.build_optimizer after the trainer's
default freezing (the type encoder's word embeddings), zero_grad), (c)
AutoModelForTokenClassification with 9 IOB2 labels (forward with labels, backward, AdamW). All three use the same
AdamW implementation, the trainer's default `optim` (fused; --optim adamw_torch for the per-tensor loop). No
gradient clipping in any of them. Collation (tokenising, aligning, label tensors) is timed on its own and is not
part of a step.
Peak memory: RSS growth over the first `--memory-steps` steps (optimizer state included), one fresh subprocess
per variant (see harness.PeakMemory). The breakdown times the parts of step (b) separately, interleaved as well;
--profile-head adds a torch.profiler table of the span head. One torch thread by default (--threads).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from harness import (  # noqa: E402
    BACKBONE,
    PeakMemory,
    batch_span_mask,
    conll_records,
    interleaved,
    machine_summary,
    markdown_table,
    per_round_ratios,
    quiet_libraries,
    run_probe,
    set_threads,
    span_head_loss,
    spread,
)
from peer_token_classification import TAGS, encode  # noqa: E402
from transformers import AutoModel, AutoModelForTokenClassification, DataCollatorForTokenClassification  # noqa: E402

from src.args import OPTIMIZERS, TrainingArgs  # noqa: E402
from src.collator import InBatchDataCollator, IndexedRecords, model_inputs  # noqa: E402
from src.config import SpanModelConfig, resolve_model_name_or_path  # noqa: E402
from src.model import SpanModel, span_candidate_mask  # noqa: E402
from src.trainer import build_optimizer, freeze_parameters  # noqa: E402

VARIANTS = ("encoder", "span_model", "hf_token_classification")
TYPE_DESCRIPTIONS = {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": "miscellaneous"}  # conll.json


def sample_items(num_batches: int, batch_size: int, seed: int = 0) -> list[list[tuple[int, dict]]]:
    """`num_batches` batches of (index, record) drawn at random (fixed seed) from the CoNLL-2003 training split."""
    records = conll_records("train")
    picked = random.Random(seed).sample(range(len(records)), num_batches * batch_size)
    dataset = IndexedRecords(records)
    items = [dataset[i] for i in picked]
    return [items[k * batch_size : (k + 1) * batch_size] for k in range(num_batches)]


class TrainSteps:
    """The three models, their optimizers and pre-collated batches; `step(variant)` runs one training step."""

    def __init__(
        self, batches: list[list[tuple[int, dict]]], max_seq_length: int, variants=VARIANTS,
        optim: str = TrainingArgs.optim, freeze_type_embeddings: bool = TrainingArgs.freeze_type_embeddings,
        case_features: bool = False,
    ) -> None:
        torch.manual_seed(0)
        path = resolve_model_name_or_path(BACKBONE)
        config = SpanModelConfig(max_span_length=30, type_descriptions=TYPE_DESCRIPTIONS, case_features=case_features)
        self.span_model = SpanModel.from_config(config).train()
        self.collator = InBatchDataCollator(
            self.span_model.token_tokenizer, self.span_model.type_tokenizer, annotation_format="tokens",
            max_seq_length=max_seq_length, max_span_length=config.max_span_length,
            type_descriptions=config.type_descriptions,
        )
        self.hf_collator = DataCollatorForTokenClassification(self.span_model.token_tokenizer)
        self.max_seq_length = max_seq_length
        self.span_batches = [model_inputs(self.collator(items)) for items in batches]
        self.hf_batches = [self.collate_hf(items) for items in batches]
        self.models, self.optimizers = {}, {}
        self.fused = optim == "adamw_torch_fused"
        if "span_model" in variants:
            self.models["span_model"] = self.span_model
            args = TrainingArgs(learning_rate=5e-5, head_learning_rate=1e-3, weight_decay=0.01, optim=optim,
                                freeze_type_embeddings=freeze_type_embeddings)
            freeze_parameters(self.span_model, args)
            self.optimizers["span_model"] = build_optimizer(self.span_model, args)
        if "encoder" in variants:
            self.models["encoder"] = AutoModel.from_pretrained(path).train()
        if "hf_token_classification" in variants:
            self.models["hf_token_classification"] = AutoModelForTokenClassification.from_pretrained(
                path, num_labels=len(TAGS)
            ).train()
        for name in ("encoder", "hf_token_classification"):
            if name in self.models:
                self.optimizers[name] = torch.optim.AdamW(
                    self.models[name].parameters(), lr=5e-5, weight_decay=0.01, fused=self.fused
                )
        self.position = dict.fromkeys(VARIANTS, 0)

    def collate_hf(self, items: list[tuple[int, dict]]) -> dict:
        """Token-classification batch: first-subword labels, padded (the peer's collation)."""
        return self.hf_collator([encode(self.span_model.token_tokenizer, r, self.max_seq_length) for _, r in items])

    def loss(self, variant: str, k: int) -> torch.Tensor:
        if variant == "encoder":
            batch = self.span_batches[k]
            states = self.models["encoder"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            return states.last_hidden_state.pow(2).mean()
        if variant == "span_model":
            return self.span_model(**self.span_batches[k]).loss
        return self.models[variant](**self.hf_batches[k]).loss

    def step(self, variant: str) -> None:
        """One update on the variant's next batch (the batches cycle, the same for every variant)."""
        k = self.position[variant] % len(self.span_batches)
        self.position[variant] += 1
        self.loss(variant, k).backward()
        self.optimizers[variant].step()
        self.optimizers[variant].zero_grad(set_to_none=True)


def breakdown_parts(steps: TrainSteps) -> dict:
    """Closures that time the parts of a SpanModel step one at a time, cycling over the step's batches.

    Encoder and head parts run forward + backward of a stand-in loss (or of span_loss on detached logits); the
    optimizer parts run `step()` on gradients allocated once beforehand, so they time the update alone.
    """
    model = steps.span_model
    batches = steps.span_batches
    encoder_params = [p for n, p in model.named_parameters() if n.startswith("token_encoder.")]
    all_params = list(model.parameters())
    grads = {p: torch.zeros_like(p) for p in all_params}
    optimizers = {
        "all": steps.optimizers["span_model"],
        "encoder": torch.optim.AdamW(encoder_params, lr=5e-5, weight_decay=0.01, fused=steps.fused),
    }
    fixed = []  # per batch: encoder outputs, legal-span mask and logits, detached
    with torch.no_grad():
        for batch in batches:
            states = model.token_encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            types = model.encode_types(batch["type_input_ids"], batch["type_attention_mask"])
            mask = batch_span_mask(model, batch)
            logits = model.span_head(states.last_hidden_state, types, *mask)
            fixed.append((states.last_hidden_state, types, mask, logits))
    position = [0]

    def next_batch() -> int:
        position[0] += 1
        return position[0] % len(batches)

    def token_encoder():
        b = batches[next_batch()]
        model.token_encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state.pow(
            2).mean().backward()
        model.zero_grad(set_to_none=True)

    def type_encoder():
        b = batches[next_batch()]
        model.encode_types(b["type_input_ids"], b["type_attention_mask"]).pow(2).mean().backward()
        model.zero_grad(set_to_none=True)

    def span_head():
        states, types, mask, _ = fixed[next_batch()]
        logits = model.span_head(states.detach().requires_grad_(), types.detach().requires_grad_(), *mask)
        sum(x.mean() for x in logits).backward()
        model.zero_grad(set_to_none=True)

    def loss():
        k = next_batch()
        logits = [x.detach().requires_grad_() for x in fixed[k][3]]
        span_head_loss(model, batches[k], *logits).backward()

    def optimizer_step(name: str):
        def run():
            params = [p for group in optimizers[name].param_groups for p in group["params"]]
            for p in params:
                p.grad = grads[p]
            optimizers[name].step()
            for p in params:
                p.grad = None
        return run

    return {
        "token encoder fwd+bwd": token_encoder,
        "type encoder fwd+bwd": type_encoder,
        "span head fwd+bwd (no loss)": span_head,
        "span_loss fwd+bwd (on fixed logits)": loss,
        "AdamW step, all SpanModel params": optimizer_step("all"),
        "AdamW step, token encoder params only (= step (a)'s)": optimizer_step("encoder"),
    }


def profile_span_head(steps: TrainSteps, rounds: int = 5, rows: int = 15) -> str:
    """torch.profiler table of the span head's forward + backward (self CPU time per op), over the step's batches."""
    from torch.profiler import ProfilerActivity, profile

    parts = breakdown_parts(steps)
    head = parts["span head fwd+bwd (no loss)"]
    for _ in range(2):
        head()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(rounds * len(steps.span_batches)):
            head()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def legal_span_share(batches: list[dict], max_span_length: int) -> float:
    """Legal spans (span_mask) as a share of the [B, L, W] positions the span head materialises."""
    legal = total = 0
    for b in batches:
        mask = span_candidate_mask(b["start_mask"].bool(), b["end_mask"].bool(), max_span_length)
        legal += int(mask.sum())
        total += mask.numel()
    return legal / total


def collation_seconds(steps: TrainSteps, batches, repeats: int) -> dict[str, list[float]]:
    """Seconds per batch to collate for the SpanModel (InBatchDataCollator) and for the peer (tokenise + align)."""
    out = {"span_model": [], "hf_token_classification": []}
    for _ in range(repeats):
        for items in batches:
            start = time.perf_counter()
            steps.collator(items)
            out["span_model"].append(time.perf_counter() - start)
            start = time.perf_counter()
            steps.collate_hf(items)
            out["hf_token_classification"].append(time.perf_counter() - start)
    return out


def memory_probe(args) -> dict:
    """In this (fresh) process: RSS growth of `--memory-steps` steps of one variant."""
    steps = TrainSteps(sample_items(args.batches, args.batch_size), args.max_seq_length, variants=(args.probe,),
                       optim=args.optim, freeze_type_embeddings=not args.train_type_embeddings,
                       case_features=args.case_features)
    with PeakMemory() as peak:
        for _ in range(args.memory_steps):
            steps.step(args.probe)
    return {"growth_mib": peak.growth_mib, "baseline_mib": peak.baseline_mib, "peak_mib": peak.peak_mib,
            "exact": peak.exact}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="interleaved rounds (one step of each variant)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=4, help="distinct batches, cycled")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--memory-steps", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--no-breakdown", action="store_true", help="skip timing the parts of the SpanModel step")
    parser.add_argument("--profile-head", action="store_true", help="also print a torch.profiler table of the "
                        "span head's forward + backward")
    parser.add_argument("--optim", choices=OPTIMIZERS, default=TrainingArgs.optim,
                        help="AdamW implementation of all three variants (default: the trainer's)")
    parser.add_argument("--train-type-embeddings", action="store_true",
                        help="(b) trains the type encoder's word embeddings too (freeze_type_embeddings false)")
    parser.add_argument("--case-features", action="store_true",
                        help="(b) with case_features (letter-case vectors added to the input embeddings)")
    parser.add_argument("--probe", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 is steady on a shared machine, "
                        "0 = torch's default (one per core)")
    args = parser.parse_args(argv)
    quiet_libraries()
    set_threads(args.threads)
    if args.probe:
        print(json.dumps(memory_probe(args)))
        return 0

    wall = time.perf_counter()
    batches = sample_items(args.batches, args.batch_size)
    steps = TrainSteps(batches, args.max_seq_length, optim=args.optim,
                       freeze_type_embeddings=not args.train_type_embeddings, case_features=args.case_features)
    lengths = [b["input_ids"].shape[1] for b in steps.span_batches]
    types = [b["type_input_ids"].shape[0] for b in steps.span_batches]
    print(f"{machine_summary()}\n{args.batches} batches of {args.batch_size} CoNLL-2003 train sentences, padded "
          f"lengths {lengths} subwords, types per batch {types}; {args.repeats} rounds after {args.warmup} warm-up; "
          f"optim {args.optim} for all three; type embeddings "
          f"{'trained' if args.train_type_embeddings else 'frozen'} in (b)"
          f"{'; case_features in (b)' if args.case_features else ''}")
    seconds = interleaved({v: (lambda v=v: steps.step(v)) for v in VARIANTS}, repeats=args.repeats,
                          warmup=args.warmup)
    collation = collation_seconds(steps, batches, repeats=3)
    memory = {}
    if not args.no_memory:
        common = ["--batch-size", str(args.batch_size), "--batches", str(args.batches), "--max-seq-length",
                  str(args.max_seq_length), "--memory-steps", str(args.memory_steps), "--threads", str(args.threads),
                  "--optim", args.optim, *(["--train-type-embeddings"] if args.train_type_embeddings else []),
                  *(["--case-features"] if args.case_features else [])]
        memory = {v: run_probe(__file__, ["--probe", v, *common]) for v in VARIANTS}
    breakdown = {}
    if not args.no_breakdown:
        breakdown = interleaved(breakdown_parts(steps), repeats=args.repeats, warmup=args.warmup)

    labels = {"encoder": "(a) token encoder step", "span_model": "(b) SpanModel step",
              "hf_token_classification": "(c) HF token-classification step"}
    rows = []
    for v in VARIANTS:
        mem = memory.get(v)
        rows.append([labels[v], spread(seconds[v]), f"{mem['growth_mib']:.0f}" if mem else "-",
                     f"{mem['peak_mib']:.0f}" if mem else "-",
                     spread(collation[v], "{:.4f}") if v in collation else "(shares (b)'s batch)"])
    print(markdown_table(["variant", "step s, median (min-max)", "peak RSS growth MiB", "peak RSS MiB",
                          "collation s/batch (not in step)"], rows))
    ratio_rows = [
        ["b/a", spread(per_round_ratios(seconds["span_model"], seconds["encoder"])), "<= 1.15"],
        ["b/c", spread(per_round_ratios(seconds["span_model"], seconds["hf_token_classification"])), "<= 1.25"],
        ["c/a", spread(per_round_ratios(seconds["hf_token_classification"], seconds["encoder"])), "-"],
    ]
    print(markdown_table(["ratio (per round)", "median (min-max)", "target"], ratio_rows))
    if memory:
        print(markdown_table(["memory ratio", "value"], [
            ["growth b/a", f"{memory['span_model']['growth_mib'] / memory['encoder']['growth_mib']:.2f}"],
            ["growth b/c",
             f"{memory['span_model']['growth_mib'] / memory['hf_token_classification']['growth_mib']:.2f}"],
        ]))
    if breakdown:
        share = legal_span_share(steps.span_batches, steps.span_model.config.max_span_length)
        print(f"legal spans: {share:.1%} of the [B, L, W] positions the span head computes")
        step_median = statistics.median(seconds["span_model"])
        print(markdown_table(["part of step (b)", "s, median (min-max)", "share of (b) median"], [
            [name, spread(values), f"{statistics.median(values) / step_median:.0%}"]
            for name, values in breakdown.items()
        ]))
    if args.profile_head:
        print(profile_span_head(steps))
    print(f"wall time {time.perf_counter() - wall:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
