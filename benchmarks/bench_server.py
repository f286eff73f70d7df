"""HTTP server throughput and latency with 1, 8 and 32 concurrent clients, micro-batching on vs off.

    python benchmarks/bench_server.py [--model MODEL_DIR] [--backend torch|onnx] [--precision P] [--threads N]
                                      [--max-wait-ms MS] [--data FILE.jsonl] [--requests 320]

For each mode serve.py runs as its own process on a free local port: "batched" with --max-batch 32 and
--max-wait-ms (default 5), "unbatched" with --max-batch 1 (each request alone); both with --threads intra-op threads
(default 1) and --precision. Every client is an asyncio task of this process (aiohttp) with its own HTTP connection
that sends one sentence per request, back to back, until --requests requests have been answered at that concurrency
(a bounded loop; localhost only). Reported per mode and concurrency: requests (= sentences) per
second over the wall time, and p50/p99 latency of the requests. Without --model an untrained head on the embedded
backbone is used (saved to a temporary folder; --backend onnx exports it there first). Sentences: --data texts,
else the embedded WNUT-16 demo test split.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import REPO_ROOT, machine_summary, markdown_table, quiet_libraries  # noqa: E402

CONCURRENCY = (1, 8, 32)
LABELS = ["person", "location", "organization", "miscellaneous"]
START_TIMEOUT = 600  # seconds; a busy 2-core machine needs minutes to import torch and load a model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a saved model folder, or an export with --backend onnx")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--data", type=Path, help="JSONL with a 'text' field (default: the embedded demo test split)")
    parser.add_argument("--labels", default=",".join(LABELS), help="comma-separated labels sent with each request")
    parser.add_argument("--requests", type=int, default=320, help="requests answered per mode and concurrency")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="the batched server's --max-wait-ms")
    parser.add_argument("--max-batch", type=int, default=32, help="the batched server's --max-batch")
    parser.add_argument("--threads", type=int, default=1, help="the server's intra-op threads")
    parser.add_argument("--precision", help="serve.py --precision (torch: fp32, bf16, fp16; onnx: fp32, int8)")
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    return parser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """serve.py in a subprocess on 127.0.0.1; stopped with SIGTERM."""

    def __init__(self, model: Path, backend: str, extra: list[str]) -> None:
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "serve.py", str(model), "--backend", backend, "--port", str(self.port),
                   "--log-level", "warning", *extra]
        # stderr to a file, not a pipe nobody reads while the server runs (a full pipe would block the server).
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
                                        stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"serve.py exited with {self.process.returncode}: {self.log.read()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("serve.py did not start in time")
            time.sleep(0.5)

    def stats(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/info", timeout=10).json()["stats"]

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=60)


def load(url: str, texts: list[str], labels: list[str], *, clients: int, requests: int) -> dict:
    """`clients` concurrent clients send one text per request until `requests` are answered; throughput, latencies.

    The clients are asyncio tasks on one aiohttp session, each with its own keep-alive connection: a load generator
    this light leaves the server what CPU there is (client threads with a synchronous client took a visible share of
    a 2-core machine and its GIL; RESULTS.md, section 6).
    """
    import asyncio

    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []

    async def run() -> float:
        counter = iter(range(requests))  # shared: exactly `requests` requests in all

        async def client(session: aiohttp.ClientSession) -> None:
            for k in counter:
                body = {"text": texts[k % len(texts)], "labels": labels}
                start = time.perf_counter()
                async with session.post(f"{url}/predict", json=body) as response:
                    payload = await response.read()
                    if response.status != 200:
                        errors.append(payload[:200].decode("utf-8", "replace"))
                latencies.append(time.perf_counter() - start)

        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            start = time.perf_counter()
            await asyncio.gather(*(client(session) for _ in range(clients)))
            return time.perf_counter() - start

    wall = asyncio.run(run())
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"requests_per_s": requests / wall, "p50_ms": 1000 * quantile(0.5), "p99_ms": 1000 * quantile(0.99),
            "wall_s": wall}


def read_texts(path: Path | None) -> list[str]:
    if path is None:
        from src.data import load_demo_dataset

        return [r["text"] for r in load_demo_dataset("wnut16_demo")["test"]]
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    labels = [x.strip() for x in args.labels.split(",") if x.strip()]
    texts = read_texts(args.data)
    modes = {"batched": ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)],
             "unbatched": ["--max-batch", "1", "--max-wait-ms", "0"]}
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            import torch

            from src.config import SpanModelConfig
            from src.model import SpanModel

            torch.manual_seed(0)
            model = Path(tmp) / "model"
            SpanModel.from_config(SpanModelConfig()).save_pretrained(model)
            if args.backend == "onnx":
                from src.serving.onnx_export import export_model

                export_model(model, Path(tmp) / "exported", quantize="int8")
                model = Path(tmp) / "exported"
        print(f"machine: {machine_summary()}")
        print(f"model: {args.model or 'untrained head, all-MiniLM-L6-v2'} | backend {args.backend} | precision "
              f"{args.precision or 'default'} | server threads "
              f"{args.threads} | {args.requests} requests per cell, one sentence each | labels {labels}")
        precision = ["--precision", args.precision] if args.precision else []
        for mode, extra in modes.items():
            server = Server(model, args.backend, [*extra, "--threads", str(args.threads), *precision])
            try:
                load(server.url, texts, labels, clients=4, requests=16)  # warm-up: caches, kernels
                for clients in CONCURRENCY:
                    before = server.stats()
                    result = load(server.url, texts, labels, clients=clients, requests=args.requests)
                    after = server.stats()
                    batches = after["batches"] - before["batches"]
                    result["mean_batch"] = (after["items"] - before["items"]) / max(1, batches)
                    figures[f"{mode} c{clients}"] = result
            finally:
                code = server.stop()
            print(f"{mode}: server exited with status {code}")
    rows = [(mode, clients, f"{r['requests_per_s']:.1f}", f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}",
             f"{r['mean_batch']:.1f}")
            for mode in modes for clients in CONCURRENCY for r in [figures[f"{mode} c{clients}"]]]
    print(markdown_table(["mode", "clients", "requests/s", "p50 ms", "p99 ms", "texts per batch"], rows))
    for clients in CONCURRENCY:
        ratio = figures[f"batched c{clients}"]["requests_per_s"] / figures[f"unbatched c{clients}"]["requests_per_s"]
        print(f"{clients} clients: batched throughput = {ratio:.2f} x unbatched")
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
