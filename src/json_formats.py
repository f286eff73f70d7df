"""Read and write other tools' JSON corpus formats as project records: GLiNER's training items, the zero-shot
benchmark JSON that GLiNER and UniNER report on, and SLURP's JSONL with token-id spans. Pure Python.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from .conll import ConversionResult, Span, make_record, replace_whitespace
from .data import DataValidationError, iter_text_lines

NO_SCHEME = "none"  # ConversionResult.scheme of formats that carry spans, not tags
BENCHMARK_ENTITY_KEYS = ("name", "type", "pos")
_WORD_RE = re.compile(r"\S+")  # the words of str.split()


def read_json_items(path: str | Path) -> list[object]:
    """A file's items: one JSON list, or JSONL (one item per line, blank lines skipped); errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{error.lineno}: invalid JSON: {error.msg} (column {error.colno})") from None
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: invalid JSON: {error.msg} (column {error.colno})") from None
    return items


def _words(tokens: object, name: str) -> tuple[list[str], int]:
    """Validated words with whitespace replaced (see `conll.replace_whitespace`), and how many were replaced."""
    if not isinstance(tokens, list) or not tokens:
        raise ValueError(f"{name!r} must be a non-empty list of words")
    words, replaced = [], 0
    for k, token in enumerate(tokens):
        if not isinstance(token, str) or not token:
            raise ValueError(f"{name}[{k}] {token!r} must be a non-empty string")
        word, changed = replace_whitespace(token)
        words.append(word)
        replaced += changed
    return words, replaced


def _unique(spans: list[Span]) -> list[Span]:
    """Spans in order with exact repeats removed."""
    return list(dict.fromkeys(spans))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _result(records: list[dict], labels: set[str], *, replaced: int, duplicates: int, split: int = 0):
    return ConversionResult(records=records, scheme=NO_SCHEME, repaired_tags=0, source_labels=sorted(labels),
                            replaced_whitespace_tokens=replaced, duplicate_spans=duplicates, split_words=split)


def _label(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------- GLiNER
# GLiNER trains on {"tokenized_text": [words], "ner": [[start, end_inclusive, label], ...]} items, word indices,
# stored as one JSON list or as JSONL. Our records carry the same words (`tokens`) with exclusive ends.


def records_to_gliner(records: Sequence[Mapping]) -> list[dict]:
    """Project records -> GLiNER items (token spans with the end made inclusive; ids are not kept)."""
    return [
        {"tokenized_text": list(record["tokens"]),
         "ner": [[span["start"], span["end"] - 1, span["label"]] for span in record["token_spans"]]}
        for record in records
    ]


def _gliner_item_spans(item: object) -> tuple[list[str], list[Span], int, int]:
    """One GLiNER item -> (words, spans without repeats, replaced tokens, repeats); ValueError says why."""
    if not isinstance(item, dict) or "tokenized_text" not in item or "ner" not in item:
        raise ValueError("expected an object with 'tokenized_text' and 'ner'")
    words, replaced = _words(item["tokenized_text"], "tokenized_text")
    ner = item["ner"]
    if not isinstance(ner, list):
        raise ValueError("'ner' must be a list of [start, end_inclusive, label]")
    spans = []
    for k, entry in enumerate(ner):
        ok = isinstance(entry, list | tuple) and len(entry) == 3
        start, end, label = entry if ok else (None, None, None)
        if not (ok and _is_int(start) and _is_int(end) and isinstance(label, str) and label.strip()):
            raise ValueError(f"ner[{k}] must be [start, end_inclusive, label] with integer positions, got {entry!r}")
        if not 0 <= start <= end < len(words):
            raise ValueError(f"ner[{k}] {entry!r} lies outside the {len(words)} words (end is inclusive)")
        spans.append((start, end + 1, label))
    unique = _unique(spans)
    return words, unique, replaced, len(spans) - len(unique)


def gliner_to_result(items: object, *, source: str = "<gliner>") -> ConversionResult:
    """GLiNER items -> records with ids "0", "1", ..., exact duplicate spans dropped and counted.

    Raises ValueError "{source}: item {k}: ..." for a malformed item (k 0-based).
    """
    if not isinstance(items, list):
        raise ValueError(f"{source}: a GLiNER file is a JSON list of items or JSONL")
    records, labels, replaced, duplicates = [], set(), 0, 0
    for index, item in enumerate(items):
        try:
            words, spans, item_replaced, item_duplicates = _gliner_item_spans(item)
        except ValueError as error:
            raise ValueError(f"{source}: item {index}: {error}") from None
        records.append(make_record(index, words, spans))
        labels.update(label for _, _, label in spans)
        replaced, duplicates = replaced + item_replaced, duplicates + item_duplicates
    return _result(records, labels, replaced=replaced, duplicates=duplicates)


def gliner_to_records(items: object, *, source: str = "<gliner>") -> tuple[list[dict], int]:
    """GLiNER items -> (records with ids "0", "1", ..., the number of duplicate spans dropped); see gliner_to_result."""
    result = gliner_to_result(items, source=source)
    return result.records, result.duplicate_spans


# ----------------------------------------------------------------------------------------------- benchmark JSON
# The zero-shot NER benchmark files (CrossNER, MIT, ... as distributed with UniNER and GLiNER) are a JSON list of
# {"sentence": str, "entities": [{"name": str, "type": str, "pos": [start, end]}]}, character offsets, end exclusive.
#
# Words: the sentence split on whitespace, and a word cut in two at every entity start or end that falls strictly
# inside it ("U.S.-based" with an entity "U.S." gives "U.S." and "-based"), so each entity covers whole words. The
# record's text is the words joined by single spaces, so its char_spans point into that text, not into the
# sentence. Reversing it: JSONL -> benchmark (`records_to_benchmark`) -> JSONL gives the same records up to ids;
# benchmark -> JSONL -> benchmark gives the same entities (name, type) with the sentence's whitespace runs made
# single spaces and a space at each cut (counted as `split_words`).


def _benchmark_entities(sentence: str, entities: object) -> list[tuple[int, int, str]]:
    """Validated (start, end, type) character spans of one item."""
    if not isinstance(entities, list):
        raise ValueError("'entities' must be a list of {name, type, pos} objects")
    spans = []
    for k, entity in enumerate(entities):
        if not isinstance(entity, dict) or set(entity) != set(BENCHMARK_ENTITY_KEYS):
            keys = sorted(entity) if isinstance(entity, dict) else type(entity).__name__
            raise ValueError(f"entities[{k}] must be an object with exactly the keys name, type, pos; got {keys}")
        name, pos = entity["name"], entity["pos"]
        label = _label(entity["type"], f"entities[{k}].type")
        if not (isinstance(pos, list) and len(pos) == 2 and all(map(_is_int, pos))):
            raise ValueError(f"entities[{k}].pos must be [start, end] (integers), got {pos!r}")
        start, end = pos
        if not 0 <= start < end <= len(sentence):
            raise ValueError(f"entities[{k}].pos {pos} is empty or outside the sentence ({len(sentence)} characters)")
        if sentence[start:end] != name:
            found = sentence[start:end]
            raise ValueError(f"entities[{k}] name {name!r} differs from sentence[{start}:{end}] {found!r}")
        if name != name.strip():
            raise ValueError(f"entities[{k}] {name!r} starts or ends with whitespace")
        spans.append((start, end, label))
    return spans


def _benchmark_item_spans(item: object) -> tuple[list[str], list[Span], int, int]:
    """One benchmark item -> (words, token spans without repeats, words cut, repeats); ValueError says why."""
    if not isinstance(item, dict) or set(item) != {"sentence", "entities"}:
        keys = sorted(item) if isinstance(item, dict) else type(item).__name__
        raise ValueError(f"expected an object with exactly the keys 'sentence' and 'entities', got {keys}")
    sentence = item["sentence"]
    if not isinstance(sentence, str) or not sentence.strip():
        raise ValueError("'sentence' must be a string with at least one word")
    char_spans = _benchmark_entities(sentence, item["entities"])
    cuts = sorted({position for start, end, _ in char_spans for position in (start, end)})
    words, starts, ends, split = [], {}, {}, 0
    for match in _WORD_RE.finditer(sentence):
        inner = [c for c in cuts if match.start() < c < match.end()]
        split += len(inner)
        for begin, finish in zip([match.start(), *inner], [*inner, match.end()], strict=True):
            starts[begin], ends[finish] = len(words), len(words) + 1
            words.append(sentence[begin:finish])
    # An entity has no whitespace at its ends, so its start begins a word piece and its end ends one.
    spans = [(starts[start], ends[end], label) for start, end, label in char_spans]
    unique = _unique(spans)
    return words, unique, split, len(spans) - len(unique)


def benchmark_to_result(items: object, *, source: str = "<benchmark>") -> ConversionResult:
    """Benchmark items -> records with ids "0", "1", ... (see the word rule above); duplicates dropped and counted.

    Raises ValueError "{source}: item {k}: ..." for a malformed item (k 0-based), e.g. a `pos` whose characters
    are not the entity's `name`.
    """
    if not isinstance(items, list):
        raise ValueError(f"{source}: a benchmark file is a JSON list of {{sentence, entities}} objects")
    records, labels, split, duplicates = [], set(), 0, 0
    for index, item in enumerate(items):
        try:
            words, spans, item_split, item_duplicates = _benchmark_item_spans(item)
        except ValueError as error:
            raise ValueError(f"{source}: item {index}: {error}") from None
        records.append(make_record(index, words, spans))
        labels.update(label for _, _, label in spans)
        split, duplicates = split + item_split, duplicates + item_duplicates
    return _result(records, labels, replaced=0, duplicates=duplicates, split=split)


def records_to_benchmark(records: Sequence[Mapping]) -> list[dict]:
    """Project records -> benchmark items: the record's text as the sentence, its char_spans as entities."""
    return [
        {"sentence": record["text"],
         "entities": [{"name": record["text"][span["start"]:span["end"]], "type": span["label"],
                       "pos": [span["start"], span["end"]]} for span in record["char_spans"]]}
        for record in records
    ]


# ----------------------------------------------------------------------------------------------- SLURP
# SLURP JSONL: one utterance per line with "tokens": [{"surface", "id", ...}] and "entities": [{"type", "span":
# [token ids]}]; the ids index the tokens list. Every other field (intent, recordings, ...) is ignored.


def _slurp_line(value: object) -> tuple[list[str], list[Span], int, int]:
    """One SLURP utterance -> (words, spans without repeats, replaced tokens, repeats); ValueError says why."""
    if not isinstance(value, dict) or "tokens" not in value or "entities" not in value:
        raise ValueError("expected a JSON object with 'tokens' and 'entities'")
    tokens, entities = value["tokens"], value["entities"]
    if not isinstance(tokens, list) or not tokens:
        raise ValueError("'tokens' must be a non-empty list of {surface, id} objects")
    for k, token in enumerate(tokens):
        if not isinstance(token, dict) or not isinstance(token.get("surface"), str) or not token["surface"]:
            raise ValueError(f"tokens[{k}] must be an object with a non-empty string 'surface'")
        if "id" in token and token["id"] != k:
            raise ValueError(f"tokens[{k}] has id {token['id']!r}; ids must be the positions 0, 1, ...")
    words, replaced = _words([token["surface"] for token in tokens], "tokens[*].surface")
    if not isinstance(entities, list):
        raise ValueError("'entities' must be a list of {type, span} objects")
    spans = []
    for k, entity in enumerate(entities):
        if not isinstance(entity, dict) or "type" not in entity or "span" not in entity:
            raise ValueError(f"entities[{k}] must be an object with 'type' and 'span'")
        label, ids = _label(entity["type"], f"entities[{k}].type"), entity["span"]
        if not (isinstance(ids, list) and ids and all(map(_is_int, ids))):
            raise ValueError(f"entities[{k}].span must be a non-empty list of token ids, got {ids!r}")
        if ids != list(range(ids[0], ids[0] + len(ids))):
            raise ValueError(f"entities[{k}] ({label!r}) span {ids} is not a run of contiguous token ids")
        if not 0 <= ids[0] <= ids[-1] < len(words):
            raise ValueError(f"entities[{k}] ({label!r}) span {ids} lies outside the {len(words)} tokens")
        spans.append((ids[0], ids[-1] + 1, label))
    unique = _unique(spans)
    return words, unique, replaced, len(spans) - len(unique)


def read_slurp(path: str | Path) -> ConversionResult:
    """Read a SLURP JSONL file: ids "0", "1", ... in line order (blank lines skipped), duplicate spans dropped.

    Raises DataValidationError "{path}:{line}: ..." naming the entity for a bad span.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such SLURP file")
    records, labels, replaced, duplicates = [], set(), 0, 0
    for number, line in iter_text_lines(path):
        if not line.strip():
            continue
        try:
            words, spans, line_replaced, line_duplicates = _slurp_line(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataValidationError(path, number, f"invalid JSON: {error.msg} (column {error.colno})") from None
        except ValueError as error:
            raise DataValidationError(path, number, str(error)) from None
        records.append(make_record(len(records), words, spans))
        labels.update(label for _, _, label in spans)
        replaced, duplicates = replaced + line_replaced, duplicates + line_duplicates
    if not records:
        raise DataValidationError(path, 0, "empty file: no utterances")
    return _result(records, labels, replaced=replaced, duplicates=duplicates)
