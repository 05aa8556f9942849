"""FrameBuffer: keeps the newest frames, hands them out in order, finds them by time."""

from __future__ import annotations

import threading

import numpy as np

from hardware.camera.frames import Frame, FrameBuffer

IMAGE = np.zeros((4, 4, 3), np.uint8)


def frame(seq: int, ts: float | None = None) -> Frame:
    return Frame(IMAGE, seq, float(seq) if ts is None else ts, 1e9 + seq, "cam", "test")


def filled(capacity: int, count: int) -> FrameBuffer:
    buffer = FrameBuffer(capacity)
    for seq in range(count):
        buffer.put(frame(seq))
    return buffer


def test_buffer_keeps_only_the_newest_frames() -> None:
    buffer = filled(3, 10)
    assert len(buffer) == 3
    assert [f.seq for f in buffer.frames_between(0, 100)] == [7, 8, 9]
    latest = buffer.latest()
    assert latest is not None
    assert latest.seq == 9


def test_get_starts_at_the_newest_frame_then_hands_out_each_frame_once() -> None:
    buffer = filled(5, 3)
    first = buffer.get(0)
    assert first is not None
    assert first.seq == 2
    assert buffer.get(0) is None
    buffer.put(frame(3))
    buffer.put(frame(4))
    got = [buffer.get(0), buffer.get(0)]
    assert [f.seq for f in got if f is not None] == [3, 4]
    assert buffer.dropped == 0


def test_frames_that_fall_out_before_get_takes_them_are_counted_as_dropped() -> None:
    drops: list[int] = []
    buffer = FrameBuffer(3, on_drop=drops.append)
    buffer.put(frame(0))
    assert buffer.get(0) is not None
    for seq in range(1, 8):  # 1..7; only 5, 6, 7 stay
        buffer.put(frame(seq))
    oldest = buffer.get(0)
    assert oldest is not None
    assert oldest.seq == 5
    assert buffer.dropped == 4
    assert drops == [4]


def test_nobody_calling_get_drops_nothing() -> None:
    assert filled(2, 50).dropped == 0


def test_get_waits_for_the_next_frame() -> None:
    buffer = filled(4, 1)
    assert buffer.get(0) is not None
    timer = threading.Timer(0.05, buffer.put, [frame(1)])
    timer.start()
    got = buffer.get(2.0)
    timer.join()
    assert got is not None
    assert got.seq == 1


def test_frames_between_selects_by_capture_time_inclusive() -> None:
    buffer = FrameBuffer(10)
    for seq, ts in enumerate([1.0, 1.5, 2.0, 2.5, 3.0]):
        buffer.put(frame(seq, ts))
    assert [f.ts for f in buffer.frames_between(1.5, 2.5)] == [1.5, 2.0, 2.5]
    assert buffer.frames_between(3.1, 4.0) == []


def test_next_after_lets_a_reader_keep_its_own_place() -> None:
    buffer = filled(3, 6)  # holds 3, 4, 5
    after_old = buffer.next_after(0, 0)
    after_four = buffer.next_after(4, 0)
    assert after_old is not None
    assert after_old.seq == 3
    assert after_four is not None
    assert after_four.seq == 5
    assert buffer.next_after(5, 0.01) is None


def test_wait_for_time_returns_once_a_later_frame_exists() -> None:
    buffer = filled(4, 3)  # ts 0, 1, 2
    assert buffer.wait_for_time(2.0, 0)
    assert not buffer.wait_for_time(2.5, 0.01)
