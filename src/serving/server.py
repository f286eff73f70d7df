"""The HTTP service: a FastAPI app whose POST /predict answers what `SpanPredictor.predict` returns.

Requests are checked (pydantic, then the predictor's own checks) before they are queued, so a bad request gets a
4xx naming its field and never reaches a batch; good ones are micro-batched (`batcher.MicroBatcher`) across clients,
each text decoded with its own request's labels and settings. GET /health and GET /info describe the service.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Annotated

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator, model_validator

from ..inference import SpanPredictor
from .batcher import MicroBatcher


@dataclass
class ServerSettings:
    """Run settings of the service (serve.py's options; their defaults live here only)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32  # texts per batch (and windows per forward pass); 1 turns micro-batching off
    max_wait_ms: float = 5.0  # how long a batch waits for more requests once its first one has arrived
    max_text_chars: int = 20_000  # longer texts get 413 (windows make any length work; this bounds the cost)
    max_texts: int = 256  # texts per request

    def __post_init__(self) -> None:
        for name in ("port", "max_batch", "max_text_chars", "max_texts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "port" else 1):
                raise ValueError(f"server setting {name!r} must be a positive integer, got {value!r}")
        if not isinstance(self.max_wait_ms, int | float) or self.max_wait_ms < 0:
            raise ValueError(f"server setting 'max_wait_ms' must be >= 0, got {self.max_wait_ms!r}")


Threshold = Annotated[float, Field(strict=True, gt=0.0, lt=1.0)]


class PredictRequest(BaseModel):
    """POST /predict body: `text` or `texts`, `labels` (one list, or one list per text) and decoding options."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr | None = None
    texts: list[StrictStr] | None = None
    labels: list[StrictStr | list[StrictStr]]
    threshold: Threshold | None = None
    flat_ner: StrictBool | None = None
    multi_label: StrictBool = False

    @field_validator("labels")
    @classmethod
    def _labels_not_empty(cls, labels: list) -> list:
        if not labels:
            raise ValueError("must hold at least one label")
        nested = [isinstance(group, list) for group in labels]
        if any(nested) and not all(nested):
            raise ValueError("must be a list of strings or a list of lists of strings, not a mix")
        for k, group in enumerate(labels if all(nested) else [labels]):
            if not group:
                raise ValueError(f"list {k} is empty")
            if any(not label.strip() for label in group):
                raise ValueError("labels must be non-empty strings")
        return labels

    @model_validator(mode="after")
    def _one_source(self) -> PredictRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        if self.texts is not None and not self.texts:
            raise ValueError("'texts' must hold at least one text")
        if isinstance(self.labels[0], list) and len(self.labels) != len(self.all_texts):
            raise ValueError(f"'labels' has {len(self.labels)} lists for {len(self.all_texts)} texts")
        return self

    @property
    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts)


def _field_error(status: int, loc: list, msg: str) -> JSONResponse:
    """An error in FastAPI's own validation format, so clients read one shape for every 4xx."""
    return JSONResponse(status_code=status, content={"detail": [{"loc": ["body", *loc], "msg": msg}]})


def create_app(predictor: SpanPredictor, settings: ServerSettings, *, model_name: str) -> FastAPI:
    """The app serving `predictor`; the micro-batcher starts and stops with the app (lifespan)."""
    batcher = MicroBatcher(lambda queries: predictor.run(queries, batch_size=settings.max_batch),
                           max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(title="span-ner", lifespan=lifespan)
    app.state.batcher, app.state.predictor = batcher, predictor

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's format, without echoing the (possibly large) input back.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.post("/predict")
    async def predict(request: PredictRequest):
        texts = request.all_texts
        if len(texts) > settings.max_texts:
            return _field_error(413, ["texts"], f"{len(texts)} texts, the limit is {settings.max_texts} per request")
        for k, text in enumerate(texts):
            if len(text) > settings.max_text_chars:
                loc = ["text"] if request.text is not None else ["texts", k]
                return _field_error(413, loc, f"{len(text)} characters, the limit is {settings.max_text_chars}")
        try:
            queries = predictor.queries(texts, request.labels, threshold=request.threshold,
                                        flat_ner=request.flat_ner, multi_label=request.multi_label)
        except (TypeError, ValueError) as err:
            return _field_error(422, [], str(err))
        entities = await asyncio.wrap_future(batcher.submit(queries))
        return {"entities": entities}

    @app.get("/health")
    async def health():
        if not batcher.alive:
            return JSONResponse(status_code=503, content={"status": "stopped"})
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        backend = predictor.backend
        return {
            "model": model_name,
            "backend": backend.name,
            "precision": getattr(backend, "precision", "fp32"),
            "labels_cached": predictor.cached_type_texts,
            "decoding": asdict(predictor.config),
            "max_seq_length": predictor.max_seq_length,
            "sentences": predictor.sentences,
            "context_size": predictor.context_size,
            "settings": {k: v for k, v in asdict(settings).items() if k not in ("host", "port")},
            "stats": asdict(batcher.stats),
        }

    return app
