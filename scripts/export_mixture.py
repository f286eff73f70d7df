"""Write the training stream of a mixture config (its `datasets`) to one file, e.g. to train a peer on the same data.

    python scripts/export_mixture.py configs/open_type.json --output data/processed/open_type/train.json
    python scripts/export_mixture.py configs/open_type.json --output mix.jsonl --format jsonl

One epoch of draws (see configs/README.md, "Training mixtures"), in an order shuffled with the config's seed: the same
sentences, corpus shares and renamed labels that `train.py` trains on. GLiNER's format keeps only words and spans;
the project's JSONL also keeps each record's label set (`labels`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="a training config with a 'datasets' mixture")
    parser.add_argument("--output", type=Path, required=True, help="file to write (.json for GLiNER, .jsonl)")
    parser.add_argument("--format", choices=("gliner", "jsonl"), default="gliner", help="output format")
    parser.add_argument("--max-examples", type=int, help="write only the first N draws of the shuffled epoch")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np

    from src.args import ConfigError, load_config
    from src.conversion import write_json_items
    from src.data import write_jsonl
    from src.json_formats import records_to_gliner
    from src.mixture import load_mixture
    from src.sources import parse_sources

    try:
        _, data_args, training_args = load_config(args.config)
        if data_args.datasets is None:
            raise ConfigError(f"{args.config}: no 'datasets' mixture to export")
        mixture = load_mixture(parse_sources(data_args.datasets), temperature=data_args.sampling_temperature,
                               seed=training_args.seed, cache_dir=data_args.data_cache_dir)
    except (ConfigError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if mixture.train is None:
        print(f"error: {args.config}: the mixture has no training sentences", file=sys.stderr)
        return 2
    order = np.random.default_rng(training_args.seed).permutation(len(mixture.train))
    if args.max_examples is not None:
        order = order[: args.max_examples]
    records = [mixture.train[int(j)][1] for j in order]
    if args.format == "gliner":
        write_json_items(args.output, records_to_gliner(records))
    else:
        write_jsonl(args.output, records)
    counts = {c.source.name: c.draws for c in mixture.corpora}
    print(f"{args.output}: {len(records):,} sentences from {len(counts)} corpora "
          f"({', '.join(f'{name} {n:,}' for name, n in counts.items())} per epoch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
