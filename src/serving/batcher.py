"""Micro-batching: requests queued from many threads are run together, bounded in size (texts) and waiting time.

One worker thread owns the predictor; callers get a `concurrent.futures.Future` per request. A batch that fails is
rerun request by request, so one bad request never fails the requests that happened to share its batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)
_STOP = object()


@dataclass
class _Request:
    items: Sequence
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """Counters since start: batches run, requests and items (texts) served, the largest batch in items."""

    batches: int = 0
    requests: int = 0
    items: int = 0
    largest_batch: int = 0


class MicroBatcher:
    """Runs `run_batch(items) -> results` (one result per item, in order) over batches of queued requests.

    A batch starts with the oldest waiting request, takes every request already queued, then waits up to
    `max_wait_ms` (counted from when the batch started forming) for more, while the batch holds at most `max_batch`
    items; a request larger than `max_batch` runs alone. `max_batch=1` serves requests one by one (no batching).
    """

    def __init__(self, run_batch: Callable[[list], list], *, max_batch: int, max_wait_ms: float) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch}, {max_wait_ms}")
        self.run_batch = run_batch
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self.stats = BatchStats()
        self._queue: queue.Queue = queue.Queue()
        self._carry: _Request | None = None  # a request that did not fit the previous batch
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="micro-batcher", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, items: Sequence) -> Future:
        """Queue one request (its items are run together, in one batch); the future gets the list of results."""
        if not self.alive:
            raise RuntimeError("the batcher is not running")
        request = _Request(list(items))
        self._queue.put(request)
        return request.future

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the requests already queued, then end the worker thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _next_batch(self) -> tuple[list[_Request], bool]:
        """The next batch and whether a stop was read."""
        first = self._carry or self._queue.get()
        self._carry = None
        if first is _STOP:
            return [], True
        batch, size = [first], len(first.items)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                nxt = self._queue.get_nowait() if remaining <= 0 else self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if nxt is _STOP:
                return batch, True
            if size + len(nxt.items) > self.max_batch:
                self._carry = nxt
                break
            batch.append(nxt)
            size += len(nxt.items)
        return batch, False

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()  # a carried request is never left behind at a stop
            live = [r for r in batch if r.future.set_running_or_notify_cancel()]  # callers may have given up
            if live:
                self._run(live)
        while True:  # anything queued after the stop gets an answer too
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is not _STOP and request.future.set_running_or_notify_cancel():
                request.future.set_exception(RuntimeError("the batcher has stopped"))

    def _run(self, batch: list[_Request]) -> None:
        items = [item for request in batch for item in request.items]
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.items += len(items)
        self.stats.largest_batch = max(self.stats.largest_batch, len(items))
        try:
            results = self.run_batch(items)
        except Exception as err:  # noqa: BLE001 - reported to the callers, never kills the worker
            if len(batch) == 1:
                logger.exception("request failed")
                batch[0].future.set_exception(err)
                return
            for request in batch:  # find the culprit: the others still get their answers
                self._run_alone(request)
            return
        begin = 0
        for request in batch:
            request.future.set_result(results[begin : begin + len(request.items)])
            begin += len(request.items)

    def _run_alone(self, request: _Request) -> None:
        try:
            request.future.set_result(self.run_batch(list(request.items)))
        except Exception as err:  # noqa: BLE001
            logger.exception("request failed")
            request.future.set_exception(err)
