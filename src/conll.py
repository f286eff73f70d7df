"""Read CoNLL-style token/tag files and turn IOB1, IOB2 or BIOES tag sequences into entity spans and JSONL records.

Pure Python (no torch, no transformers), shared by the dataset formatter and the demo-corpus loader in `src.data`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SCHEMES = ("iob1", "iob2", "bioes")
DOCSTART = "-DOCSTART-"
Span = tuple[int, int, str]  # (start, end, label): token indices, end exclusive

_BOM = "\ufeff"
# Records join tokens with single spaces, so a token may not contain whitespace. Corpora do have such tokens (BTC's
# `ke s`, lone-space tokens, U+00A0 inside words): each whitespace run inside a token becomes this one visible
# character, and the conversion counts the tokens it changed. U+00B7 is not whitespace, is rare in running text and
# survives every tokenizer as a character of its own.
WHITESPACE_REPLACEMENT = "\u00b7"
_WHITESPACE_RUN_RE = re.compile(r"\s+")
_TAG_RE = re.compile(r"^(?:O|[BIESLU]-\S+)$")
_BILOU_TO_BIOES = {"L": "E", "U": "S"}
_ALLOWED_PREFIXES = {"iob1": {"O", "B", "I"}, "iob2": {"O", "B", "I"}, "bioes": {"O", "B", "I", "E", "S"}}


class ConllFormatError(ValueError):
    """A malformed CoNLL line or tag; the message reads "{source}:{line}: {what}"."""

    def __init__(self, source: str | Path, line: int, what: str):
        super().__init__(f"{source}:{line}: {what}")
        self.source, self.line, self.what = str(source), line, what


@dataclass(frozen=True)
class ConllSentence:
    """One sentence: its tokens, their raw tags and the 1-based source line of each token (for error messages)."""

    tokens: list[str]
    tags: list[str]
    lines: list[int]
    document: int | None = None  # 0-based index of its `-DOCSTART-` document; None in a file without them


@dataclass
class ConllDocument:
    """The sentences read from one source, plus what was dropped on the way (reported, never silent)."""

    source: str
    sentences: list[ConllSentence] = field(default_factory=list)
    dropped_tokens: int = 0  # tokens that were empty once U+FEFF was stripped
    empty_sentences: int = 0  # sentences left without tokens (only possible through dropped tokens or empty rows)
    replaced_whitespace_tokens: int = 0  # tokens whose whitespace became WHITESPACE_REPLACEMENT


@dataclass
class ConversionResult:
    """Records converted from one source, with the scheme used and how many tags had to be repaired."""

    records: list[dict]
    scheme: str
    repaired_tags: int
    dropped_tokens: int = 0
    empty_sentences: int = 0
    source_labels: list[str] = field(default_factory=list)  # labels before the label map, sorted
    replaced_whitespace_tokens: int = 0  # tokens whose whitespace runs became WHITESPACE_REPLACEMENT
    duplicate_spans: int = 0  # exact duplicate (start, end, label) spans dropped (span formats, label renames)
    split_words: int = 0  # benchmark JSON: words cut in two because an entity starts or ends inside them


def replace_whitespace(token: str) -> tuple[str, bool]:
    """`token` with each whitespace run replaced by WHITESPACE_REPLACEMENT, and whether anything was replaced."""
    if not any(char.isspace() for char in token):
        return token, False
    return _WHITESPACE_RUN_RE.sub(WHITESPACE_REPLACEMENT, token), True


class _SentenceBuilder:
    """Accumulates validated tokens into sentences; shared by the file reader and in-memory rows (HF datasets)."""

    def __init__(self, source: str):
        self.document = ConllDocument(source=source)
        self.tokens: list[str] = []
        self.tags: list[str] = []
        self.lines: list[int] = []
        self.dropped_in_sentence = 0
        self.document_index: int | None = None  # the current `-DOCSTART-` document, None before the first

    def start_document(self) -> None:
        self.end_sentence()
        self.document_index = 0 if self.document_index is None else self.document_index + 1

    def add(self, token: str, tag: str, line: int) -> None:
        if not _TAG_RE.match(tag):
            raise ConllFormatError(
                self.document.source, line, f"invalid tag {tag!r}: expected O or B-, I-, E-, S-, L-, U- and a type"
            )
        # A stray byte-order mark is invisible, never part of the word; a token that was only a BOM is dropped
        # (and counted) because the JSONL format and the tokenizers need non-empty words.
        token = token.replace(_BOM, "")
        if not token:
            self.document.dropped_tokens += 1
            self.dropped_in_sentence += 1
            return
        token, replaced = replace_whitespace(token)
        self.document.replaced_whitespace_tokens += replaced
        self.tokens.append(token)
        self.tags.append(tag)
        self.lines.append(line)

    def end_sentence(self) -> None:
        if self.tokens:
            self.document.sentences.append(ConllSentence(self.tokens, self.tags, self.lines, self.document_index))
        elif self.dropped_in_sentence:
            self.document.empty_sentences += 1
        self.tokens, self.tags, self.lines, self.dropped_in_sentence = [], [], [], 0


def parse_conll_lines(
    lines: Iterable[str], source: str = "<string>", *, tag_column: int | None = None
) -> ConllDocument:
    """Parse CoNLL lines: `token ... tag` split on tabs if the line has one, else on spaces.

    The token is the first column, the tag the last one, or column `tag_column` (1-based) when given
    (StackOverflow NER keeps its tag in column 2 of 4). Blank or whitespace-only lines end a sentence; a
    `-DOCSTART-` line starts a document (numbered from 0 in `ConllSentence.document`; sentences before the first
    one have none) and never yields an empty sentence. Every token line of a file must have the same number of
    columns. Spaces around a tab-separated token are padding and removed, except in a token that is only spaces,
    which becomes WHITESPACE_REPLACEMENT like any whitespace inside a token (see `replace_whitespace`).
    """
    if tag_column is not None and (isinstance(tag_column, bool) or not isinstance(tag_column, int) or tag_column < 2):
        raise ValueError(f"tag_column must be an integer >= 2 (column 1 holds the token), got {tag_column!r}")
    builder = _SentenceBuilder(source)
    first_columns: tuple[int, int] | None = None  # (line, column count) of the first token line
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n").replace(_BOM, "")
        if not line.strip():
            builder.end_sentence()
            continue
        if "\t" in line:
            columns = line.rstrip().split("\t")
            columns = [columns[0].strip(" ") or columns[0]] + [column.strip(" ") for column in columns[1:]]
        else:  # only ASCII spaces separate columns, so a token with e.g. U+00A0 keeps it (and has it replaced)
            columns = [column for column in line.split(" ") if column]
        if columns[0] == DOCSTART:
            builder.start_document()
            continue
        if len(columns) < 2:
            raise ConllFormatError(source, number, f"expected a token and a tag, found one column {line!r}")
        if first_columns is None:
            first_columns = (number, len(columns))
        elif len(columns) != first_columns[1]:
            raise ConllFormatError(
                source, number, f"{len(columns)} columns, but line {first_columns[0]} has {first_columns[1]}"
            )
        if tag_column is not None and tag_column > len(columns):
            raise ConllFormatError(source, number, f"tag column {tag_column} asked for, but the line has {len(columns)}"
                                   " columns")
        builder.add(columns[0], columns[-1 if tag_column is None else tag_column - 1], number)
    builder.end_sentence()
    return builder.document


def _decoded_lines(path: Path) -> Iterator[str]:
    """Yield the file's lines as text, naming the line of any invalid UTF-8."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ConllFormatError(path, number, f"not valid UTF-8 ({error.reason})") from None


def read_conll(path: str | Path, *, tag_column: int | None = None) -> ConllDocument:
    """Read a CoNLL-2003 (`token POS chunk NER`) or two-column token/tag file (CRLF and U+FEFF tolerated).

    `tag_column`: the 1-based column holding the tag (default: the last); see `parse_conll_lines`.
    """
    path = Path(path)
    return parse_conll_lines(_decoded_lines(path), source=str(path), tag_column=tag_column)


def sentences_from_rows(rows: Iterable[tuple[Sequence[str], Sequence[str]]], source: str) -> ConllDocument:
    """Build a document from in-memory (tokens, tags) rows, validated like file lines; row i is reported as line i+1."""
    builder = _SentenceBuilder(source)
    for index, (tokens, tags) in enumerate(rows):
        if len(tokens) != len(tags):
            raise ConllFormatError(source, index + 1, f"{len(tokens)} tokens but {len(tags)} tags")
        if not tokens:
            builder.document.empty_sentences += 1
            continue
        for token, tag in zip(tokens, tags, strict=True):
            builder.add(token, tag, index + 1)
        builder.end_sentence()
    return builder.document


def _split_tag(tag: str) -> tuple[str, str]:
    """Split a tag into (prefix, label), spelling BILOU's L/U as BIOES's E/S."""
    if tag == "O":
        return "O", ""
    prefix, _, label = tag.partition("-")
    return _BILOU_TO_BIOES.get(prefix, prefix), label


def _invalid_tag_position(tags: Sequence[str], scheme: str) -> int | None:
    allowed = _ALLOWED_PREFIXES[scheme]
    return next((i for i, tag in enumerate(tags) if _split_tag(tag)[0] not in allowed), None)


def _decode(tags: Sequence[str]) -> list[Span]:
    """Lenient conlleval-style decoding that is correct for all three schemes.

    An entity starts at B/S, or at an I/E that does not continue an open entity of the same type; it ends before O,
    B, S or another type, and right after E or S. In IOB1/IOB2 (no E/S tags) this is exactly the conlleval rule.
    """
    spans: list[Span] = []
    open_start, open_label = 0, ""
    for i, tag in enumerate(tags):
        prefix, label = _split_tag(tag)
        if not (prefix in ("I", "E") and label == open_label):
            if open_label:
                spans.append((open_start, i, open_label))
            open_start, open_label = i, label  # label is "" for O, which means "nothing open"
        if prefix in ("E", "S"):
            spans.append((open_start, i + 1, open_label))
            open_label = ""
    if open_label:
        spans.append((open_start, len(tags), open_label))
    return spans


def spans_to_tags(length: int, spans: Iterable[Span], scheme: str) -> list[str]:
    """Encode non-overlapping token spans as the well-formed tag sequence of `scheme` (iob1, iob2 or bioes)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    tags = ["O"] * length
    previous_end, previous_label = -1, ""
    for start, end, label in sorted(spans):
        if not 0 <= start < end <= length:
            raise ValueError(f"span ({start}, {end}) is empty or outside a sequence of {length} tokens")
        if start < previous_end:
            raise ValueError(f"span ({start}, {end}) overlaps the previous span; tags cannot encode overlaps")
        tags[start:end] = [f"I-{label}"] * (end - start)
        if scheme == "iob2" or (scheme == "iob1" and start == previous_end and label == previous_label):
            tags[start] = f"B-{label}"
        elif scheme == "bioes":
            if end - start == 1:
                tags[start] = f"S-{label}"
            else:
                tags[start], tags[end - 1] = f"B-{label}", f"E-{label}"
        previous_end, previous_label = end, label
    return tags


def tags_to_spans(tags: Sequence[str], scheme: str) -> tuple[list[Span], int]:
    """Decode a tag sequence into spans; also return how many tags had to be repaired.

    Ill-formed sequences are decoded leniently (see `_decode`: a stray IOB2 `I-X` starts an entity, as in
    seqeval/conlleval). The repair count is the number of tags that differ from the well-formed encoding of the
    decoded spans in `scheme` (BILOU's L/U count as E/S), so e.g. `O I-X` in IOB2 is one repair.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    position = _invalid_tag_position(tags, scheme)
    if position is not None:
        raise ValueError(f"tag {tags[position]!r} at position {position} is not valid in {scheme}")
    spans = _decode(tags)
    canonical = spans_to_tags(len(tags), spans, scheme)
    repaired = sum(_split_tag(tag) != _split_tag(good) for tag, good in zip(tags, canonical, strict=True))
    return spans, repaired


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """Guess the scheme: bioes if any E-/S-/L-/U- tag occurs, else whichever of iob2/iob1 needs fewer repairs.

    Both IOB variants decode to the same spans; they differ in which tags count as ill-formed (a leading `I-X` in
    IOB2, a `B-X` that does not follow an `X` entity in IOB1). Ties, including no entities at all, give iob2.
    """
    sequences = [list(tags) for tags in tag_sequences]
    if any(_split_tag(tag)[0] in ("E", "S") for tags in sequences for tag in tags):
        return "bioes"
    repairs = {scheme: sum(tags_to_spans(tags, scheme)[1] for tags in sequences) for scheme in ("iob2", "iob1")}
    return "iob1" if repairs["iob1"] < repairs["iob2"] else "iob2"


def token_char_offsets(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Character (start, end) of each token in `" ".join(tokens)`."""
    offsets, position = [], 0
    for token in tokens:
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    return offsets


def make_record(
    record_id: str | int, tokens: Sequence[str], spans: Iterable[Span], *, doc_id: str | None = None,
    sentence_index: int | None = None,
) -> dict:
    """Build one JSONL record (id, tokens, text, token_spans, char_spans) from tokens and token spans.

    With `doc_id` the record also says which document it comes from and, with `sentence_index`, where in it.
    """
    offsets = token_char_offsets(tokens)
    token_spans, char_spans = [], []
    for start, end, label in spans:
        if not 0 <= start < end <= len(tokens):
            raise ValueError(f"span ({start}, {end}, {label!r}) is empty or outside {len(tokens)} tokens")
        token_spans.append({"start": start, "end": end, "label": label})
        char_spans.append({"start": offsets[start][0], "end": offsets[end - 1][1], "label": label})
    record = {
        "id": str(record_id),
        "tokens": list(tokens),
        "text": " ".join(tokens),
        "token_spans": token_spans,
        "char_spans": char_spans,
    }
    if doc_id is not None:
        record["doc_id"] = doc_id
        if sentence_index is not None:
            record["sentence_index"] = sentence_index
    return record


def record_to_spans(record: Mapping) -> tuple[list[str], list[Span]]:
    """Inverse of `make_record`: the record's tokens and its token spans as (start, end, label) tuples."""
    spans = [(span["start"], span["end"], span["label"]) for span in record["token_spans"]]
    return list(record["tokens"]), spans


def convert_document(
    document: ConllDocument, *, scheme: str = "auto", label_map: Mapping[str, str] | None = None
) -> ConversionResult:
    """Convert every sentence of a document into a record (ids "0", "1", ... in order).

    Sentences of a `-DOCSTART-` document get `doc_id` (its 0-based number, as text) and `sentence_index` (their
    position in it), which document context (`context_size`) reads.

    `scheme` is "auto" (see `detect_scheme`) or one of SCHEMES; `label_map` renames labels, others keep their name.
    """
    sentences = document.sentences
    if scheme == "auto":
        scheme = detect_scheme(sentence.tags for sentence in sentences)
    elif scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected auto or one of {', '.join(SCHEMES)}")
    label_map = label_map or {}
    records, repaired, source_labels = [], 0, set()
    position_in_document: dict[int, int] = {}
    for index, sentence in enumerate(sentences):
        position = _invalid_tag_position(sentence.tags, scheme)
        if position is not None:
            tag = sentence.tags[position]
            raise ConllFormatError(document.source, sentence.lines[position], f"tag {tag!r} is not valid in {scheme}")
        spans, sentence_repairs = tags_to_spans(sentence.tags, scheme)
        repaired += sentence_repairs
        source_labels.update(label for _, _, label in spans)
        spans = [(start, end, label_map.get(label, label)) for start, end, label in spans]
        place = {}
        if sentence.document is not None:
            index_in_document = position_in_document.get(sentence.document, 0)
            position_in_document[sentence.document] = index_in_document + 1
            place = {"doc_id": str(sentence.document), "sentence_index": index_in_document}
        records.append(make_record(index, sentence.tokens, spans, **place))
    return ConversionResult(
        records=records,
        scheme=scheme,
        repaired_tags=repaired,
        dropped_tokens=document.dropped_tokens,
        empty_sentences=document.empty_sentences,
        source_labels=sorted(source_labels),
        replaced_whitespace_tokens=document.replaced_whitespace_tokens,
    )


def convert_conll_file(
    path: str | Path, *, scheme: str = "auto", label_map: Mapping[str, str] | None = None,
    tag_column: int | None = None,
) -> ConversionResult:
    """Read a CoNLL file and convert it to JSONL records (see `read_conll` and `convert_document`)."""
    return convert_document(read_conll(path, tag_column=tag_column), scheme=scheme, label_map=label_map)
