"""Serve a trained span model over HTTP with micro-batching (FastAPI + uvicorn; see docs/deployment.md).

    python serve.py MODEL_DIR [--host 127.0.0.1 --port 8000 --backend torch|onnx --max-batch 32 --max-wait-ms 5]

POST /predict {"texts": [...] | "text": "...", "labels": [...] | [[...], ...], "threshold", "flat_ner",
"multi_label"} answers {"entities": ...}, exactly what predict() returns for those texts; GET /health, GET /info.
SIGTERM (or Ctrl-C) finishes the requests in flight and exits with status 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def _exit_cleanly(signum, frame) -> None:
    """uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to the handler it found; this
    handler makes that last step a normal exit with status 0 instead of death by signal."""
    raise SystemExit(0)


def build_parser() -> argparse.ArgumentParser:
    """The command line of serve.py; defaults come from `ServerSettings`."""
    from src.precisions import ALL_PRECISIONS
    from src.serving.server import ServerSettings

    d = ServerSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="a saved model folder, or an export.py folder with --backend onnx")
    parser.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    parser.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port})")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="torch or onnx (ONNX Runtime)")
    parser.add_argument("--precision", choices=ALL_PRECISIONS,
                        help="torch: the weights' dtype (fp32 default, bf16, fp16); onnx: the token graph (fp32, int8; "
                             "default: the export's)")
    parser.add_argument("--device", default="cpu", help="torch backend: 'cpu', 'cuda', ... (default cpu)")
    parser.add_argument("--threads", type=int, help="intra-op threads of torch / ONNX Runtime (default: theirs)")
    parser.add_argument("--max-batch", type=int, default=d.max_batch,
                        help=f"texts per micro-batch (default {d.max_batch}; 1 = no batching)")
    parser.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                        help=f"how long a batch waits for more requests (default {d.max_wait_ms})")
    parser.add_argument("--max-text-chars", type=int, default=d.max_text_chars,
                        help=f"longest text accepted, in characters (default {d.max_text_chars})")
    parser.add_argument("--max-texts", type=int, default=d.max_texts,
                        help=f"most texts in one request (default {d.max_texts})")
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run serve.py; 0 after a clean shutdown, 1 on a bad model folder, 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from src.precisions import precision_mismatch
    from src.serving.server import ServerSettings, create_app

    try:
        settings = ServerSettings(host=args.host, port=args.port, max_batch=args.max_batch,
                                  max_wait_ms=args.max_wait_ms, max_text_chars=args.max_text_chars,
                                  max_texts=args.max_texts)
    except ValueError as err:
        parser.error(str(err))
    if problem := precision_mismatch(args.backend, args.precision):
        parser.error(problem)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be a positive integer")
    import uvicorn

    from src.serving.onnx_backend import load_predictor

    try:
        predictor = load_predictor(args.model_dir, backend=args.backend, device=args.device,
                                   precision=args.precision, threads=args.threads)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    app = create_app(predictor, settings, model_name=str(args.model_dir))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
