"""The HTTP server as a real process on a free port, called with a real HTTP client: answers equal `predict`,
concurrent clients with different label sets each get their own answer, bad requests get 4xx naming the field and
the server keeps serving, SIGTERM exits 0. Plus the ONNX backend through the same app, in process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from src.inference import SpanPredictor
from src.serving.onnx_backend import load_onnx_predictor
from src.serving.server import ServerSettings, create_app

from .conftest import REPO_ROOT

TEXTS = ["John Smith lives in New York .", "Apple hired Mary Jones yesterday in Paris and Berlin .",
         "Angela Merkel visited Berlin and the U.N. .", "Nothing to see here", "Zürich naïve 日本語 😀 U.S."]
MAX_TEXT_CHARS = 200
START_TIMEOUT = 180  # seconds; importing torch and transformers is slow on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """serve.py on the tiny model; yields (base URL, process). The last test stops it with SIGTERM."""
    port = free_port()
    command = [sys.executable, "serve.py", str(tiny_model_dir), "--port", str(port), "--max-batch", "16",
               "--max-wait-ms", "50", "--max-text-chars", str(MAX_TEXT_CHARS), "--log-level", "warning"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = tmp_path_factory.mktemp("server") / "stderr.log"  # a file: a pipe nobody reads could fill and block
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=log.open("w", encoding="utf-8"), text=True)
    process.log = log
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"serve.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("serve.py did not answer /health in time")
        time.sleep(0.5)
    yield url, process
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def local(tiny_model_dir) -> SpanPredictor:
    """The same model in this process, for the expected answers."""
    return SpanPredictor.from_pretrained(tiny_model_dir)


def assert_same(got: list[list[dict]], expected: list[list[dict]]) -> None:
    """Same entities (offsets, text, label); scores equal up to padding rounding."""
    def strip(found):
        return [[{k: v for k, v in e.items() if k != "score"} for e in entities] for entities in found]

    assert strip(got) == strip(expected)
    for a, b in zip(got, expected, strict=True):
        assert [e["score"] for e in a] == pytest.approx([e["score"] for e in b], abs=1e-5)


def post(url: str, body, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, timeout=60, **kwargs)


def test_answers_equal_predict(server, local):
    url, _ = server
    cases = [
        ({"texts": TEXTS, "labels": ["PER", "LOC", "ORG"]}, {}),
        ({"text": TEXTS[1], "labels": ["LOC", "PER"], "threshold": 0.2}, {"threshold": 0.2}),
        ({"texts": TEXTS[:3], "labels": [["PER"], ["ORG", "LOC"], ["LOC"]], "flat_ner": False}, {"flat_ner": False}),
        ({"texts": TEXTS[:2], "labels": ["PER", "LOC"], "multi_label": True}, {"multi_label": True}),
    ]
    found = 0
    for body, kwargs in cases:
        response = post(url, body)
        assert response.status_code == 200, response.text
        texts = body.get("texts") or [body["text"]]
        expected = local.predict(texts, body["labels"], **kwargs)
        assert_same(response.json()["entities"], expected)
        found += sum(map(len, expected))
    assert found > 10  # the tiny model predicts at its saved threshold 0.3


def test_concurrent_clients_with_different_label_sets_get_their_own_answers(server, local):
    url, _ = server
    label_sets = [["PER"], ["LOC", "ORG"], ["ORG", "PER", "LOC"], ["MISC", "LOC"], ["a much longer label", "PER"]]
    jobs = [(TEXTS[k % len(TEXTS)], label_sets[k % len(label_sets)], [None, 0.2, 0.4][k % 3], k % 4 == 0)
            for k in range(24)]
    before = httpx.get(f"{url}/info", timeout=10).json()["stats"]
    barrier = threading.Barrier(len(jobs))
    answers: dict[int, object] = {}

    def client(k: int) -> None:
        text, labels, threshold, multi = jobs[k]
        body = {"text": text, "labels": labels, "threshold": threshold, "multi_label": multi}
        with httpx.Client(timeout=120) as http:
            barrier.wait()
            answers[k] = http.post(f"{url}/predict", json={k: v for k, v in body.items() if v is not None})

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k, (text, labels, threshold, multi) in enumerate(jobs):
        assert answers[k].status_code == 200, answers[k].text
        assert_same(answers[k].json()["entities"], local.predict([text], labels, threshold=threshold,
                                                                 multi_label=multi))
    after = httpx.get(f"{url}/info", timeout=10).json()["stats"]
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    assert requests == len(jobs) and batches < requests  # requests really shared batches


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"texts": ["a"], "labels": []}, 422, "labels"),
        ({"texts": ["a"], "labels": [" "]}, 422, "labels"),
        ({"texts": ["a", "b"], "labels": [["PER"], []]}, 422, "labels"),
        ({"texts": ["a"], "labels": ["PER"], "threshold": 1.5}, 422, "threshold"),
        ({"texts": ["a"], "labels": ["PER"], "threshold": 0}, 422, "threshold"),
        ({"texts": ["a"], "labels": ["PER"], "threshold": "0.5"}, 422, "threshold"),
        ({"texts": "a", "labels": ["PER"]}, 422, "texts"),
        ({"texts": ["a", 3], "labels": ["PER"]}, 422, "texts"),
        ({"text": "a", "labels": ["PER"], "flat_ner": "yes"}, 422, "flat_ner"),
        ({"text": "a", "labels": ["PER"], "multi_label": 1}, 422, "multi_label"),
        ({"text": "a", "labels": "PER"}, 422, "labels"),
        ({"text": "a", "labels": ["PER"], "treshold": 0.5}, 422, "treshold"),
        ({"text": "a", "texts": ["b"], "labels": ["PER"]}, 422, "'texts'"),
        ({"labels": ["PER"]}, 422, "'text'"),
        ({"texts": [], "labels": ["PER"]}, 422, "'texts'"),
        ({"texts": ["a", "b"], "labels": [["PER"]]}, 422, "'labels'"),
        ({"texts": ["a", "x" * (MAX_TEXT_CHARS + 1)], "labels": ["PER"]}, 413, "texts"),
        ({"text": "x" * (MAX_TEXT_CHARS + 1), "labels": ["PER"]}, 413, "text"),
        ([1, 2], 422, "body"),
    ],
)
def test_bad_requests_get_4xx_naming_the_field_and_the_server_keeps_serving(server, body, status, field):
    url, _ = server
    response = post(url, body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert any(field in [str(part) for part in error["loc"]] or field in error["msg"] for error in detail), detail
    assert post(url, {"text": TEXTS[0], "labels": ["PER"]}).status_code == 200


def test_malformed_json_and_wrong_routes_are_4xx(server):
    url, _ = server
    response = httpx.post(f"{url}/predict", content=b'{"text": "a", "labels": [', timeout=10,
                          headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"][0]["type"] == "json_invalid"
    assert httpx.get(f"{url}/predict", timeout=10).status_code == 405
    assert httpx.get(f"{url}/health", timeout=10).json() == {"status": "ok"}


def test_info_names_model_backend_and_cached_labels(server, tiny_model_dir):
    url, _ = server
    info = httpx.get(f"{url}/info", timeout=10).json()
    assert info["model"] == str(tiny_model_dir) and info["backend"] == "torch"
    assert {"PER", "location", "a much longer label"} <= set(info["labels_cached"])  # LOC is read as its description
    assert info["settings"] == {"max_batch": 16, "max_wait_ms": 50.0, "max_text_chars": MAX_TEXT_CHARS,
                                "max_texts": ServerSettings().max_texts}
    assert info["decoding"]["threshold"] == 0.3


def test_sigterm_shuts_down_cleanly_with_status_0(server):
    url, process = server
    assert post(url, {"text": TEXTS[0], "labels": ["PER"]}).status_code == 200
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert "Traceback" not in process.log.read_text()


def test_onnx_backend_through_the_app_equals_onnx_predict(tiny_onnx_dir):
    predictor = load_onnx_predictor(tiny_onnx_dir, precision="fp32")
    expected = load_onnx_predictor(tiny_onnx_dir, precision="fp32").predict(TEXTS, ["PER", "LOC"])
    with TestClient(create_app(predictor, ServerSettings(max_batch=4), model_name="tiny")) as client:
        response = client.post("/predict", json={"texts": TEXTS, "labels": ["PER", "LOC"]})
        assert response.status_code == 200
        assert_same(response.json()["entities"], expected)
        info = client.get("/info").json()
        assert (info["backend"], info["precision"]) == ("onnx", "fp32")
