"""Debouncing a photo-eye input: report a change once the input has settled."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Debouncer"]


class Debouncer:
    """Turns raw edges into settled changes.

    A change is reported once the input has stayed at the new level for ``debounce_s``;
    it carries the time of the first edge of the burst that led to it, so the item's
    time is not delayed by the filter. A blip shorter than ``debounce_s`` that returns to
    the settled level is no change (counted in :attr:`glitches`). With ``debounce_s`` 0
    every edge is reported at once, on the caller's thread.
    """

    def __init__(
        self,
        debounce_s: float,
        on_change: Callable[[bool, float], None],
        schedule: Callable[[float, Callable[[], None]], None],
        initial: bool = False,
    ) -> None:
        if debounce_s < 0:
            raise ValueError("debounce_s must be >= 0")
        self._debounce_s = debounce_s
        self._on_change = on_change
        self._schedule = schedule
        self._lock = threading.Lock()
        self._raw = initial
        self._settled = initial
        self._pending_since: float | None = None
        self._last_edge = 0.0
        self.edges = 0
        self.glitches = 0

    @property
    def settled(self) -> bool:
        """The level last reported (or the initial one)."""
        with self._lock:
            return self._settled

    def reset(self, level: bool) -> None:
        """Take ``level`` as settled without reporting it (after (re)opening the input)."""
        with self._lock:
            self._raw = self._settled = level
            self._pending_since = None

    def feed(self, level: bool, ts: float) -> None:
        """A raw edge to ``level`` at ``ts`` (``time.monotonic()``); repeats are ignored."""
        report: tuple[bool, float] | None = None
        with self._lock:
            if level == self._raw:
                return
            self._raw = level
            self._last_edge = ts
            self.edges += 1
            if self._debounce_s == 0:
                self._settled = level
                report = (level, ts)
            else:
                if self._pending_since is None and level != self._settled:
                    self._pending_since = ts
                self._schedule(ts + self._debounce_s, self._settle)
        if report is not None:
            self._on_change(*report)

    def _settle(self) -> None:
        report: tuple[bool, float] | None = None
        with self._lock:
            if self._pending_since is None:
                return
            if time.monotonic() < self._last_edge + self._debounce_s:
                return  # a later edge scheduled its own check
            since, self._pending_since = self._pending_since, None
            if self._raw == self._settled:
                self.glitches += 1
                return
            self._settled = self._raw
            report = (self._raw, since)
        self._on_change(*report)
