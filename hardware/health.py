"""Driver health: state, error counters, and logging once per burst of bad input."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class DeviceState(StrEnum):
    """Where a driver is in its life."""

    STOPPED = "stopped"
    CONNECTING = "connecting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """A snapshot of one driver's health, safe to hand to another thread."""

    name: str
    state: DeviceState
    counters: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    reconnects: int = 0

    @property
    def healthy(self) -> bool:
        """True while the device is connected and working."""
        return self.state is DeviceState.HEALTHY


class Counters:
    """Thread-safe named counters (frames, errors, discarded bytes...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        with self._lock:
            self._counts[name] += amount

    def get(self, name: str) -> int:
        """Current value of ``name`` (0 if never counted)."""
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        """A copy of all counters."""
        with self._lock:
            return dict(self._counts)


class BurstLogger:
    """Logs the first event of a burst, then stays quiet until the burst ends.

    A burst ends after ``quiet_s`` without events; the next event logs again and says
    how many were suppressed meanwhile. Garbage on a serial line thus costs one log line
    per burst, not one per byte.
    """

    def __init__(self, logger: logging.Logger, quiet_s: float = 5.0) -> None:
        self._logger = logger
        self._quiet_s = quiet_s
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def warning(self, kind: str, message: str, *args: object) -> bool:
        """Log ``message`` unless a burst of ``kind`` is ongoing; True if it was logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            self._last[kind] = now
            if last is not None and now - last < self._quiet_s:
                self._suppressed[kind] += 1
                return False
            suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += f" ({suppressed} similar suppressed in the previous burst)"
        self._logger.warning(message, *args)
        return True
