"""Read the documents to annotate, streaming: plain text (one per line, or one per file) or JSONL with a `text` field.

Documents are numbered 0, 1, ... in input order (files of a folder sorted by their relative path); a run resumed
after n documents skips the first n without parsing them again. Problems raise InputError naming file and line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..data import DataValidationError, iter_text_lines, parse_text_object
from .records import Document

INPUT_FORMATS = ("auto", "text", "jsonl")
DOCUMENT_UNITS = ("line", "file")
JSONL_SUFFIXES = (".jsonl", ".json")
TEXT_SUFFIXES = (".txt",)
FINGERPRINT_BYTES = 1 << 20  # the head and the tail of each file enter the input fingerprint


class InputError(ValueError):
    """A problem with the input; the message reads "{path}:{line}: {what}" (or "{path}: {what}")."""


@dataclass(frozen=True)
class InputSpec:
    """Where the documents are and how to read them."""

    path: str
    input_format: str = "auto"  # auto: JSONL for .jsonl/.json files, plain text otherwise
    document: str = "line"  # plain text only: "line" (each non-blank line) or "file" (each whole file)

    def __post_init__(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise InputError(f"unknown input format {self.input_format!r}; expected one of {INPUT_FORMATS}")
        if self.document not in DOCUMENT_UNITS:
            raise InputError(f"unknown document unit {self.document!r}; expected one of {DOCUMENT_UNITS}")

    def is_jsonl(self, file: Path) -> bool:
        """True when `file` is read as JSONL."""
        return self.input_format == "jsonl" or (self.input_format == "auto" and file.suffix.lower() in JSONL_SUFFIXES)


def input_files(spec: InputSpec) -> list[tuple[Path, str]]:
    """(file, name used in source ids) of every input file, in reading order."""
    root = Path(spec.path)
    if root.is_file():
        return [(root, root.name)]
    if not root.is_dir():
        raise InputError(f"{root}: no such input file or folder")
    suffixes = {"text": TEXT_SUFFIXES, "jsonl": JSONL_SUFFIXES}.get(spec.input_format, TEXT_SUFFIXES + JSONL_SUFFIXES)
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes),
                   key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise InputError(f"{root}: the folder holds no {'/'.join(suffixes)} file")
    return [(p, p.relative_to(root).as_posix()) for p in files]


def _jsonl_document(path: Path, number: int, line: str, name: str, ordinal: int) -> Document:
    try:
        value = parse_text_object(line)
    except ValueError as error:
        raise InputError(f"{path}:{number}: {error}") from None
    source = value.get("id", f"{name}:{number}")
    if isinstance(source, bool) or not isinstance(source, str | int) or source == "":
        raise InputError(f"{path}:{number}: field 'id' must be a non-empty string or an integer, got {source!r}")
    return Document(ordinal, str(source), value["text"])


def _file_documents(path: Path, name: str, spec: InputSpec, first: int, skip: int) -> Iterator[Document | None]:
    """The documents of one file; None stands for a document skipped unread (resume)."""
    if spec.document == "file" and not spec.is_jsonl(path):
        if first < skip:
            yield None
            return
        try:
            yield Document(first, name, path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as error:
            raise InputError(f"{path}: not valid UTF-8 ({error.reason})") from None
        return
    ordinal = first
    try:
        for number, line in iter_text_lines(path):
            if not line.strip():
                continue  # a blank line is no document (in JSONL as in plain text)
            if ordinal < skip:
                yield None
            elif spec.is_jsonl(path):
                yield _jsonl_document(path, number, line, name, ordinal)
            else:
                yield Document(ordinal, f"{name}:{number}", line.rstrip("\r\n"))
            ordinal += 1
    except DataValidationError as error:
        raise InputError(str(error)) from None


def iter_documents(spec: InputSpec, *, skip: int = 0) -> Iterator[Document]:
    """The input's documents in order, from document `skip` on (the ones before are counted, not parsed)."""
    ordinal = 0
    for path, name in input_files(spec):
        for document in _file_documents(path, name, spec, ordinal, skip):
            ordinal += 1
            if document is not None:
                yield document


def input_fingerprint(spec: InputSpec) -> dict:
    """What identifies the input for resuming: its reading settings and, per file, name, size and a hash of the
    first and last MiB (cheap for any size; a changed file almost always changes one of them)."""
    files = []
    for path, name in input_files(spec):
        size = path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            digest.update(handle.read(FINGERPRINT_BYTES))
            if size > FINGERPRINT_BYTES:
                handle.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
                digest.update(handle.read())
        files.append({"name": name, "bytes": size, "sha256_head_tail": digest.hexdigest()})
    return {"input_format": spec.input_format, "document": spec.document, "files": files}
