"""Generate an NER dataset: label raw text with a teacher model into training-ready JSONL (see docs/generation.md).

    python annotate.py TEACHER_DIR --input corpus.txt --labels PER,ORG,LOC,MISC --output data/generated.jsonl
    python annotate.py GLINER_DIR --teacher-type gliner --input docs/ --labels "PER=person,ORG=organization" \\
        --output data/generated.jsonl --split sentences --keep-empty 0.1
    python annotate.py TEACHER_DIR ... --num-workers 2        # or: accelerate launch annotate.py ..., --engine ray

--input is plain text (one document per line; --document file: one per file), a folder of .txt files, or JSONL
(.jsonl/.json, or --input-format jsonl) with a "text" field and optionally "id". A killed run, restarted with the
same command, continues after its last complete chunk; the manifest DATA.jsonl.manifest.json records the settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The command line of annotate.py."""
    from src.precisions import BACKEND_PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher", type=Path, help="a saved span model folder (e.g. outputs/run/best) or, with "
                                                   "--teacher-type gliner, a GLiNER model folder")
    parser.add_argument("--teacher-type", choices=("span", "gliner"), default="span")
    parser.add_argument("--input", type=Path, required=True, help="a text or JSONL file, or a folder of them")
    parser.add_argument("--input-format", choices=("auto", "text", "jsonl"), default="auto",
                        help="auto: JSONL for .jsonl/.json files, plain text otherwise")
    parser.add_argument("--document", choices=("line", "file"), default="line",
                        help="plain text: each non-blank line is a document (line) or each whole file (file)")
    parser.add_argument("--labels", required=True, help="comma-separated entity types; NAME=PROMPT writes NAME and "
                                                        "asks the teacher for PROMPT (e.g. PER=person)")
    parser.add_argument("--output", type=Path, required=True, help="the JSONL file to write")
    parser.add_argument("--threshold", type=float, help="probability threshold for every type (default: the span "
                                                        "teacher's inference.json, else 0.5)")
    parser.add_argument("--type-threshold", help="per-type thresholds NAME=VALUE,..., over --threshold")
    parser.add_argument("--nested", action="store_true", help="keep nested entities (default: the span teacher's "
                                                              "setting, else flat)")
    parser.add_argument("--min-confidence", type=float, help="drop a record whose least confident entity scores "
                                                             "below this")
    parser.add_argument("--split", choices=("none", "sentences"), default="none",
                        help="sentences: one record per sentence (the teacher still reads whole documents)")
    parser.add_argument("--max-words", type=int, help="cut records into windows of at most this many words")
    parser.add_argument("--keep-empty", type=float, default=1.0,
                        help="share of records without entities to keep as negatives (0: drop them all; a seeded "
                             "draw per record)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --keep-empty draw")
    parser.add_argument("--batch-size", type=int, default=8, help="documents per teacher call")
    parser.add_argument("--chunk-size", type=int, default=1024,
                        help="documents per durable chunk (a multiple of --batch-size)")
    parser.add_argument("--num-workers", type=int, default=1,
                        help="processes on this machine (with --engine ray: Ray actors)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="ray: a Ray Data map_batches job (local cluster, or --ray-address)")
    parser.add_argument("--ray-address", help="address of a running Ray cluster (default: start a local one)")
    parser.add_argument("--device", default="auto", help="'cpu', 'cuda', 'cuda:1', ... (auto: cuda when available)")
    parser.add_argument("--threads", type=int, help="torch threads per process (default: torch's; with "
                                                    "--num-workers the cores shared out)")
    parser.add_argument("--precision", choices=BACKEND_PRECISIONS["torch"], default="fp32",
                        help="a span teacher's weights: fp32 (default), bf16 (GPUs, CPUs with AMX), fp16 (GPUs)")
    parser.add_argument("--overwrite", action="store_true", help="start again even if --output holds a run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def parse_labels(value: str, parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """--labels -> (names, prompts)."""
    names, prompts = [], []
    for entry in (item.strip() for item in value.split(",")):
        if not entry:
            continue
        name, _, prompt = entry.partition("=")
        if not name.strip() or ("=" in entry and not prompt.strip()):
            parser.error(f"--labels entry {entry!r}: expected NAME or NAME=PROMPT")
        names.append(name.strip())
        prompts.append(prompt.strip() or name.strip())
    if not names:
        parser.error("--labels is empty: name at least one entity type, e.g. --labels PER,ORG,LOC")
    return names, prompts


def parse_type_thresholds(value: str | None, names: list[str], parser: argparse.ArgumentParser) -> dict[str, float]:
    """--type-threshold NAME=VALUE,... -> {name: value}; names must be among --labels."""
    result = {}
    for entry in (item.strip() for item in (value or "").split(",") if item.strip()):
        name, _, number = entry.partition("=")
        try:
            result[name.strip()] = float(number)
        except ValueError:
            parser.error(f"--type-threshold entry {entry!r}: expected NAME=VALUE")
        if name.strip() not in names:
            parser.error(f"--type-threshold names {name.strip()!r}, which is not in --labels")
    return result


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; other names pass through."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_job(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """The AnnotationJob the arguments describe (teacher folder checked, thresholds resolved)."""
    from src.generation.inputs import InputSpec
    from src.generation.pipeline import AnnotationJob
    from src.generation.records import AnnotationSettings
    from src.generation.teachers import TeacherSpec, check_teacher_folder, read_span_teacher_thresholds

    names, prompts = parse_labels(args.labels, parser)
    per_type = parse_type_thresholds(args.type_threshold, names, parser)
    check_teacher_folder(args.teacher_type, args.teacher)
    threshold, saved_per_type, flat_ner = 0.5, {}, True
    if args.teacher_type == "span":
        threshold, saved_per_type, flat_ner = read_span_teacher_thresholds(args.teacher)
    if args.threshold is not None:
        threshold, saved_per_type = args.threshold, {}
    thresholds = [per_type.get(name, saved_per_type.get(prompt, saved_per_type.get(name, threshold)))
                  for name, prompt in zip(names, prompts, strict=True)]
    settings = AnnotationSettings(
        labels=tuple(names), prompts=tuple(prompts), thresholds=tuple(thresholds),
        flat_ner=flat_ner and not args.nested, min_confidence=args.min_confidence,
        sentences=args.split == "sentences", max_words=args.max_words,
        keep_empty=args.keep_empty, seed=args.seed, batch_size=args.batch_size,
    )
    threads = args.threads
    if threads is None and args.num_workers > 1 and args.engine == "local":
        threads = max(1, (os.cpu_count() or 1) // args.num_workers)
    teacher = TeacherSpec(args.teacher_type, str(args.teacher), resolve_device(args.device), threads, args.precision)
    return AnnotationJob(
        teacher=teacher, input=InputSpec(str(args.input), args.input_format, args.document), output=args.output,
        settings=settings, chunk_size=args.chunk_size, engine=args.engine, num_workers=args.num_workers,
        ray_address=args.ray_address, overwrite=args.overwrite, progress_bar=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    """Run annotate.py; 0 on success, 1 on a bad teacher, input or output, 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.chunk_size < 1 or args.num_workers < 1:
        parser.error("--batch-size, --chunk-size and --num-workers must be positive integers")
    if args.chunk_size % args.batch_size:
        parser.error(f"--chunk-size {args.chunk_size} must be a multiple of --batch-size {args.batch_size}")
    if args.max_words is not None and args.max_words < 1:
        parser.error("--max-words must be a positive integer")
    if args.precision != "fp32" and args.teacher_type != "span":
        parser.error(f"--precision {args.precision} goes with --teacher-type span (a GLiNER teacher runs in fp32)")
    from src.generation.pipeline import run_annotation
    from src.generation.writer import OutputError

    try:
        job = build_job(args, parser)
        progress = run_annotation(job)
    except (OSError, ValueError, OutputError) as error:  # TeacherError, InputError, bad settings are ValueErrors
        print(f"error: {error}", file=sys.stderr)
        return 1
    if progress.complete:  # the other processes of `accelerate launch` leave the report to process 0
        print(f"{progress.documents} documents -> {progress.records} records in {args.output}: "
              f"{json.dumps(progress.stats)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
