"""One generation run: read documents from where the output stopped, batch them, run an engine, write chunks.

The engine is chosen from the job (and from the launcher: under `accelerate launch` every process runs this);
the batches, and so the output bytes, are the same whatever the engine and however often the run was resumed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from .annotator import Batch
from .engines import AccelerateEngine, LocalEngine, ProcessPoolEngine, RayEngine
from .inputs import InputSpec, input_fingerprint, iter_documents
from .records import AnnotationSettings, Document
from .teachers import TeacherSpec, describe_teacher
from .writer import Progress, ResumableWriter, check_resumable


@dataclass(frozen=True)
class AnnotationJob:
    """A whole generation run: teacher, input, output, record settings and how to run it."""

    teacher: TeacherSpec
    input: InputSpec
    output: Path
    settings: AnnotationSettings
    chunk_size: int = 1024  # documents per durable chunk; a multiple of settings.batch_size
    engine: str = "local"  # "local" (this process, or --num-workers processes) or "ray"
    num_workers: int = 1
    ray_address: str | None = None
    overwrite: bool = False
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.chunk_size < 1 or self.chunk_size % self.settings.batch_size:
            raise ValueError(f"chunk size {self.chunk_size} must be a positive multiple of the batch size "
                             f"{self.settings.batch_size}")
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be a positive integer, got {self.num_workers}")


def matched_settings(job: AnnotationJob) -> dict:
    """What a resumed run must share with the run it continues (the manifest's `settings`)."""
    teacher = describe_teacher(job.teacher.kind, job.teacher.path)
    identity = {"type": teacher["type"], "fingerprint": teacher["fingerprint"]}
    if job.teacher.precision != "fp32":  # scores move with it; fp32 is left out, so older manifests still match
        identity["precision"] = job.teacher.precision
    return {"teacher": identity,
            "input": input_fingerprint(job.input), **job.settings.to_json()}


def make_batches(documents: Iterable[Document], batch_size: int, first_index: int) -> Iterator[Batch]:
    """Consecutive batches of `batch_size` documents, numbered from `first_index`."""
    iterator = iter(documents)
    index = first_index
    while chunk := tuple(islice(iterator, batch_size)):
        yield Batch(index, chunk)
        index += 1


def _engine(job: AnnotationJob):
    from ..launch import launcher_world_size, needs_cpu_processes

    if launcher_world_size() > 1:
        from accelerate import PartialState

        return AccelerateEngine(job.teacher, job.settings, PartialState(cpu=needs_cpu_processes(False)))
    if job.engine == "ray":
        return RayEngine(job.teacher, job.settings, num_workers=job.num_workers, address=job.ray_address)
    if job.num_workers > 1:
        return ProcessPoolEngine(job.teacher, job.settings, num_workers=job.num_workers)
    return LocalEngine(job.teacher, job.settings)


def run_annotation(job: AnnotationJob) -> Progress:
    """Annotate the input into `job.output`, resuming a run of the same settings; returns the final progress.

    Raises OutputError (another run's output), InputError, TeacherError and ValueError, before any file changes.
    """
    settings = matched_settings(job)
    progress = check_resumable(job.output, settings, overwrite=job.overwrite)  # every process checks, none writes
    if progress.complete:
        return progress
    engine = _engine(job)
    writer = None
    try:
        if engine.is_writer:
            info = {"teacher_path": str(Path(job.teacher.path).resolve()), "input_path": str(Path(job.input.path)
                    .resolve()), "engine": type(engine).__name__, "chunk_size": job.chunk_size}
            writer = ResumableWriter(job.output, settings, info, overwrite=job.overwrite)
        documents = iter_documents(job.input, skip=progress.documents)
        batches = make_batches(documents, job.settings.batch_size, progress.documents // job.settings.batch_size)
        results = engine.run(batches)
        if writer is None:
            for _ in results:  # not process 0: annotate its shares until the input ends
                pass
            return progress
        _write_chunks(writer, results, job)
        return writer.finish()
    finally:
        if writer is not None:
            writer.close()
        engine.close()


def _write_chunks(writer: ResumableWriter, results, job: AnnotationJob) -> None:
    from tqdm import tqdm

    per_chunk = job.chunk_size // job.settings.batch_size
    bar = tqdm(initial=writer.progress.documents, unit="doc", desc="annotating", file=sys.stderr,
               disable=not job.progress_bar, dynamic_ncols=True)
    with bar:
        while chunk := list(islice(results, per_chunk)):
            stats: dict[str, int] = {}
            for result in chunk:
                for key, value in result.stats.items():
                    stats[key] = stats.get(key, 0) + value
            writer.write_chunk(b"".join(r.data for r in chunk), documents=sum(r.documents for r in chunk),
                               stats=stats)
            bar.update(sum(r.documents for r in chunk))
