"""What a barcode scanner delivers: one :class:`ScanEvent` per scan, and a bounded queue."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gatewire.identity import ParseOutcome
from gatewire.item import CanonicalItemId


@dataclass(frozen=True, slots=True)
class ScanEvent:
    """One scan: the read as sent, and what it names (or why it names nothing).

    An invalid read (bad check digit, unknown AI, no AIM ID when one is required…) is
    still a scan: ``valid`` is False, ``error`` says why, ``item`` is None.
    """

    raw: str
    """The read as the scanner sent it, AIM ID and GS separators kept, prefix/suffix removed."""
    outcome: ParseOutcome
    symbology: str | None
    """The AIM symbology identifier (``]d2``, ``]C1``, ``]E0``…), None if the read has none."""
    ts: float
    """``time.monotonic()`` when the bytes completing the read arrived."""
    wall_ts: float
    """``time.time()`` at the same moment."""
    device: str = "barcode"
    """Name of the scanner (its config ``name``)."""
    source: str = "barcode"

    @property
    def valid(self) -> bool:
        """True when the read names an item (``item`` is set)."""
        return self.outcome.item is not None

    @property
    def item(self) -> CanonicalItemId | None:
        """The canonical item ID, or None for an invalid scan."""
        return self.outcome.item

    @property
    def error(self) -> str | None:
        """One line saying why the scan is invalid; None when valid."""
        return self.outcome.error

    def as_json_dict(self) -> dict[str, Any]:
        """JSON-ready form: source, device, raw, symbology, valid, error, item, timestamps."""
        item = self.outcome.item
        return {
            "source": self.source,
            "device": self.device,
            "raw": self.raw,
            "symbology": self.symbology,
            "valid": item is not None,
            "error": self.outcome.error,
            "item": None if item is None else item.model_dump(mode="json"),
            "key": None if item is None else item.key,
            "ts": self.ts,
            "wall_ts": self.wall_ts,
        }


class ScanQueue:
    """A bounded queue of scans: when full, the oldest scan is dropped and counted.

    Dropping the oldest keeps what reaches a gate current; ``on_drop`` (called outside
    the lock) lets the owner log it.
    """

    def __init__(self, maxsize: int, on_drop: Callable[[ScanEvent], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.dropped = 0
        self._items: deque[ScanEvent] = deque()
        self._cond = threading.Condition()
        self._on_drop = on_drop

    def put(self, event: ScanEvent) -> bool:
        """Append ``event``; False if the oldest scan had to be dropped for it."""
        dropped: ScanEvent | None = None
        with self._cond:
            if len(self._items) >= self.maxsize:
                dropped = self._items.popleft()
                self.dropped += 1
            self._items.append(event)
            self._cond.notify()
        if dropped is not None and self._on_drop is not None:
            self._on_drop(dropped)
        return dropped is None

    def get(self, timeout: float | None = None) -> ScanEvent | None:
        """The oldest scan, waiting up to ``timeout`` seconds (forever if None); None if none."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                return None
            return self._items.popleft()

    def drain(self) -> list[ScanEvent]:
        """Every queued scan, oldest first, without waiting."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
