"""MicroBatcher on a fake model: size and wait bounds, results routed to their requests, a failing request does not
fail its batch companions, stopping answers everything queued."""

from __future__ import annotations

import threading
import time

import pytest

from src.serving.batcher import MicroBatcher


class Recorder:
    """run_batch that records each batch's items and answers item * 10; raises on the item 'bad'."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list] = []
        self.delay = delay
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()  # set once a batch is running

    def __call__(self, items: list) -> list:
        self.entered.set()
        self.release.wait(10)
        self.batches.append(list(items))
        time.sleep(self.delay)
        if "bad" in items:
            raise ValueError("bad item")
        return [item * 10 for item in items]


def test_queued_requests_share_batches_up_to_max_batch_and_keep_their_results():
    run = Recorder()
    batcher = MicroBatcher(run, max_batch=5, max_wait_ms=0)
    batcher.start()
    run.release.clear()  # hold the worker on the first batch while the rest queue up
    first = batcher.submit([1])
    assert run.entered.wait(10)
    futures = [batcher.submit([k, k + 1]) for k in range(10, 20, 2)]  # five requests of two items
    big = batcher.submit(list(range(7)))  # larger than max_batch: runs alone
    run.release.set()
    assert first.result(10) == [10]
    assert [f.result(10) for f in futures] == [[k * 10, (k + 1) * 10] for k in range(10, 20, 2)]
    assert big.result(10) == [k * 10 for k in range(7)]
    batcher.stop()
    assert run.batches == [[1], [10, 11, 12, 13], [14, 15, 16, 17], [18, 19], list(range(7))]
    assert (batcher.stats.batches, batcher.stats.requests, batcher.stats.items) == (5, 7, 18)


def test_a_batch_waits_at_most_max_wait_ms_for_companions():
    run = Recorder()
    batcher = MicroBatcher(run, max_batch=100, max_wait_ms=300)
    batcher.start()
    start = time.monotonic()
    a = batcher.submit([1])
    time.sleep(0.05)
    b = batcher.submit([2])  # arrives within the wait: same batch
    assert a.result(10) == [10] and b.result(10) == [20]
    assert 0.25 < time.monotonic() - start < 5
    assert run.batches == [[1, 2]]
    batcher.stop()


def test_max_batch_1_serves_requests_one_by_one():
    run = Recorder()
    batcher = MicroBatcher(run, max_batch=1, max_wait_ms=50)
    batcher.start()
    futures = [batcher.submit([k]) for k in range(4)]
    assert [f.result(10) for f in futures] == [[0], [10], [20], [30]]
    assert run.batches == [[0], [1], [2], [3]]
    batcher.stop()


def test_a_failing_request_fails_alone():
    run = Recorder()
    batcher = MicroBatcher(run, max_batch=10, max_wait_ms=0)
    batcher.start()
    run.release.clear()
    hold = batcher.submit([0])
    assert run.entered.wait(10)
    good, bad, other = batcher.submit([1]), batcher.submit(["bad"]), batcher.submit([3])
    run.release.set()
    assert hold.result(10) == [0] and good.result(10) == [10] and other.result(10) == [30]
    with pytest.raises(ValueError, match="bad item"):
        bad.result(10)
    assert batcher.alive and batcher.submit([4]).result(10) == [40]  # the worker lives on
    batcher.stop()
    assert not batcher.alive
    with pytest.raises(RuntimeError, match="not running"):
        batcher.submit([5])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Recorder(), max_batch=0, max_wait_ms=1)
