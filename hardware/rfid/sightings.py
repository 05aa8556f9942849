"""Many reads of one tag within a window become one :class:`TagSighting`.

Emission policy (a gate wants the item ID fast, and the totals once they are known):

- **first read** — when a tag is read and no window is open for it, a window opens and,
  with ``emit_first=True`` (the default), a sighting with ``final=False`` and ``reads``
  from that one record is emitted at once: the ID reaches the gate one frame after the
  reader saw the tag.
- **window closed** — ``window_s`` after the window opened, a sighting with
  ``final=True`` carries the totals: reads, peak RSSI, every antenna, first and last
  seen. The window is fixed from the first read (not extended by later reads), so the
  final sighting is never later than ``window_s``; a tag still in the field afterwards
  opens a new window with its next read.

Every window yields exactly one final sighting (also when the driver stops), so counting
final sightings counts tag passes. Each window's EPC is parsed into a
:class:`~gatewire.identity.ParseOutcome` once, when it opens; a tag whose EPC is not a
valid item ID (an SSCC, garbage) still yields sightings, with ``outcome.ok`` False.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from gatewire.identity import ParseOutcome, parse_epc_hex
from hardware.rfid.records import TagRead

__all__ = ["SightingAggregator", "SightingQueue", "TagSighting"]


@dataclass(frozen=True, slots=True)
class TagSighting:
    """One tag seen during one window."""

    epc_hex: str
    """EPC as upper-case hex, exactly as read."""
    outcome: ParseOutcome
    """The EPC parsed as an item ID; ``outcome.ok`` is False for anything but an SGTIN."""
    reads: int
    """Reads so far in this window (the reader's per-record read counts summed)."""
    rssi_peak: int | None
    """Strongest RSSI in dBm (None when the reader does not report RSSI)."""
    antenna: int | None
    """Antenna of the strongest read."""
    antennas: tuple[int, ...]
    """Every antenna that read the tag in this window, ascending."""
    first_seen: float
    """Host monotonic time (s) of the first read of the window."""
    last_seen: float
    """Host monotonic time (s) of the latest read."""
    phase: int | None = None
    """Phase (degrees) of the strongest read, when the reader reports it."""
    final: bool = True
    """False for the first-read notice; True once the window has closed."""

    @property
    def ok(self) -> bool:
        """True when the EPC is a valid item ID."""
        return self.outcome.ok


class _Window:
    __slots__ = (
        "antenna",
        "antennas",
        "epc_hex",
        "first_seen",
        "last_seen",
        "outcome",
        "phase",
        "reads",
        "rssi_peak",
    )

    def __init__(self, epc_hex: str, outcome: ParseOutcome, read: TagRead, now: float) -> None:
        self.epc_hex = epc_hex
        self.outcome = outcome
        self.reads = read.read_count or 1
        self.rssi_peak = read.rssi
        self.antenna = read.antenna
        self.antennas = {read.antenna} if read.antenna is not None else set()
        self.phase = read.phase
        self.first_seen = now
        self.last_seen = now

    def add(self, read: TagRead, now: float) -> None:
        self.reads += read.read_count or 1
        self.last_seen = now
        if read.antenna is not None:
            self.antennas.add(read.antenna)
        if read.rssi is not None and (self.rssi_peak is None or read.rssi > self.rssi_peak):
            self.rssi_peak = read.rssi
            self.antenna = read.antenna
            self.phase = read.phase

    def sighting(self, *, final: bool) -> TagSighting:
        return TagSighting(
            self.epc_hex,
            self.outcome,
            self.reads,
            self.rssi_peak,
            self.antenna,
            tuple(sorted(self.antennas)),
            self.first_seen,
            self.last_seen,
            self.phase,
            final,
        )


class SightingAggregator:
    """Folds tag reads into per-tag windows; not thread-safe (the driver holds a lock)."""

    def __init__(
        self,
        window_s: float,
        *,
        emit_first: bool = True,
        parse: Callable[[str], ParseOutcome] = parse_epc_hex,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self.emit_first = emit_first
        self._parse = parse
        # Windows in the order they opened; all last window_s, so they close in that order.
        self._open: OrderedDict[bytes, _Window] = OrderedDict()

    @property
    def open_windows(self) -> int:
        """Tags with a window open now."""
        return len(self._open)

    def observe(self, read: TagRead, now: float) -> list[TagSighting]:
        """Add one read at host time ``now``; return the sightings it causes."""
        window = self._open.get(read.epc)
        out: list[TagSighting] = []
        if window is not None:
            if now < window.first_seen + self.window_s:
                window.add(read, now)
                return out
            del self._open[read.epc]
            out.append(window.sighting(final=True))
        epc_hex = read.epc.hex().upper()
        window = _Window(epc_hex, self._parse(epc_hex), read, now)
        self._open[read.epc] = window
        if self.emit_first:
            out.append(window.sighting(final=False))
        return out

    def expire(self, now: float) -> list[TagSighting]:
        """Close the windows whose time is up at ``now``."""
        out = []
        deadline = now - self.window_s
        while self._open:
            epc, window = next(iter(self._open.items()))
            if window.first_seen > deadline:
                break
            del self._open[epc]
            out.append(window.sighting(final=True))
        return out

    def close_all(self) -> list[TagSighting]:
        """Close every open window now (the driver is stopping)."""
        out = [w.sighting(final=True) for w in self._open.values()]
        self._open.clear()
        return out


class SightingQueue:
    """A bounded FIFO of sightings that drops the *oldest* when full (a gate wants news)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._items: deque[TagSighting] = deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()

    def put(self, sighting: TagSighting) -> bool:
        """Append; return False when the oldest sighting had to be dropped for it."""
        with self._cond:
            dropped = len(self._items) >= self._maxsize
            if dropped:
                self._items.popleft()
            self._items.append(sighting)
            self._cond.notify()
        return not dropped

    def get(self, timeout: float | None = None) -> TagSighting | None:
        """The oldest sighting, waiting up to ``timeout`` s (None: forever); None if none."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                return None
            return self._items.popleft()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
