"""Debouncer and Scheduler: settled changes keep the first edge's time; blips vanish."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from hardware.gate_io.debounce import Debouncer
from hardware.gate_io.scheduler import Scheduler
from tests.support.waiting import wait_until


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[bool, float]] = []
        self.called_at: list[float] = []
        self.event = threading.Event()

    def __call__(self, level: bool, ts: float) -> None:
        self.changes.append((level, ts))
        self.called_at.append(time.monotonic())
        self.event.set()


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    errors: list[BaseException] = []
    timer = Scheduler("test-timer", errors.append)
    timer.start()
    yield timer
    timer.stop()
    assert errors == []


def test_change_is_reported_after_settling_with_the_first_edge_time() -> None:
    errors: list[BaseException] = []
    # started after the chatter, so a stalled test thread cannot let the change settle
    # before the check that feeding alone reports nothing
    timer = Scheduler("settle", errors.append)
    seen = Recorder()
    debouncer = Debouncer(0.02, seen, timer.call_at)
    t0 = time.monotonic()
    for offset, level in ((0.0, True), (0.001, False), (0.002, True)):  # contact chatter
        debouncer.feed(level, t0 + offset)
    assert seen.changes == []  # not settled yet: only the timer reports a change
    timer.start()
    try:
        assert seen.event.wait(5.0)
    finally:
        timer.stop()
    assert seen.changes == [(True, t0)]
    assert debouncer.settled is True
    assert seen.called_at[0] >= t0 + 0.002 + 0.02  # the last edge, then the debounce time
    assert errors == []


def test_blip_shorter_than_the_debounce_time_is_a_glitch(scheduler: Scheduler) -> None:
    seen = Recorder()
    debouncer = Debouncer(0.02, seen, scheduler.call_at)
    now = time.monotonic()
    debouncer.feed(True, now)
    debouncer.feed(False, now + 0.003)
    assert wait_until(lambda: debouncer.glitches == 1)  # counted when the blip's timer ran
    assert seen.changes == []
    assert debouncer.edges == 2


def test_repeated_levels_are_not_edges(scheduler: Scheduler) -> None:
    seen = Recorder()
    debouncer = Debouncer(0, seen, scheduler.call_at)
    debouncer.feed(False, 1.0)
    debouncer.feed(True, 2.0)
    debouncer.feed(True, 3.0)
    assert seen.changes == [(True, 2.0)]
    assert debouncer.edges == 1


def test_zero_debounce_reports_every_edge_at_once_on_the_callers_thread() -> None:
    seen = Recorder()
    debouncer = Debouncer(0, seen, lambda deadline, callback: pytest.fail("no timer needed"))
    debouncer.feed(True, 5.0)
    debouncer.feed(False, 5.001)
    assert seen.changes == [(True, 5.0), (False, 5.001)]


def test_scheduler_runs_callbacks_in_deadline_order_and_survives_errors() -> None:
    errors: list[BaseException] = []
    ran: list[str] = []
    done = threading.Event()
    timer = Scheduler("order", errors.append)
    now = time.monotonic()

    def boom() -> None:
        raise RuntimeError("boom")

    def late() -> None:
        ran.append("late")
        done.set()

    timer.call_at(now + 0.03, late)
    timer.call_at(now + 0.01, boom)
    timer.call_at(now, lambda: ran.append("early"))
    timer.start()  # callbacks scheduled before start run once it starts
    assert done.wait(5.0)
    timer.stop()
    assert ran == ["early", "late"]
    assert [str(e) for e in errors] == ["boom"]
