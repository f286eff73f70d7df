"""Teachers: the models that label raw text for generation, behind one interface (spans in word units).

`SpanTeacher` runs a saved span model through `SpanPredictor` on the original text (character offsets, mapped to
the words of src/text_split.py); `GlinerTeacher` feeds those words to a GLiNER model. Both load offline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

TEACHER_TYPES = ("span", "gliner")
# Files that say what a teacher folder holds (span model, GLiNER); their contents enter the fingerprint.
MARKER_FILES = {"span": "config.json", "gliner": "gliner_config.json"}
WordSpan = tuple[int, int, int, float]  # (first word, end word exclusive, label index, score)


class TeacherError(ValueError):
    """A teacher folder that is missing or is not a model of the asked type; the message names the folder."""


@dataclass(frozen=True)
class TeacherSpec:
    """How to load a teacher: picklable, so each worker process or Ray actor loads its own copy."""

    kind: str
    path: str
    device: str = "cpu"
    threads: int | None = None  # torch threads of the process that loads it (None: torch's default)
    precision: str = "fp32"  # a span teacher's weights: fp32, bf16 or fp16 (`SpanPredictor.from_pretrained`)


@dataclass(frozen=True)
class WordDocument:
    """One document as the teacher sees it: the original text, its words and their offsets in it."""

    text: str
    words: tuple[str, ...]
    offsets: tuple[tuple[int, int], ...]


class Teacher(Protocol):
    """Finds entities of the asked labels in documents, in word units; decisions follow `thresholds` per label."""

    def find(self, documents: Sequence[WordDocument], prompts: Sequence[str], thresholds: Sequence[float], *,
             flat_ner: bool, batch_size: int) -> tuple[list[list[WordSpan]], int]:
        """Spans per document (sorted by start, end, label) and the number of spans not on word boundaries."""


def check_teacher_folder(kind: str, path: str | Path) -> Path:
    """The teacher folder, checked to exist and to hold a model of `kind` (TeacherError otherwise)."""
    if kind not in TEACHER_TYPES:
        raise TeacherError(f"unknown teacher type {kind!r}; expected one of {', '.join(TEACHER_TYPES)}")
    folder = Path(path)
    if not folder.is_dir():
        raise TeacherError(f"{folder}: no such teacher folder")
    marker = MARKER_FILES[kind]
    if not (folder / marker).is_file():
        hint = " (a GLiNER model? pass --teacher-type gliner)" if (folder / MARKER_FILES["gliner"]).is_file() else ""
        raise TeacherError(f"{folder}: not a saved {kind} model folder (no {marker}){hint}")
    return folder


def teacher_fingerprint(kind: str, path: str | Path) -> str:
    """SHA-256 of a teacher folder's file names and sizes and of its JSON settings files (not of the weights)."""
    folder = check_teacher_folder(kind, path)
    digest = hashlib.sha256(kind.encode())
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = file.relative_to(folder).as_posix()
        digest.update(f"{relative}\0{file.stat().st_size}\0".encode())
        if file.suffix == ".json" and file.parent == folder:
            digest.update(file.read_bytes())
    return digest.hexdigest()


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


class SpanTeacher:
    """A saved span model (with its `inference.json` and training window) run by `SpanPredictor`."""

    def __init__(self, spec: TeacherSpec) -> None:
        from ..inference import SpanPredictor

        _set_threads(spec.threads)
        self.predictor = SpanPredictor.from_pretrained(check_teacher_folder("span", spec.path), device=spec.device,
                                                       precision=spec.precision)

    def find(self, documents, prompts, thresholds, *, flat_ner, batch_size):
        from ..inference import TextQuery

        queries = [TextQuery(doc.text, tuple(prompts), tuple(thresholds), flat_ner) for doc in documents]
        found, unaligned = [], 0
        for doc, entities in zip(documents, self.predictor.run(queries, batch_size=batch_size), strict=True):
            first_word = {start: k for k, (start, _) in enumerate(doc.offsets)}
            end_word = {end: k + 1 for k, (_, end) in enumerate(doc.offsets)}
            label_index = {prompt: c for c, prompt in enumerate(prompts)}
            spans = []
            for entity in entities:
                start, end = first_word.get(entity["start"]), end_word.get(entity["end"])
                if start is None or end is None:  # a boundary inside one of our words (rare; e.g. CJK text)
                    unaligned += 1
                    continue
                spans.append((start, end, label_index[entity["label"]], float(entity["score"])))
            found.append(sorted(spans))
        return found, unaligned


class GlinerTeacher:
    """A GLiNER model folder (`gliner.GLiNER.from_pretrained(DIR, local_files_only=True)`) reading our words."""

    def __init__(self, spec: TeacherSpec) -> None:
        from ..gliner_prediction import load_gliner

        if spec.precision != "fp32":
            raise TeacherError(f"precision {spec.precision!r} is for span teachers; a GLiNER teacher runs in fp32")
        _set_threads(spec.threads)
        self.model = load_gliner(str(check_teacher_folder("gliner", spec.path)), spec.device)

    def find(self, documents, prompts, thresholds, *, flat_ner, batch_size):
        from ..decoding import resolve_overlaps
        from ..gliner_prediction import predict_gliner

        records = [{"tokens": list(doc.words)} for doc in documents]
        # Decoded nested at the lowest threshold, then each type's own threshold, then flat overlaps if asked:
        # thresholding after a flat decode would let a span that fails its threshold hide one that passes.
        predictions, _ = predict_gliner(self.model, records, list(prompts), threshold=min(thresholds),
                                        flat_ner=False, batch_size=batch_size)
        label_index = {prompt: c for c, prompt in enumerate(prompts)}
        found = []
        for spans in predictions:
            passing = [(start, end - 1, label_index[label], float(score)) for start, end, label, score in spans
                       if score >= thresholds[label_index[label]]]
            kept = resolve_overlaps(passing, flat_ner=flat_ner)
            found.append(sorted((start, end + 1, c, score) for start, end, c, score in kept))
        return found, 0


def load_teacher(spec: TeacherSpec) -> Teacher:
    """Load the teacher a spec names (in the calling process)."""
    return SpanTeacher(spec) if spec.kind == "span" else GlinerTeacher(spec)


def read_span_teacher_thresholds(path: str | Path) -> tuple[float, dict[str, float], bool]:
    """A span teacher's saved decoding settings: global threshold, per-type thresholds, flat_ner."""
    from ..inference import load_inference_config

    config = load_inference_config(check_teacher_folder("span", path))
    return config.threshold, dict(config.per_type_thresholds or {}), config.flat_ner


def describe_teacher(kind: str, path: str | Path) -> dict:
    """What the manifest records about a teacher: type, resolved folder, fingerprint."""
    return {"type": kind, "path": str(Path(path).resolve()), "fingerprint": teacher_fingerprint(kind, path)}

