"""Engines: what runs `Annotator` over the batches. They only feed batches and collect results, in input order.

`LocalEngine` (this process), `ProcessPoolEngine` (--num-workers N: spawned processes on this machine),
`AccelerateEngine` (`accelerate launch annotate.py ...`: each process annotates its share of every group of
batches, process 0 gathers and writes) and `RayEngine` (--engine ray: a Ray Data `map_batches` job whose actors
each load the teacher once). Memory stays bounded: only a few batches (a window, for Ray) are in flight.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice

from .annotator import Annotator, Batch, BatchResult
from .records import AnnotationSettings
from .teachers import TeacherSpec

ENGINES = ("local", "ray")
RAY_WINDOW_BATCHES = 512  # batches per Ray Data job: the actors load the teacher once per window


def _windows(batches: Iterable[Batch], size: int) -> Iterator[list[Batch]]:
    iterator = iter(batches)
    while window := list(islice(iterator, size)):
        yield window


class LocalEngine:
    """Annotate in this process."""

    is_writer = True

    def __init__(self, spec: TeacherSpec, settings: AnnotationSettings) -> None:
        self.annotator = Annotator(spec, settings)

    def run(self, batches: Iterable[Batch]) -> Iterator[BatchResult]:
        """Results of the batches, in order."""
        for batch in batches:
            yield self.annotator(batch)

    def close(self) -> None:
        """Nothing to release."""


_WORKER: Annotator | None = None  # the teacher of a pool worker process, loaded once by `_start_worker`


def _start_worker(spec: TeacherSpec, settings: AnnotationSettings) -> None:
    global _WORKER
    _WORKER = Annotator(spec, settings)


def _annotate_in_worker(batch: Batch) -> BatchResult:
    return _WORKER(batch)


class ProcessPoolEngine:
    """Annotate in `num_workers` spawned processes, each with its own teacher; at most 2 batches per worker wait."""

    is_writer = True

    def __init__(self, spec: TeacherSpec, settings: AnnotationSettings, *, num_workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.num_workers = num_workers
        self.pool = ProcessPoolExecutor(max_workers=num_workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start_worker, initargs=(spec, settings))

    def run(self, batches: Iterable[Batch]) -> Iterator[BatchResult]:
        """Results of the batches, in order (the oldest submitted batch is always awaited first)."""
        pending: deque = deque()
        for batch in batches:
            pending.append(self.pool.submit(_annotate_in_worker, batch))
            if len(pending) >= 2 * self.num_workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        """Stop the worker processes."""
        self.pool.shutdown(cancel_futures=True)


class AccelerateEngine:
    """One process of `accelerate launch` (or torchrun): groups of batches are split between the processes with
    `PartialState.split_between_processes`, the results gathered to every process; only process 0 writes."""

    def __init__(self, spec: TeacherSpec, settings: AnnotationSettings, state) -> None:
        self.state = state
        self.is_writer = state.is_main_process
        self.annotator = Annotator(spec, settings)

    def run(self, batches: Iterable[Batch]) -> Iterator[BatchResult]:
        """On process 0, every result in order; on the others nothing (they annotate and send)."""
        from accelerate.utils import gather_object

        for group in _windows(batches, self.state.num_processes):
            with self.state.split_between_processes(group) as mine:
                results = [self.annotator(batch) for batch in mine]
            gathered = gather_object(results)  # concatenated in process order = the group's order
            if self.is_writer:
                yield from gathered

    def close(self) -> None:
        """Wait until every process is done."""
        self.state.wait_for_everyone()


class RayAnnotator:
    """The Ray Data callable class: each actor loads the teacher once; a row carries one `Batch` as JSON."""

    def __init__(self, spec: TeacherSpec, settings: AnnotationSettings) -> None:
        self.annotator = Annotator(spec, settings)

    def __call__(self, rows: dict) -> dict:
        import numpy as np

        results = [self.annotator(Batch.from_json(str(text))) for text in rows["batch"]]
        return {
            "index": np.array([r.index for r in results], dtype=np.int64),
            "documents": np.array([r.documents for r in results], dtype=np.int64),
            "data": np.array([r.data.decode("utf-8") for r in results], dtype=object),
            "stats": np.array([json.dumps(r.stats) for r in results], dtype=object),
        }


class RayEngine:
    """A Ray Data job per window of batches: `from_items` -> `map_batches(RayAnnotator)` over `num_workers` actors.

    Uses the Ray cluster this process is connected to (`ray.init(address=...)` first, or `--ray-address`), else
    starts a local one. Order is kept (`preserve_order`) and checked.
    """

    is_writer = True

    def __init__(self, spec: TeacherSpec, settings: AnnotationSettings, *, num_workers: int,
                 address: str | None = None, cpus_per_worker: float = 1.0) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self.spec, self.settings = spec, settings
        self.num_workers, self.cpus_per_worker = num_workers, cpus_per_worker

    def run(self, batches: Iterable[Batch]) -> Iterator[BatchResult]:
        """Results of the batches, in order."""
        import ray

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        for window in _windows(batches, RAY_WINDOW_BATCHES):
            dataset = ray.data.from_items([{"batch": batch.to_json()} for batch in window]).map_batches(
                RayAnnotator, fn_constructor_kwargs={"spec": self.spec, "settings": self.settings}, batch_size=1,
                concurrency=self.num_workers, num_cpus=self.cpus_per_worker,
            )
            for expected, row in zip(window, dataset.iter_rows(), strict=True):
                if int(row["index"]) != expected.index:
                    raise RuntimeError(f"Ray returned batch {row['index']} where batch {expected.index} was due")
                yield BatchResult(int(row["index"]), int(row["documents"]), str(row["data"]).encode("utf-8"),
                                  json.loads(row["stats"]))

    def close(self) -> None:
        """Leave the Ray cluster running (the caller may own it)."""
