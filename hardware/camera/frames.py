"""Captured frames and the bounded buffer that keeps the newest of them."""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["Frame", "FrameBuffer"]


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One captured image (BGR, uint8, read-only) with when and where it was taken."""

    image: NDArray[np.uint8]
    seq: int
    """Per camera, from 0, one more for every delivered frame (across reconnects)."""
    ts: float
    """Capture time, ``time.monotonic()`` (compare with photo-eye edge times)."""
    wall_ts: float
    """Capture time, ``time.time()`` (for journals and humans)."""
    camera: str
    """Name of the camera that took it."""
    source: str
    """Where it came from: the stream URL, device, file, or the image file in a folder."""

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.image.shape[0])


class FrameBuffer:
    """The newest ``capacity`` frames, in capture order, shared by any number of readers.

    Frames stay in the buffer until newer ones push them out, so :meth:`latest` and
    :meth:`frames_between` see them whoever else reads. :meth:`get` additionally hands
    each frame out once, in order, like a queue; frames that fell out before ``get`` took
    them are counted in :attr:`dropped` (and reported to ``on_drop``).
    """

    def __init__(self, capacity: int, on_drop: Callable[[int], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError("a frame buffer holds at least one frame")
        self.capacity = capacity
        self._frames: deque[Frame] = deque(maxlen=capacity)
        self._cond = threading.Condition()
        self._cursor: int | None = None  # seq of the last frame get() returned
        self._dropped = 0
        self._on_drop = on_drop

    @property
    def dropped(self) -> int:
        """Frames that fell out of the buffer before :meth:`get` handed them out."""
        with self._cond:
            return self._dropped

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)

    def put(self, frame: Frame) -> None:
        """Add the newest frame (seq one more than the previous), pushing out the oldest."""
        with self._cond:
            if self._frames and frame.seq != self._frames[-1].seq + 1:
                raise ValueError("frames must be put in seq order without gaps")
            self._frames.append(frame)
            self._cond.notify_all()

    def latest(self) -> Frame | None:
        """The newest frame, or None before the first."""
        with self._cond:
            return self._frames[-1] if self._frames else None

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame not yet returned by ``get``, oldest first; None after ``timeout``.

        The first call returns the newest buffered frame (or waits for one).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                frame, missed = self._next_for_cursor()
                if frame is not None:
                    self._cursor = frame.seq
                    if missed:
                        self._dropped += missed
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
        if missed and self._on_drop is not None:
            self._on_drop(missed)
        return frame

    def next_after(self, seq: int, timeout: float | None = None) -> Frame | None:
        """The oldest buffered frame newer than ``seq`` (waiting up to ``timeout``).

        For readers that keep their own place; a gap in ``seq`` shows what they missed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._frames or self._frames[-1].seq <= seq:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            oldest = self._frames[0].seq
            return self._frames[max(0, seq + 1 - oldest)]

    def frames_between(self, t0: float, t1: float) -> list[Frame]:
        """Buffered frames captured at ``t0 <= ts <= t1`` (monotonic), oldest first."""
        with self._cond:
            frames = list(self._frames)
        start = bisect.bisect_left(frames, t0, key=lambda f: f.ts)
        end = bisect.bisect_right(frames, t1, key=lambda f: f.ts)
        return frames[start:end]

    def wait_for_time(self, ts: float, timeout: float) -> bool:
        """Wait until a frame captured at or after ``ts`` is buffered; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._frames or self._frames[-1].ts < ts:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def _next_for_cursor(self) -> tuple[Frame | None, int]:
        if not self._frames:
            return None, 0
        if self._cursor is None:
            return self._frames[-1], 0
        newest = self._frames[-1].seq
        if newest <= self._cursor:
            return None, 0
        oldest = self._frames[0].seq
        wanted = self._cursor + 1
        if wanted < oldest:
            return self._frames[0], oldest - wanted
        return self._frames[wanted - oldest], 0
