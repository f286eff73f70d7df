"""annotate.py and src/generation: the word rule, pieces, records, kill/resume, engines byte for byte, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import annotate
from src.data import read_jsonl
from src.generation.annotator import Batch, annotate_batch
from src.generation.pieces import cut_pieces
from src.generation.records import AnnotationSettings, Document
from src.generation.writer import ResumableWriter, manifest_path
from src.text_split import restore_offsets, split_words

from .conftest import REPO_ROOT
from .training_runs import subprocess_env, train_in_process, write_run_config

SENTENCES = ["John Smith lives in New York.", "Apple hired Mary Jones yesterday. She starts in Paris!",
             "Nothing to see here", "Angela Merkel visited Berlin and the U.N. on Tuesday."]


def write_corpus(path: Path, count: int) -> Path:
    path.write_text("".join(f"{SENTENCES[i % 4]} Item {i}.\n" for i in range(count)), encoding="utf-8")
    return path


def command(model_dir: Path, corpus: Path, output: Path, *extra: str) -> list[str]:
    return [str(model_dir), "--input", str(corpus), "--labels", "PER,ORG,LOC", "--output", str(output),
            "--batch-size", "4", "--chunk-size", "8", "--no-progress", *extra]


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    """An uninterrupted single-process run over 120 documents: (corpus, output bytes)."""
    folder = tmp_path_factory.mktemp("annotate_reference")
    corpus = write_corpus(folder / "corpus.txt", 120)
    output = folder / "reference.jsonl"
    assert annotate.main(command(tiny_model_dir, corpus, output)) == 0
    return corpus, output.read_bytes()


class FixedTeacher:
    """A teacher whose spans the test gives: {document text: [(first word, end word, label index, score)]}."""

    def __init__(self, spans: dict[str, list]) -> None:
        self.spans = spans

    def find(self, documents, prompts, thresholds, *, flat_ner, batch_size):
        return [list(self.spans.get(doc.text, [])) for doc in documents], 0


def test_word_rule_splits_punctuation_and_restores_the_original_offsets():
    text = "Zürich-based  UBS\thired U.S. staff_x (café)."
    words, offsets = split_words(text)
    assert words == ["Zürich", "-", "based", "UBS", "hired", "U", ".", "S", ".", "staff", "_", "x", "(", "café", ")",
                     "."]
    assert [text[a:b] for a, b in offsets] == words
    assert restore_offsets(words, text) == offsets
    with pytest.raises(ValueError, match="word 1 'based' is not at character 6"):
        restore_offsets(["Zürich", "based"], text)


def test_sentence_cuts_keep_abbreviations_and_entities_whole_and_windows_never_exceed_max_words():
    text = 'Mr. Smith met the U.S. Army. He said "Fine." Then 3 days passed!\n\nnew para'
    words, offsets = split_words(text)
    pieces, lost = cut_pieces(words, offsets, text, [], sentences=True, max_words=None)
    assert [" ".join(words[a:b]) for a, b in pieces] == [
        "Mr . Smith met the U . S . Army .", 'He said " Fine . "', "Then 3 days passed !", "new para"]
    # An entity over a would-be cut keeps its sentence together; a window cut moves back to spare an entity.
    pieces, _ = cut_pieces(words, offsets, text, [(10, 13)], sentences=True, max_words=None)
    assert pieces[0] == (0, 17)  # words 0-16: the first two sentences
    pieces, lost = cut_pieces(words, offsets, text, [(2, 5)], sentences=False, max_words=4)
    assert pieces[:2] == [(0, 2), (2, 6)] and lost == 0 and all(b - a <= 4 for a, b in pieces)
    assert cut_pieces(words, offsets, text, [(0, 6)], sentences=False, max_words=4)[1] == 1


def test_records_carry_scores_labels_source_and_follow_the_filters():
    docs = (Document(0, "a.txt:1", "Ada  Lovelace met Babbage. They talked."), Document(1, "a.txt:2", "Nothing here"),
            Document(2, "a.txt:3", "   "), Document(3, "a.txt:4", "Grace Hopper"))
    teacher = FixedTeacher({docs[0].text: [(0, 2, 0, 0.91234), (3, 4, 0, 0.8)], docs[3].text: [(0, 2, 0, 0.4)]})
    base = dict(labels=("person", "place"), prompts=("person", "place"), thresholds=(0.3, 0.3), batch_size=4)
    result = annotate_batch(teacher, Batch(0, docs), AnnotationSettings(**base))
    records = [json.loads(line) for line in result.data.decode().splitlines()]
    assert [r["id"] for r in records] == ["0", "1", "3"]  # the blank document has no words: no record
    assert records[0]["text"] == "Ada Lovelace met Babbage . They talked ."
    assert records[0]["char_spans"] == [{"start": 0, "end": 12, "label": "person"},
                                        {"start": 17, "end": 24, "label": "person"}]
    assert records[0]["scores"] == [0.9123, 0.8] and records[0]["labels"] == ["person", "place"]
    assert records[0]["source"] == {"id": "a.txt:1", "word": 0}
    assert result.stats == {"documents": 4, "entities": 3, "entities[person]": 3, "no_words": 1, "records": 3}

    split = AnnotationSettings(**base, sentences=True, keep_empty=0.0, min_confidence=0.5)
    result = annotate_batch(teacher, Batch(0, docs), split)
    records = [json.loads(line) for line in result.data.decode().splitlines()]
    assert [(r["id"], r["source"]["word"], r["tokens"]) for r in records] == [
        ("0-0", 0, ["Ada", "Lovelace", "met", "Babbage", "."])]
    assert result.stats["dropped_empty"] == 2 and result.stats["dropped_low_confidence"] == 1


def test_output_passes_the_validator_and_trains_a_few_steps(reference, tiny_backbone, tmp_path):
    corpus, data = reference
    output = tmp_path / "generated.jsonl"
    output.write_bytes(data)
    records = read_jsonl(output)
    assert len(records) == 120 and sum(len(r["token_spans"]) for r in records) > 0
    for k, record in enumerate(records):
        assert record["source"] == {"id": f"corpus.txt:{k + 1}", "word": 0}
        assert len(record["scores"]) == len(record["token_spans"]) and record["labels"] == ["PER", "ORG", "LOC"]
        for span, chars in zip(record["token_spans"], record["char_spans"], strict=True):
            assert record["text"][chars["start"]:chars["end"]] == " ".join(record["tokens"][span["start"]:span["end"]])
    config = write_run_config(tmp_path / "run", tiny_backbone, train_file=str(output), max_steps=2, eval_steps=2,
                              logging_steps=1)
    assert train_in_process(config) == 0
    assert (tmp_path / "run" / "out" / "final" / "config.json").is_file()


def test_a_killed_run_resumes_to_exactly_the_uninterrupted_output(reference, tiny_model_dir, tmp_path):
    corpus, expected = reference
    output = tmp_path / "killed.jsonl"
    args = command(tiny_model_dir, corpus, output)
    process = subprocess.Popen([sys.executable, "annotate.py", *args], cwd=REPO_ROOT, env=subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    progress = {}
    while time.monotonic() < deadline and process.poll() is None:
        try:
            progress = json.loads(manifest_path(output).read_text())["progress"]
        except (OSError, ValueError, KeyError):
            progress = {}
        if progress.get("chunks", 0) >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert progress.get("chunks", 0) >= 2 and not progress["complete"], process.stderr.read()[-2000:]
    killed_at = json.loads(manifest_path(output).read_text())["progress"]["documents"]
    assert 0 < killed_at < 120
    assert output.read_bytes().endswith(b"\n")  # whole chunks only: no partial last line
    assert annotate.main(args) == 0
    assert output.read_bytes() == expected
    assert len(output.read_bytes().splitlines()) == 120
    assert annotate.main(args) == 0 and output.read_bytes() == expected  # a complete run: nothing to do


def test_a_chunk_torn_by_a_crash_is_cut_off_and_written_again(reference, tiny_model_dir, tmp_path, monkeypatch):
    corpus, expected = reference
    output = tmp_path / "torn.jsonl"
    real_write = ResumableWriter.write_chunk
    calls = []

    def crash_in_third_chunk(self, data, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            with output.open("ab") as handle:
                handle.write(data[: len(data) // 2])  # half a chunk, ending inside a line, and no manifest entry
            raise KeyboardInterrupt
        real_write(self, data, **kwargs)

    monkeypatch.setattr(ResumableWriter, "write_chunk", crash_in_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        annotate.main(command(tiny_model_dir, corpus, output))
    monkeypatch.setattr(ResumableWriter, "write_chunk", real_write)
    assert not output.read_bytes().endswith(b"\n")
    assert annotate.main(command(tiny_model_dir, corpus, output)) == 0
    assert output.read_bytes() == expected


def test_an_output_of_other_settings_or_of_another_tool_is_refused(reference, tiny_model_dir, tmp_path, capsys):
    corpus, expected = reference
    output = tmp_path / "out.jsonl"
    output.write_bytes(expected)
    manifest_path(output).write_text(json.dumps({"version": 1}))
    (tmp_path / "foreign.jsonl").write_text('{"id": "x"}\n')
    assert annotate.main(command(tiny_model_dir, corpus, tmp_path / "foreign.jsonl")) == 1
    assert "has no .manifest.json (it was not written by annotate.py)" in capsys.readouterr().err
    assert annotate.main(command(tiny_model_dir, corpus, output, "--threshold", "0.4")) == 1
    err = capsys.readouterr().err
    assert "other settings" in err and "thresholds: null -> [0.4, 0.4, 0.4]" in err
    assert output.read_bytes() == expected  # nothing was changed
    assert annotate.main(command(tiny_model_dir, corpus, output, "--overwrite", "--labels", "PER")) == 0
    assert read_jsonl(output)[0]["labels"] == ["PER"]


def test_a_bf16_span_teacher_writes_its_own_run_and_resumes_only_in_bf16(reference, tiny_model_dir, tmp_path,
                                                                          capsys):
    corpus, expected = reference
    output = tmp_path / "bf16.jsonl"
    assert annotate.main(command(tiny_model_dir, corpus, output, "--precision", "bf16")) == 0
    records = read_jsonl(output)  # the training-data validator
    assert len(records) == 120
    fp32 = [json.loads(line) for line in expected.decode("utf-8").splitlines()]
    assert [r["text"] for r in records] == [r["text"] for r in fp32]
    manifest = json.loads(manifest_path(output).read_text())
    assert manifest["settings"]["teacher"]["precision"] == "bf16"
    assert annotate.main(command(tiny_model_dir, corpus, output)) == 1  # an fp32 run may not continue it
    assert "other settings" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        annotate.main(command(tiny_model_dir, corpus, tmp_path / "g.jsonl", "--teacher-type", "gliner",
                              "--precision", "bf16"))
    assert caught.value.code == 2 and "--precision bf16 goes with --teacher-type span" in capsys.readouterr().err


def test_a_gliner_teacher_writes_valid_records_with_the_asked_names(gliner_dir, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", 5)
    output = tmp_path / "gliner.jsonl"
    assert annotate.main([str(gliner_dir), "--teacher-type", "gliner", "--input", str(corpus), "--labels",
                          "PER=person,LOC=location", "--threshold", "0.01", "--output", str(output),
                          "--no-progress"]) == 0
    records = read_jsonl(output)  # the training-data validator
    assert len(records) == 5 and all(r["labels"] == ["PER", "LOC"] for r in records)
    found = [span["label"] for r in records for span in r["token_spans"]]
    assert found and set(found) <= {"PER", "LOC"}  # the random head at 0.01 finds plenty, under the asked names


def test_bad_teacher_labels_and_input_are_named(tiny_model_dir, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "c.txt", 2)
    assert annotate.main(command(tmp_path / "missing", corpus, tmp_path / "o.jsonl")) == 1
    assert f"{tmp_path / 'missing'}: no such teacher folder" in capsys.readouterr().err
    assert annotate.main(command(tiny_model_dir, corpus, tmp_path / "o.jsonl", "--teacher-type", "gliner")) == 1
    assert "not a saved gliner model folder (no gliner_config.json)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        annotate.main(command(tiny_model_dir, corpus, tmp_path / "o.jsonl", "--labels", " , "))
    assert caught.value.code == 2 and "--labels is empty" in capsys.readouterr().err
    bad = tmp_path / "docs.jsonl"
    bad.write_text('{"text": "fine"}\n\n{"text": "broken"\n', encoding="utf-8")
    assert annotate.main(command(tiny_model_dir, bad, tmp_path / "o2.jsonl")) == 1
    assert f"{bad}:3: invalid JSON" in capsys.readouterr().err


def test_two_worker_processes_write_the_same_file(reference, tiny_model_dir, tmp_path):
    corpus, expected = reference
    output = tmp_path / "pool.jsonl"
    assert annotate.main(command(tiny_model_dir, corpus, output, "--num-workers", "2", "--threads", "1")) == 0
    assert output.read_bytes() == expected


def test_ray_data_in_a_local_cluster_writes_the_same_file(reference, tiny_model_dir, tmp_path):
    ray = pytest.importorskip("ray")
    corpus, expected = reference
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}})
    try:
        output = tmp_path / "ray.jsonl"
        assert annotate.main(command(tiny_model_dir, corpus, output, "--engine", "ray", "--threads", "1")) == 0
        assert output.read_bytes() == expected
    finally:
        ray.shutdown()
