"""The vision worker: checks run off the caller's thread, a full queue refuses at once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from edge_agent.vision.checker import FrameInput, LabelChecker, VisionResult
from edge_agent.vision.config import VisionConfig
from edge_agent.vision.layout import LabelKind
from edge_agent.vision.worker import VisionWorker
from gatewire.messages import VisionVerdict
from simulators.labels import render_sample
from tests.vision.vision_model import model_under_test


class SlowChecker:
    """A checker whose checks wait until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def check(self, frames: Sequence[FrameInput]) -> VisionResult:
        self.calls += 1
        self.release.wait(5.0)
        return VisionResult(VisionVerdict.GENUINE, score=0.9)


FRAME = np.zeros((480, 640, 3), np.uint8)


@pytest.fixture
def blocked() -> Iterator[tuple[VisionWorker, SlowChecker]]:
    checker = SlowChecker()
    worker = VisionWorker(checker, queue_size=2)
    yield worker, checker
    checker.release.set()
    assert worker.stop()


def test_a_slow_model_does_not_block_the_submitter(monkeypatch: pytest.MonkeyPatch) -> None:
    checker = LabelChecker(VisionConfig(model_path=model_under_test(), decode_datamatrix=False))
    invoke = checker.model.interpreter.invoke
    on_thread: list[str] = []

    def slow_invoke() -> None:
        on_thread.append(threading.current_thread().name)
        time.sleep(0.3)
        invoke()

    monkeypatch.setattr(checker.model.interpreter, "invoke", slow_invoke)
    frames = render_sample(22, LabelKind.GENUINE, frames=1).frames
    with VisionWorker(checker, queue_size=4) as worker:
        started = time.perf_counter()
        futures = [worker.submit(frames) for _ in range(3)]
        assert time.perf_counter() - started < 0.05  # three 0.3 s checks queued at once
        assert not futures[-1].done()
        results = [future.result(timeout=10) for future in futures]
    assert all(r.verdict is not VisionVerdict.UNREADABLE for r in results)
    assert on_thread == ["vision"] * 3


def test_a_full_queue_answers_vision_busy_at_once_and_counts_it(
    blocked: tuple[VisionWorker, SlowChecker],
) -> None:
    worker, checker = blocked
    first = worker.submit([FRAME])
    deadline = time.monotonic() + 5
    while checker.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # wait until the worker holds the first check
    queued = [worker.submit([FRAME]) for _ in range(2)]
    started = time.perf_counter()
    refused = worker.submit([FRAME])
    assert time.perf_counter() - started < 0.05
    assert refused.done()
    result = refused.result()
    assert result.verdict is VisionVerdict.UNREADABLE
    assert result.reasons == ("vision_busy",)
    stats = worker.stats
    assert (stats.submitted, stats.busy, stats.queued) == (4, 1, 2)
    checker.release.set()
    for future in [first, *queued]:
        assert future.result(timeout=5).verdict is VisionVerdict.GENUINE
    assert worker.stats.completed == 3


def test_callbacks_get_the_result(blocked: tuple[VisionWorker, SlowChecker]) -> None:
    worker, checker = blocked
    got: list[VisionResult] = []
    done = threading.Event()

    def callback(result: VisionResult) -> None:
        got.append(result)
        done.set()

    checker.release.set()
    worker.submit([FRAME], callback)
    assert done.wait(5)
    assert got[0].verdict is VisionVerdict.GENUINE


def test_a_raising_callback_does_not_kill_the_worker(
    blocked: tuple[VisionWorker, SlowChecker],
) -> None:
    worker, checker = blocked
    checker.release.set()

    def boom(result: VisionResult) -> None:
        raise ValueError("callback bug")

    worker.submit([FRAME], boom).result(timeout=5)
    assert worker.submit([FRAME]).result(timeout=5).verdict is VisionVerdict.GENUINE


def test_stop_answers_waiting_checks_and_refuses_new_ones() -> None:
    checker = SlowChecker()
    worker = VisionWorker(checker, queue_size=4)
    running = worker.submit([FRAME])
    deadline = time.monotonic() + 5
    while checker.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    waiting = worker.submit([FRAME])
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    assert waiting.result(timeout=5).reasons == ("vision_stopped",)
    checker.release.set()
    stopper.join(5)
    assert running.result(timeout=5).verdict is VisionVerdict.GENUINE
    late = worker.submit([FRAME])
    assert late.result(timeout=1).reasons == ("vision_stopped",)
    assert worker.stop()


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        VisionWorker(SlowChecker(), queue_size=0)


def test_a_real_checker_runs_on_the_worker() -> None:
    checker = LabelChecker(VisionConfig(model_path=model_under_test()))
    sample = render_sample(21, LabelKind.GENUINE, frames=1)
    with VisionWorker(checker) as worker:
        result = worker.submit(sample.frames).result(timeout=10)
    assert result.verdict is not VisionVerdict.UNREADABLE
    assert result.item_id == sample.item_id


def test_the_asyncio_loop_keeps_ticking_while_a_check_runs(
    blocked: tuple[VisionWorker, SlowChecker],
) -> None:
    worker, checker = blocked

    async def gate() -> tuple[int, VisionResult]:
        ticks = 0
        pending = asyncio.wrap_future(worker.submit([FRAME]))
        asyncio.get_running_loop().call_later(0.2, checker.release.set)
        while not pending.done():
            ticks += 1
            await asyncio.sleep(0.01)  # the agent's serial and MQTT work would run here
        return ticks, await pending

    ticks, result = asyncio.run(gate())
    assert ticks >= 10
    assert result.verdict is VisionVerdict.GENUINE


class _Fatal(BaseException):
    """Not an Exception: nothing should swallow it, as with KeyboardInterrupt."""


def test_a_worker_thread_that_dies_answers_every_check_instead_of_hanging() -> None:
    checker = SlowChecker()
    worker = VisionWorker(checker, queue_size=4)
    died = threading.Event()
    hook = threading.excepthook
    threading.excepthook = lambda args: died.set()
    try:

        def fatal(result: VisionResult) -> None:
            raise _Fatal

        worker.submit([FRAME], fatal)
        waiting = worker.submit([FRAME])
        checker.release.set()
        assert waiting.result(timeout=5).reasons == ("vision_stopped",)
        assert died.wait(5)
    finally:
        threading.excepthook = hook
    assert worker.submit([FRAME]).result(timeout=1).reasons == ("vision_stopped",)
    assert worker.stop()
    assert worker.stats.queued == 0


def test_stop_from_a_result_callback_does_not_raise() -> None:
    checker = SlowChecker()
    checker.release.set()
    worker = VisionWorker(checker)
    outcome: list[object] = []

    def stop_here(result: VisionResult) -> None:
        try:
            outcome.append(worker.stop())
        except Exception as exc:  # the old code: "cannot join current thread"
            outcome.append(exc)

    worker.submit([FRAME], stop_here).result(timeout=5)
    assert worker.stop()
    assert outcome == [False]
