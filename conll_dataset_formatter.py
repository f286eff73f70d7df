"""Convert NER data (CoNLL files, corpus folders, GLiNER, benchmark or SLURP JSON, Hugging Face datasets) to the
project's JSONL format, write JSONL as GLiNER or benchmark JSON, or report statistics of a JSONL file.
See docs/data.md; the work is done in src/conversion.py, src/corpus_formats.py and src/corpus_stats.py.

    python conll_dataset_formatter.py --input ../shared/data/conll2003/train.txt --output data/processed/train.jsonl
    python conll_dataset_formatter.py --input ../shared/data/wnut17 --output data/processed/wnut17
    python conll_dataset_formatter.py --input ../shared/data/stackoverflow/test.txt --tag-column 2 --output so.jsonl
    python conll_dataset_formatter.py --input ../shared/data/slurp/devel.jsonl --format slurp --output slurp.jsonl
    python conll_dataset_formatter.py --stats data/processed/train.jsonl --tokenizer all-MiniLM-L6-v2
    python conll_dataset_formatter.py --to-gliner data/processed/train.jsonl --output data/gliner/train.json
    python conll_dataset_formatter.py --from-gliner data/gliner/train.json --output data/processed/train.jsonl
    python conll_dataset_formatter.py --to-benchmark data/processed/test.jsonl --output data/benchmark/test.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.conll import SCHEMES
from src.corpus_formats import CORPUS_FORMATS

INPUT_FORMAT = "conll"  # the default of --format


def build_parser() -> argparse.ArgumentParser:
    """The formatter's command line: one mode (--input, --hf-dataset, --stats, --to-gliner, --from-gliner or
    --to-benchmark) and its options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--input", type=Path, help="a corpus file (see --format), or a folder whose files are all read")
    mode.add_argument("--hf-dataset", metavar="NAME",
                      help="a Hugging Face dataset with tokens/ner_tags columns: hub id, ID:CONFIG or a save_to_disk "
                      "folder")
    mode.add_argument("--stats", type=Path, metavar="FILE.jsonl", help="validate a JSONL file and print statistics")
    mode.add_argument("--to-gliner", type=Path, metavar="FILE.jsonl",
                      help="convert a JSONL file to GLiNER's format (a JSON list; JSONL if --output ends in .jsonl)")
    mode.add_argument("--from-gliner", type=Path, metavar="FILE",
                      help="convert a GLiNER data file (JSON list or JSONL) to JSONL (as --input FILE --format gliner)")
    mode.add_argument("--to-benchmark", type=Path, metavar="FILE.jsonl",
                      help="convert a JSONL file to the zero-shot benchmark JSON (JSONL if --output ends in .jsonl)")
    parser.add_argument("--output", type=Path, help="output .jsonl file, or folder (folder input, --hf-dataset)")
    parser.add_argument("--format", choices=CORPUS_FORMATS, help=f"with --input: its format (default {INPUT_FORMAT})")
    parser.add_argument("--scheme", choices=("auto", *SCHEMES), default="auto", help="tag scheme of the input")
    parser.add_argument("--tag-column", type=int, metavar="N",
                        help="CoNLL input: 1-based column holding the tag (default: the last column)")
    parser.add_argument("--label-map", help='JSON object or JSON file renaming labels, e.g. \'{"PER": "person"}\'')
    parser.add_argument("--tokenizer", help="with --stats: tokenizer name or path for subword statistics")
    parser.add_argument("--max-seq-length", type=int, help="with --stats: subwords per sentence incl. special tokens")
    parser.add_argument("--max-span-length", type=int, help="with --stats: longest entity (tokens, and subwords)")
    return parser


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from src import conversion

    if args.stats is not None:
        from src.corpus_stats import compute_corpus_stats, format_corpus_stats, load_tokenizer
        from src.data import read_jsonl

        records = read_jsonl(args.stats)
        tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
        stats = compute_corpus_stats(
            records,
            tokenizer=tokenizer,
            tokenizer_name=args.tokenizer,
            max_seq_length=args.max_seq_length,
            max_span_length=args.max_span_length,
        )
        print(format_corpus_stats(stats, title=str(args.stats)))
        return
    if args.output is None:
        parser.error("--output is required with --input, --hf-dataset, --to-gliner, --from-gliner and --to-benchmark")
    if args.to_gliner is not None or args.to_benchmark is not None:
        if args.label_map or args.scheme != "auto":
            parser.error("--label-map and --scheme go with --input, --from-gliner and --hf-dataset")
        if args.to_gliner is not None:
            print(conversion.convert_to_gliner(args.to_gliner, args.output))
        else:
            print(conversion.convert_to_benchmark(args.to_benchmark, args.output))
        return
    label_map = conversion.parse_label_map(args.label_map) if args.label_map else None
    if args.input is not None or args.from_gliner is not None:
        source, format = (args.input, args.format or INPUT_FORMAT) if args.input else (args.from_gliner, "gliner")
        converted = conversion.convert_paths(source, args.output, format=format, scheme=args.scheme,
                                             label_map=label_map, tag_column=args.tag_column)
    else:
        from src.hub_datasets import load_dataset_dict

        dataset_dict = load_dataset_dict(args.hf_dataset)
        converted = conversion.convert_hf_dataset(
            dataset_dict, args.output, name=args.hf_dataset, scheme=args.scheme, label_map=label_map
        )
    for item in converted:
        print(conversion.format_conversion_summary(item, label_map))


def check_usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Reject option combinations that do not apply (argparse exits with status 2)."""
    for name in ("max_seq_length", "max_span_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.stats is None and (args.tokenizer or args.max_seq_length or args.max_span_length):
        parser.error("--tokenizer, --max-seq-length and --max-span-length go with --stats")
    if args.format is not None and args.input is None:
        parser.error("--format goes with --input")
    conll_input = args.input is not None and (args.format or INPUT_FORMAT) == "conll"
    if args.tag_column is not None and not conll_input:
        parser.error("--tag-column goes with CoNLL --input")
    if args.tag_column is not None and args.tag_column < 2:
        parser.error("--tag-column must be 2 or more (column 1 holds the token)")
    if args.scheme != "auto" and not (conll_input or args.hf_dataset):
        parser.error("--scheme goes with CoNLL --input and --hf-dataset")


def main(argv: list[str] | None = None) -> int:
    """Run the formatter; return 0 on success, 1 on bad input (the message names file and line), 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_usage(args, parser)
    try:
        _run(args, parser)
    except (OSError, ValueError) as error:  # DataValidationError, ConllFormatError, missing files, hub unreachable
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
