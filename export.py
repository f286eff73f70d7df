"""Export a trained span model to ONNX for ONNX Runtime inference (see docs/deployment.md).

    python export.py MODEL_DIR --output DIR [--quantize int8]

DIR then serves `predict.py DIR --backend onnx`, `serve.py DIR --backend onnx` and the Python API
(`src.serving.onnx_backend.load_onnx_predictor`). With --quantize int8 the token encoder is also written with
dynamically quantised int8 weights and used by default; the fp32 graph stays beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The command line of export.py."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="a saved model folder (e.g. outputs/run/best)")
    parser.add_argument("--output", type=Path, required=True, help="new (or empty) folder for the exported model")
    parser.add_argument("--quantize", choices=("int8",), help="also write a dynamically quantised int8 token graph")
    return parser


def quiet_exporter() -> None:
    """Keep the console to our own lines: the exporter's progress reports and tracing warnings bury them."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for name in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: list[str] | None = None) -> int:
    """Run export.py; 0 on success, 1 on a bad model folder or output folder, 2 on bad usage."""
    args = build_parser().parse_args(argv)
    if not (args.model_dir / "config.json").is_file():
        print(f"error: {args.model_dir}: not a saved model folder (no config.json)", file=sys.stderr)
        return 1
    from src.serving.onnx_export import export_model

    quiet_exporter()  # after the imports: torch sets its loggers' levels when its modules load

    try:
        manifest_path = export_model(args.model_dir, args.output, quantize=args.quantize)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for path in sorted(args.output.iterdir()):
        size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
        print(f"{path.name:28s} {size / 2**20:9.1f} MiB")
    print(f"exported {args.model_dir} -> {args.output} (default token graph: {manifest['precision']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
