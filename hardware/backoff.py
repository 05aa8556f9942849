"""Exponential backoff with jitter, for reconnecting to a vanished device."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays that double from ``initial`` up to ``maximum``, each jittered by ±``jitter``.

    Jitter keeps several drivers that lost their devices at once (a USB hub reset) from
    retrying in lock step.
    """

    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2
    _next: float = field(init=False, default=0.0)
    _rng: random.Random = field(init=False, default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("backoff needs 0 < initial <= maximum")
        if self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("backoff needs factor >= 1 and 0 <= jitter < 1")
        self._next = self.initial

    def next_delay(self) -> float:
        """The delay before the next attempt; each call lengthens the following one."""
        base = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return base * (1 + self._rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        """Start again from ``initial`` (after a successful connect)."""
        self._next = self.initial
