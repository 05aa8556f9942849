"""A single thread that runs short callbacks at monotonic deadlines (pulse ends, debounce)."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

__all__ = ["Scheduler"]


class Scheduler:
    """Runs each ``call_at`` callback once its deadline has passed, in deadline order.

    Callbacks must be short; one that raises is reported to ``on_error`` and the thread
    goes on. Callbacks scheduled before :meth:`start` run once it starts.
    """

    def __init__(self, name: str, on_error: Callable[[BaseException], None]) -> None:
        self._name = name
        self._on_error = on_error
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        with self._cond:
            if self._thread is not None:
                return
            self._running = True
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; callbacks not yet due are forgotten."""
        with self._cond:
            self._running = False
            self._heap.clear()
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def call_at(self, deadline: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the scheduler thread at ``deadline`` (``time.monotonic()``)."""
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._order), callback))
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._running:
                    if self._heap:
                        delay = self._heap[0][0] - time.monotonic()
                        if delay <= 0:
                            break
                        self._cond.wait(delay)
                    else:
                        self._cond.wait()
                if not self._running:
                    return
                _, _, callback = heapq.heappop(self._heap)
            try:
                callback()
            except Exception as exc:
                self._on_error(exc)
