"""Repeat-read suppression: the same code read again within a window is one scan."""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

DEFAULT_MAX_ENTRIES: Final = 65536


class RepeatFilter:
    """Remembers when each code was last read; a read within ``window_s`` of that is a repeat.

    The window slides: every repeat refreshes it, so an item held in front of a scanner in
    presentation mode stays one scan however long it stays there. The same code read again
    after a pause longer than the window is a new scan. ``window_s`` of 0 disables it.

    Memory is bounded by ``max_entries``; beyond it the oldest codes are forgotten (a repeat
    of a forgotten code then counts as a new scan, never the other way round). Times must
    not go backwards (use ``time.monotonic()``).
    """

    def __init__(self, window_s: float, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if window_s < 0:
            raise ValueError("window_s must be >= 0")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.window_s = window_s
        self.suppressed = 0
        self._max_entries = max_entries
        # Code -> time of its last read, least recently read first.
        self._last_seen: OrderedDict[str, float] = OrderedDict()
        self._next_expiry = float("-inf")

    def is_repeat(self, code: str, now: float) -> bool:
        """Record a read of ``code`` at monotonic time ``now``; True if it is a repeat."""
        window = self.window_s
        if window <= 0:
            return False
        last_seen = self._last_seen
        last = last_seen.get(code)
        if last is not None:
            last_seen.move_to_end(code)
        last_seen[code] = now
        if now >= self._next_expiry or len(last_seen) > self._max_entries:
            self._expire(now)
        if last is not None and now - last <= window:
            self.suppressed += 1
            return True
        return False

    def _expire(self, now: float) -> None:
        # Batched, every quarter window: a code may be remembered up to 1.25 windows, but
        # is_repeat compares times, so that never turns a new scan into a repeat. Over the
        # cap, the oldest tenth goes at once.
        last_seen = self._last_seen
        cap = self._max_entries
        keep = cap - cap // 10 if len(last_seen) > cap else cap
        cutoff = now - self.window_s
        excess = len(last_seen) - keep
        stale: list[str] = []
        for code, at in last_seen.items():
            if at >= cutoff and len(stale) >= excess:
                break
            stale.append(code)
        for code in stale:
            del last_seen[code]
        self._next_expiry = now + self.window_s / 4

    def __len__(self) -> int:
        return len(self._last_seen)

    def clear(self) -> None:
        """Forget every code."""
        self._last_seen.clear()
