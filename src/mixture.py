"""Training mixtures: each corpus of a config's `datasets` converted once into a cached, memory-mapped Arrow file,
each record given its label set, and the corpora drawn by weight and size temperature into one training stream.

Nothing here holds a whole training corpus in Python objects: records are read from Arrow when a batch asks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
from datasets.exceptions import DatasetGenerationError

from .corpus_formats import read_corpus
from .data import iter_jsonl
from .sources import DatasetSource


class MixtureDataError(ValueError):
    """A corpus of the mixture that cannot be used as configured; the message names the corpus."""


MIXTURE_CACHE_VERSION = 1  # bump when the conversion below changes what a cached file holds
EVAL_SAMPLE_SEED = 0  # capped validation/test sets are the same sentences whatever the training seed

_SPAN = {"start": datasets.Value("int32"), "end": datasets.Value("int32"), "label": datasets.Value("string")}
RECORD_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "tokens": datasets.List(datasets.Value("string")),
    "text": datasets.Value("string"),
    "token_spans": datasets.List(_SPAN),
    "char_spans": datasets.List(_SPAN),
    "labels": datasets.List(datasets.Value("string")),  # null: the corpus's label set applies
})


def _renamed(record: dict, label_map: Mapping[str, str], prefix: str) -> dict:
    """The record in the Arrow schema, labels renamed and its id prefixed (several files may reuse ids)."""
    def spans(key: str) -> list[dict]:
        return [{**span, "label": label_map.get(span["label"], span["label"])} for span in record[key]]

    labels = record.get("labels")
    return {
        "id": f"{prefix}{record['id']}",
        "tokens": record["tokens"],
        "text": record["text"],
        "token_spans": spans("token_spans"),
        "char_spans": spans("char_spans"),
        "labels": None if labels is None else list(dict.fromkeys(label_map.get(x, x) for x in labels)),
    }


def iter_source_records(
    paths: Sequence[str], *, format: str, label_map: Mapping[str, str], scheme: str, tag_column: int | None
) -> Iterator[dict]:
    """Every record of the files in order, converted and renamed; project JSONL is streamed line by line."""
    for path in paths:
        prefix = f"{Path(path).name}:" if len(paths) > 1 else ""
        if format == "jsonl":
            records = iter_jsonl(path)
        else:
            records = read_corpus(path, format=format, scheme=scheme, tag_column=tag_column).records
        for record in records:
            yield _renamed(record, label_map, prefix)


def _generate(paths: list[str], format: str, label_map: dict, scheme: str, tag_column: int | None, **_ignored):
    yield from iter_source_records(paths, format=format, label_map=label_map, scheme=scheme, tag_column=tag_column)


def _files_fingerprint(paths: Sequence[str], options: dict) -> str:
    """A cache key that changes with the files (path, size, modification time) and the conversion options."""
    files = []
    for path in paths:
        target = Path(path)
        if not target.is_file():
            raise FileNotFoundError(f"{path}: no such data file")
        stat = target.stat()
        files.append([str(target.resolve()), stat.st_size, stat.st_mtime_ns])
    payload = json.dumps({"files": files, "options": options, "version": MIXTURE_CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def convert_to_arrow(source: DatasetSource, paths: Sequence[str], *, cache_dir: str | None) -> datasets.Dataset:
    """Convert a corpus's files into one Arrow dataset, or reuse the cached conversion of the same files."""
    options = {"format": source.format, "label_map": source.label_map, "scheme": source.scheme,
               "tag_column": source.tag_column}
    fingerprint = _files_fingerprint(paths, options)
    try:
        return datasets.Dataset.from_generator(
            _generate, features=RECORD_FEATURES, cache_dir=cache_dir, fingerprint=fingerprint,
            # The fingerprint rides along so the builder's own cache key also follows the files.
            gen_kwargs={"paths": list(paths), **options, "fingerprint": fingerprint},
        )
    except DatasetGenerationError as err:
        # The reader's own error names the file and line; the builder's wrapper would hide it.
        cause = err.__cause__
        if isinstance(cause, ValueError | OSError):
            raise cause from None
        raise


def sampling_shares(sizes: Sequence[int], weights: Sequence[float], temperature: float) -> np.ndarray:
    """Probability of each corpus: weight_i * n_i ** (1 / temperature), normalised; 0 for an empty corpus."""
    sizes_arr = np.asarray(sizes, dtype=np.float64)
    raw = np.asarray(weights, dtype=np.float64) * np.where(sizes_arr > 0, sizes_arr, 0.0) ** (1.0 / temperature)
    if raw.sum() <= 0:
        raise MixtureDataError("the training mixture is empty: no corpus has training sentences")
    return raw / raw.sum()


def draws_per_epoch(shares: np.ndarray, total: int) -> np.ndarray:
    """Split `total` draws by `shares` with largest remainders, so the counts add up to `total` exactly."""
    exact = shares * total
    counts = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]:
        counts[i] += 1
    return counts


def sampling_plan(pools: Sequence[np.ndarray], counts: Sequence[int], *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(corpus, row) of every draw: corpus i gives counts[i] rows of pools[i], each pass a fresh permutation.

    A corpus drawn less than its size shows a random subset; one drawn more repeats whole passes first.
    """
    rng = np.random.default_rng(seed)
    corpus_ids, rows = [], []
    for i, (pool, count) in enumerate(zip(pools, counts, strict=True)):
        if count == 0:
            continue
        passes = -(-int(count) // len(pool))
        drawn = np.concatenate([pool[rng.permutation(len(pool))] for _ in range(passes)])[:count]
        corpus_ids.append(np.full(count, i, dtype=np.int32))
        rows.append(drawn.astype(np.int64))
    return np.concatenate(corpus_ids), np.concatenate(rows)


class MixtureDataset:
    """Map-style dataset over the sampling plan: item j is (j, record), read from its corpus's Arrow file.

    A record without its own `labels` gets its corpus's label set, so per-record loss masking applies to all.
    """

    def __init__(self, tables: Sequence[datasets.Dataset | None], label_sets: Sequence[list[str]],
                 corpus_ids: np.ndarray, rows: np.ndarray) -> None:
        self.tables, self.label_sets = list(tables), [list(s) for s in label_sets]
        self.corpus_ids, self.rows = corpus_ids, rows

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> np.ndarray:
        """Words per draw (for length-grouped batching), read from the Arrow column without building records."""
        per_corpus = [
            np.zeros(0, dtype=np.int32) if table is None else
            pc.list_value_length(table.select_columns(["tokens"]).with_format("arrow")[:]["tokens"]).to_numpy()
            for table in self.tables
        ]
        out = np.zeros(len(self.rows), dtype=np.int32)
        for corpus, lengths in enumerate(per_corpus):
            chosen = self.corpus_ids == corpus
            out[chosen] = lengths[self.rows[chosen]]
        return out

    def __getitem__(self, index: int) -> tuple[int, dict]:
        corpus = int(self.corpus_ids[index])
        record = self.tables[corpus][int(self.rows[index])]
        if record.get("labels") is None:
            record["labels"] = self.label_sets[corpus]
        return index, record


@dataclass
class CorpusData:
    """One loaded corpus: its Arrow training table and row pool, capped evaluation lists and its label set."""

    source: DatasetSource
    labels: list[str]
    train: datasets.Dataset | None = None
    train_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    validation: list[dict] = field(default_factory=list)
    test: list[dict] = field(default_factory=list)
    train_total: int = 0  # training sentences before max_train_examples
    draws: int = 0  # draws per epoch of the mixture


@dataclass
class Mixture:
    """All corpora of a config and the training stream drawn from them."""

    corpora: list[CorpusData]
    train: MixtureDataset | None

    def eval_sets(self, split: str) -> list[tuple[str, list[dict], list[str]]]:
        """(corpus name, records, label set) of every corpus with `split` data."""
        return [(c.source.name, getattr(c, split), c.labels) for c in self.corpora if getattr(c, split)]

    def summary(self) -> list[str]:
        """One log line per corpus: sizes, share of the training stream, label set."""
        total = sum(c.draws for c in self.corpora) or 1
        lines = []
        for c in self.corpora:
            used = len(c.train_rows)
            capped = f" (of {c.train_total})" if used != c.train_total else ""
            shown = ", ".join(c.labels[:8]) + (f", ... ({len(c.labels)} types)" if len(c.labels) > 8 else "")
            lines.append(
                f"Corpus {c.source.name}: train {used}{capped}, drawn {c.draws} per epoch "
                f"({100 * c.draws / total:.1f}%), validation {len(c.validation)}, test {len(c.test)}; labels: {shown}"
            )
        return lines


def _sample_list(table: datasets.Dataset, limit: int | None) -> list[dict]:
    """The table as records, at most `limit` of them (a fixed random subset in file order)."""
    if limit is not None and len(table) > limit:
        keep = np.sort(np.random.default_rng(EVAL_SAMPLE_SEED).choice(len(table), size=limit, replace=False))
        table = table.select(keep.tolist())
    return table.to_list()


def _corpus_labels(source: DatasetSource, tables: Sequence[datasets.Dataset]) -> list[str]:
    """The label set: the configured `labels`, which must hold every gold label, or every label in the files."""
    found: set[str] = set()
    for table in tables:
        for batch in table.select_columns(["token_spans", "labels"]).iter(batch_size=10_000):
            found.update(span["label"] for spans in batch["token_spans"] for span in spans)
            found.update(label for labels in batch["labels"] if labels for label in labels)
    if source.labels is None:
        return sorted(found)
    extra = sorted(found - set(source.labels))
    if extra:
        raise MixtureDataError(f"datasets '{source.name}': the files use labels {extra} that are not in its 'labels'; "
                         "add them there or rename them with 'label_map'")
    return list(source.labels)


def load_corpus(source: DatasetSource, *, seed: int, max_eval_examples: int | None,
                cache_dir: str | None) -> CorpusData:
    """Convert (or reuse) a corpus's files and cut its validation share and caps."""
    tables = {split: convert_to_arrow(source, getattr(source, split), cache_dir=cache_dir)
              for split in ("train", "validation", "test") if getattr(source, split)}
    train = tables.get("train")
    validation = tables.get("validation")
    if source.validation_split and train is not None:
        held_out = max(1, round(len(train) * source.validation_split))
        validation = train.select(range(len(train) - held_out, len(train)))
        train = train.select(range(len(train) - held_out))
    labels = _corpus_labels(source, [t for t in (train, validation, tables.get("test")) if t is not None])
    limit = source.max_eval_examples or max_eval_examples
    corpus = CorpusData(source, labels, train=train)
    if train is not None:
        corpus.train_total = len(train)
        pool = np.arange(len(train), dtype=np.int64)
        if source.max_train_examples is not None and len(train) > source.max_train_examples:
            rng = np.random.default_rng(seed)
            pool = np.sort(rng.choice(len(train), size=source.max_train_examples, replace=False))
        corpus.train_rows = pool
    if validation is not None:
        corpus.validation = _sample_list(validation, limit)
    if "test" in tables:
        corpus.test = _sample_list(tables["test"], limit)
    return corpus


def load_mixture(sources: Sequence[DatasetSource], *, temperature: float, seed: int,
                 max_eval_examples: int | None = None, cache_dir: str | None = None) -> Mixture:
    """Load every corpus and draw the training stream: one epoch = as many draws as training sentences in all."""
    corpora = [load_corpus(s, seed=seed, max_eval_examples=max_eval_examples, cache_dir=cache_dir) for s in sources]
    sizes = [len(c.train_rows) for c in corpora]
    if sum(sizes) == 0:
        return Mixture(corpora, None)
    counts = draws_per_epoch(sampling_shares(sizes, [c.source.weight for c in corpora], temperature), sum(sizes))
    for corpus, count in zip(corpora, counts, strict=True):
        corpus.draws = int(count)
    corpus_ids, rows = sampling_plan([c.train_rows for c in corpora], counts, seed=seed)
    train = MixtureDataset([c.train for c in corpora], [c.labels for c in corpora], corpus_ids, rows)
    return Mixture(corpora, train)
