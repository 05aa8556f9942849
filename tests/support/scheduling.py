"""A timer thread that notes when it really ran each callback.

On a loaded machine a thread wakes late; a test then bounds a shot's lateness by the
wake-up the host gave it, and tells a late shot the code caused from one the host caused.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hardware.gate_io.scheduler import Scheduler


class WakeLog(Scheduler):
    """A :class:`Scheduler` that keeps ``(deadline, started)`` for each callback it ran."""

    def __init__(self, name: str, on_error: Callable[[BaseException], None]) -> None:
        super().__init__(name, on_error)
        self.runs: list[tuple[float, float]] = []

    def call_at(self, deadline: float, callback: Callable[[], None]) -> None:
        def noted() -> None:
            self.runs.append((deadline, time.monotonic()))
            callback()

        super().call_at(deadline, noted)

    @property
    def woke(self) -> float:
        """When the last callback started (``time.monotonic()``)."""
        return self.runs[-1][1]

    @property
    def woke_late_by(self) -> float:
        """How long after its deadline the last callback started."""
        deadline, started = self.runs[-1]
        return started - deadline
