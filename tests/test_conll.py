"""Tests for src/conll.py: CoNLL reading and its quirks, tag schemes, repairs, and record building."""

from __future__ import annotations

import pytest

from src.conll import (
    WHITESPACE_REPLACEMENT,
    ConllFormatError,
    convert_conll_file,
    convert_document,
    detect_scheme,
    make_record,
    parse_conll_lines,
    read_conll,
    record_to_spans,
    replace_whitespace,
    spans_to_tags,
    tags_to_spans,
    token_char_offsets,
)

# One annotation written in each scheme. "European Commission" "Council" are adjacent entities of the same type,
# the one place where IOB1 uses B-.
TOKENS = ["U.N.", "official", "Ekeus", "heads", "European", "Commission", "Council", "in", "New", "York"]
EXPECTED_SPANS = [(0, 1, "ORG"), (2, 3, "PER"), (4, 6, "ORG"), (6, 7, "ORG"), (8, 10, "LOC")]
TAGS = {
    "iob1": ["I-ORG", "O", "I-PER", "O", "I-ORG", "I-ORG", "B-ORG", "O", "I-LOC", "I-LOC"],
    "iob2": ["B-ORG", "O", "B-PER", "O", "B-ORG", "I-ORG", "B-ORG", "O", "B-LOC", "I-LOC"],
    "bioes": ["S-ORG", "O", "S-PER", "O", "B-ORG", "E-ORG", "S-ORG", "O", "B-LOC", "E-LOC"],
    "bilou": ["U-ORG", "O", "U-PER", "O", "B-ORG", "L-ORG", "U-ORG", "O", "B-LOC", "L-LOC"],
}


def conll_text(tags: list[str], separator: str = " ") -> str:
    """The TOKENS with `tags` as a CoNLL-2003 style file (two sentences split after "heads", with a DOCSTART)."""
    rows = [separator.join([token, "NNP", "I-NP", tag]) for token, tag in zip(TOKENS, tags, strict=True)]
    return "-DOCSTART- -X- -X- O\n\n" + "\n".join(rows[:4]) + "\n\n" + "\n".join(rows[4:]) + "\n"


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("written_in", ["iob1", "iob2", "bioes", "bilou"])
@pytest.mark.parametrize("scheme", ["auto", "explicit"])
def test_every_scheme_gives_identical_records(tmp_path, written_in, scheme):
    path = tmp_path / "data.txt"
    path.write_text(conll_text(TAGS[written_in]), encoding="utf-8")
    explicit = "bioes" if written_in == "bilou" else written_in
    result = convert_conll_file(path, scheme=explicit if scheme == "explicit" else "auto")
    assert result.scheme == explicit
    assert result.repaired_tags == 0
    assert [record_to_spans(r) for r in result.records] == [
        (TOKENS[:4], [(0, 1, "ORG"), (2, 3, "PER")]),
        (TOKENS[4:], [(0, 2, "ORG"), (2, 3, "ORG"), (4, 6, "LOC")]),
    ]
    reference = convert_conll_file(_write(tmp_path / "ref.txt", conll_text(TAGS["iob2"])))
    assert result.records == reference.records


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "bioes"])
def test_spans_to_tags_writes_each_scheme(scheme):
    assert spans_to_tags(len(TOKENS), EXPECTED_SPANS, scheme) == TAGS[scheme]
    assert tags_to_spans(TAGS[scheme], scheme) == (EXPECTED_SPANS, 0)


def test_spans_to_tags_rejects_overlaps():
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags(4, [(0, 2, "A"), (1, 3, "B")], "iob2")


@pytest.mark.parametrize(
    ("tags", "scheme", "spans", "repairs"),
    [
        (["O", "I-PER", "I-PER", "O"], "iob2", [(1, 3, "PER")], 1),  # stray I- starts an entity
        (["I-PER"], "iob2", [(0, 1, "PER")], 1),
        (["B-PER", "I-LOC", "O"], "iob2", [(0, 1, "PER"), (1, 2, "LOC")], 1),  # I-Y after B-X
        (["B-PER", "I-PER", "I-LOC", "I-LOC"], "iob2", [(0, 2, "PER"), (2, 4, "LOC")], 1),
        (["B-PER", "I-PER"], "iob1", [(0, 2, "PER")], 1),  # IOB1 uses B- only after a same-type entity
        (["I-PER", "B-PER", "O", "I-LOC"], "iob1", [(0, 1, "PER"), (1, 2, "PER"), (3, 4, "LOC")], 0),
        (["E-PER", "O"], "bioes", [(0, 1, "PER")], 1),  # E- without a start
        (["B-PER", "O"], "bioes", [(0, 1, "PER")], 1),  # B- never closed
        (["B-PER", "I-PER"], "bioes", [(0, 2, "PER")], 1),  # runs off the end of the sentence
        (["B-PER", "I-LOC", "E-LOC"], "bioes", [(0, 1, "PER"), (1, 3, "LOC")], 2),
        (["S-PER", "I-PER", "E-PER"], "bioes", [(0, 1, "PER"), (1, 3, "PER")], 1),
        (["I-PER", "O", "S-LOC"], "bioes", [(0, 1, "PER"), (2, 3, "LOC")], 1),
        (["U-PER", "B-LOC", "L-LOC"], "bioes", [(0, 1, "PER"), (1, 3, "LOC")], 0),  # BILOU spelling is fine
    ],
)
def test_ill_formed_sequences_are_repaired_and_counted(tags, scheme, spans, repairs):
    assert tags_to_spans(tags, scheme) == (spans, repairs)


def test_repairs_are_counted_in_conversion_results():
    lines = ["a O", "b I-PER", "c I-PER", "", "d B-PER", "e I-LOC", ""]
    result = convert_document(parse_conll_lines(lines), scheme="iob2")
    assert result.repaired_tags == 2
    assert [record_to_spans(r)[1] for r in result.records] == [[(1, 3, "PER")], [(0, 1, "PER"), (1, 2, "LOC")]]


@pytest.mark.parametrize(
    ("sequences", "expected"),
    [
        ([["B-PER", "I-PER", "O"], ["B-LOC"]], "iob2"),
        ([["I-PER", "I-PER", "O"], ["O", "I-LOC", "B-LOC"]], "iob1"),  # original CoNLL-2003 style
        ([["B-PER", "E-PER"], ["O"]], "bioes"),
        ([["U-PER"]], "bioes"),
        ([["O", "O"]], "iob2"),  # no entities: tie
        ([["B-A", "I-A"], ["B-B"], ["O", "I-C"]], "iob2"),  # mostly IOB2 with one stray I-
    ],
)
def test_detect_scheme(sequences, expected):
    assert detect_scheme(sequences) == expected


def test_forced_scheme_rejects_foreign_tags_with_file_and_line(tmp_path):
    path = _write(tmp_path / "x.txt", "a O\nb S-PER\n")
    with pytest.raises(ConllFormatError) as caught:
        convert_conll_file(path, scheme="iob2")
    assert str(caught.value) == f"{path}:2: tag 'S-PER' is not valid in iob2"


def test_reader_handles_docstart_blank_lines_crlf_tabs_and_bom(tmp_path):
    lines = ["\ufeff-DOCSTART-\tO", "", "EU\tB-ORG", "rejects\tO", "\t", "   ", "", "German\ufeff\tB-MISC", "\ufeff\tO"]
    text = "\r\n".join(lines) + "\r\n"
    document = read_conll(_write(tmp_path / "quirks.conll", text))
    assert [(s.tokens, s.tags, s.lines) for s in document.sentences] == [
        (["EU", "rejects"], ["B-ORG", "O"], [3, 4]),
        (["German"], ["B-MISC"], [8]),
    ]
    assert document.dropped_tokens == 1  # the token that was only a BOM
    assert document.empty_sentences == 0


def test_sentence_of_only_dropped_tokens_is_counted():
    document = parse_conll_lines(["a O", "", "\ufeff\tO", "", "b O"])
    assert [s.tokens for s in document.sentences] == [["a"], ["b"]]
    assert (document.dropped_tokens, document.empty_sentences) == (1, 1)


def test_four_column_file_takes_the_last_column_and_skips_docstart(tmp_path):
    result = convert_conll_file(_write(tmp_path / "c.txt", conll_text(TAGS["iob2"])))
    assert [r["id"] for r in result.records] == ["0", "1"]  # no empty sentence from the DOCSTART block
    assert result.records[0]["tokens"] == TOKENS[:4]


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("a O\nb\n", 2, "expected a token and a tag"),
        ("a NN O\nb O\n", 2, "2 columns, but line 1 has 3"),
        ("a O\n\nb X-PER\n", 3, "invalid tag 'X-PER'"),
        ("a O\nb B-\n", 2, "invalid tag 'B-'"),
        ("a\tx\tO\nb\tO\n", 2, "2 columns, but line 1 has 3"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, what):
    path = _write(tmp_path / "bad.txt", text)
    with pytest.raises(ConllFormatError) as caught:
        read_conll(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert what in str(caught.value)


def test_whitespace_inside_a_token_becomes_one_visible_character_and_is_counted():
    lines = ["ke s\tO", "New \u00a0 York\tB-LOC", " \tO", "MH17 \tB-MISC", "\tO", "", "a\u3000b O", "c\x1fd O"]
    document = parse_conll_lines(lines)
    dot = WHITESPACE_REPLACEMENT
    assert dot == "\u00b7" and not dot.isspace()
    # a lone-space token is kept as the visible character; spaces around "MH17" are padding; "" is dropped
    assert document.sentences[0].tokens == [f"ke{dot}s", f"New{dot}York", dot, "MH17"]
    assert document.sentences[1].tokens == [f"a{dot}b", f"c{dot}d"]
    assert (document.replaced_whitespace_tokens, document.dropped_tokens) == (5, 1)
    result = convert_document(document)
    assert result.replaced_whitespace_tokens == 5
    assert record_to_spans(result.records[0])[1] == [(1, 2, "LOC"), (3, 4, "MISC")]
    assert replace_whitespace("plain") == ("plain", False)
    assert replace_whitespace("\t a \n\nb ") == (f"{dot}a{dot}b{dot}", True)


def test_tag_column_picks_the_tag_from_any_column(tmp_path):
    text = "Use\tO\tUse\tO\nNumPy\tB-Library\tNumPy\tB-Code\n\t\nok\tO\tok\tO\n"
    path = _write(tmp_path / "so.txt", text)
    result = convert_conll_file(path, tag_column=2)
    assert [record_to_spans(r) for r in result.records] == [(["Use", "NumPy"], [(1, 2, "Library")]), (["ok"], [])]
    assert record_to_spans(convert_conll_file(path).records[0])[1] == [(1, 2, "Code")]  # default: the last column
    short = _write(tmp_path / "short.txt", "a\tO\n")
    with pytest.raises(ConllFormatError, match=r"short\.txt:1: tag column 3 asked for, but the line has 2 columns"):
        read_conll(short, tag_column=3)
    for bad in (1, 0, True):
        with pytest.raises(ValueError, match="tag_column must be an integer >= 2"):
            read_conll(path, tag_column=bad)


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a O\nb\xff O\n")
    with pytest.raises(ConllFormatError, match=r"bad\.txt:2: not valid UTF-8"):
        read_conll(path)


def test_make_record_and_its_inverse():
    record = make_record(7, ["New", "York", "is", "big"], [(0, 2, "LOC"), (3, 4, "ADJ")])
    assert record == {
        "id": "7",
        "tokens": ["New", "York", "is", "big"],
        "text": "New York is big",
        "token_spans": [{"start": 0, "end": 2, "label": "LOC"}, {"start": 3, "end": 4, "label": "ADJ"}],
        "char_spans": [{"start": 0, "end": 8, "label": "LOC"}, {"start": 12, "end": 15, "label": "ADJ"}],
    }
    assert record_to_spans(record) == (["New", "York", "is", "big"], [(0, 2, "LOC"), (3, 4, "ADJ")])
    assert token_char_offsets(["New", "York", "is", "big"]) == [(0, 3), (4, 8), (9, 11), (12, 15)]
    with pytest.raises(ValueError, match="outside"):
        make_record(0, ["a"], [(0, 2, "X")])


def test_label_map_renames_and_keeps_source_labels():
    result = convert_document(parse_conll_lines(["a B-PER", "b B-LOC"]), label_map={"PER": "person"})
    assert record_to_spans(result.records[0])[1] == [(0, 1, "person"), (1, 2, "LOC")]
    assert result.source_labels == ["LOC", "PER"]
