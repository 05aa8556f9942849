"""The gateway service's counters and its refusal log (one line per burst, not per message).

Counter names follow the heartbeat counter pattern (``[a-z0-9_.-]``): ``requests``,
``items``, ``verdict.pass``, ``refused.request.bad_mac``, ``events.recorded`` … so they can
be reported as they are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

__all__ = ["Counters", "RefusalLog"]


class Counters:
    """Monotonic named counters, safe to bump from any thread."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._counts[name] += n

    def add_many(self, counts: Iterable[tuple[str, int]]) -> None:
        """Add each ``(name, n)`` of ``counts``, all under one lock (the hot path's way)."""
        with self._lock:
            tally = self._counts
            for name, n in counts:
                tally[name] += n

    def get(self, name: str) -> int:
        """The current value of ``name`` (0 if never bumped)."""
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        """Every counter, by name."""
        with self._lock:
            return dict(sorted(self._counts.items()))


class RefusalLog:
    """Logs refused messages without flooding: the first refusal of a quiet spell is logged
    at once; those that follow within ``interval_s`` are summed up by :meth:`flush` (which
    the service calls periodically) in one line per burst."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._last_detail = ""
        self._quiet_until = 0.0

    def note(self, kind: str, detail: str) -> None:
        """Record one refusal of ``kind`` (e.g. ``request.bad_mac``); ``detail`` is one line."""
        with self._lock:
            now = self._clock()
            if now >= self._quiet_until and not self._pending:
                self._quiet_until = now + self._interval
                emit = True
            else:
                self._pending[kind] += 1
                self._last_detail = detail
                emit = False
        if emit:
            self._log.warning("refused a message: %s: %s", kind, detail)

    def flush(self) -> None:
        """Log the refusals held back since the last line, if any."""
        with self._lock:
            if not self._pending:
                return
            summary = ", ".join(f"{k} {n}" for k, n in sorted(self._pending.items()))
            total = sum(self._pending.values())
            detail = self._last_detail
            self._pending.clear()
            self._quiet_until = self._clock() + self._interval
        self._log.warning("refused %d more message(s): %s (latest: %s)", total, summary, detail)
