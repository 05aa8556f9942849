"""Item assembly: photo-eye triggers and device reads become one record per item.

Pure logic, no I/O, no threads: the agent loop feeds triggers, reads and frame references
with their ``time.monotonic()`` timestamps and calls :meth:`ItemAssembler.advance` with
the current time; it returns the items whose window has closed.

- **Windows.** In ``photo_eye`` mode an enter edge at ``t`` opens a window
  ``[t - lead, t + window)`` (belt travel ÷ belt speed); the next item's window cuts it
  short, so windows never overlap and several items can be between the scan point and the
  reject point at once. In ``quiet_gap`` mode (no photo eye) the first read after a quiet
  gap opens a window, which ends ``quiet_gap`` after its last read or ``window`` after it
  opened, whichever comes first. Camera frames never open a window.
- **Order.** Inputs are taken in timestamp order ``grace`` (+ ``lead``) after they
  happen, so a read delivered a little late still lands in its window. A read that comes
  later than that lands in its window only if that window is still open; otherwise it is
  counted (``reads_late``) and dropped. A late photo-eye edge still opens a window (a
  physical item must get a decision), marked ``window.late_trigger``.
- **IDs.** Reads are parsed with :func:`~gatewire.identity.parse_item_id` (RFID EPC hex
  with :func:`~gatewire.identity.parse_epc_hex`); garbage is counted, never raised. IDs
  agree when GTIN, serial, batch and expiry are equal or absent on one side; the most
  specific ID (ties: source priority, then earliest) is the item, IDs that disagree with
  it go to ``also_read`` with reason ``read.mismatch`` (the gateway's code for it), and a
  window without a valid ID gets ``read.none`` (plus ``read.invalid`` if garbage was read).
"""

from __future__ import annotations

import heapq
import math
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from edge_agent.profile import GateProfile, TriggerMode
from gatewire.identity import ParseOutcome, parse_epc_hex, parse_item_id
from gatewire.item import CanonicalItemId
from gatewire.messages import MAX_ALSO_READ, ReadSource
from hardware.gate_io.interface import PhotoEyeEdge, PhotoEyeEvent

if TYPE_CHECKING:
    from hardware.barcode.events import ScanEvent
    from hardware.camera.frames import Frame
    from hardware.rfid.sightings import TagSighting

__all__ = [
    "READ_INVALID",
    "READ_MISMATCH",
    "READ_NONE",
    "WINDOW_LATE_TRIGGER",
    "AssembledItem",
    "AssemblySettings",
    "FrameRef",
    "ItemAssembler",
    "SourceRead",
    "frame_order",
]

READ_NONE: Final = "read.none"
"""No source read a valid item ID in the window."""
READ_INVALID: Final = "read.invalid"
"""With ``read.none``: something was read, but nothing that parses as an item ID."""
READ_MISMATCH: Final = "read.mismatch"
"""Sources read IDs that name different items (the others are in ``also_read``)."""
WINDOW_LATE_TRIGGER: Final = "window.late_trigger"
"""The photo-eye edge arrived after its reads were taken: reads may be missing."""
DEFAULT_PRIORITY: Final = (ReadSource.BARCODE, ReadSource.RFID, ReadSource.CAMERA)
_TRIGGER, _INPUT = 0, 1  # at equal times a trigger goes first: the read is its item's


@dataclass(frozen=True, slots=True)
class SourceRead:
    """One ID read by a device: as read, when, and (once parsed) what it names."""

    source: ReadSource
    raw: str
    ts: float
    """``time.monotonic()`` of the read."""
    device: str = ""
    outcome: ParseOutcome | None = None
    """The parsed ID; None until the assembler parses it."""

    @classmethod
    def from_scan(cls, event: ScanEvent) -> SourceRead:
        """A barcode scan (already parsed by the scanner driver)."""
        return cls(ReadSource.BARCODE, event.raw, event.ts, event.device, event.outcome)

    @classmethod
    def from_sighting(cls, sighting: TagSighting, device: str = "rfid") -> SourceRead:
        """An RFID tag sighting, timed at its first read."""
        return cls(ReadSource.RFID, sighting.epc_hex, sighting.first_seen, device, sighting.outcome)


@dataclass(frozen=True, slots=True)
class FrameRef:
    """A camera frame, by reference (the image stays in the camera's buffer)."""

    camera: str
    seq: int
    ts: float

    @classmethod
    def from_frame(cls, frame: Frame) -> FrameRef:
        """The reference of a captured frame."""
        return cls(frame.camera, frame.seq, frame.ts)


def frame_order(ref: FrameRef) -> tuple[float, str, int]:
    """How a closed window orders its frames: by time, then camera and sequence number."""
    return ref.ts, ref.camera, ref.seq


@dataclass(frozen=True, slots=True)
class AssembledItem:
    """One item window, closed: what was read and what it names."""

    window_id: str
    opened_at: float
    """Start of the window (monotonic s): trigger - lead, or the first read."""
    closed_at: float
    """End of the window (monotonic s), exclusive."""
    trigger_ts: float | None
    """The photo-eye edge; None in quiet-gap mode."""
    item: CanonicalItemId | None
    sources: tuple[ReadSource, ...]
    """Sources whose reads agree with ``item``, in priority order."""
    also_read: tuple[CanonicalItemId, ...]
    """IDs read in the window that disagree with ``item`` (at most MAX_ALSO_READ)."""
    reasons: tuple[str, ...]
    frames: tuple[FrameRef, ...]
    reads: tuple[SourceRead, ...]
    """Every read of the window, parsed, in time order."""
    invalid_reads: int

    def reads_by_source(self) -> dict[str, list[str]]:
        """The reads as the journal stores them: source → raw reads."""
        out: dict[str, list[str]] = {}
        for read in self.reads:
            out.setdefault(read.source.value, []).append(read.raw)
        return out


@dataclass(frozen=True, slots=True)
class AssemblySettings:
    """Window timing (seconds), from a gate profile or given directly."""

    mode: TriggerMode
    window_s: float
    lead_s: float = 0.0
    quiet_gap_s: float = 0.15
    grace_s: float = 0.02

    def __post_init__(self) -> None:
        values = (self.window_s, self.lead_s, self.quiet_gap_s, self.grace_s)
        if not all(math.isfinite(v) for v in values):
            raise ValueError("window timings must be finite")
        if self.window_s <= 0 or self.quiet_gap_s <= 0 or self.lead_s < 0 or self.grace_s < 0:
            raise ValueError("window_s and quiet_gap_s must be > 0, lead_s and grace_s >= 0")

    @classmethod
    def from_profile(cls, profile: GateProfile) -> AssemblySettings:
        """The timings a gate profile sets (belt travel ÷ belt speed)."""
        return cls(
            mode=profile.trigger.mode,
            window_s=profile.belt.window_s,
            lead_s=profile.belt.lead_s,
            quiet_gap_s=profile.trigger.quiet_gap_ms / 1000,
            grace_s=profile.trigger.read_grace_ms / 1000,
        )


@dataclass(slots=True)
class _Window:
    id: str
    start: float
    end: float
    trigger_ts: float | None
    last_read: float
    late_trigger: bool = False
    reads: list[SourceRead] = field(default_factory=list)
    frames: list[FrameRef] = field(default_factory=list)

    def holds(self, ts: float) -> bool:
        return self.start <= ts < self.end


_Input = SourceRead | FrameRef | float  # a float is a photo-eye trigger time


class ItemAssembler:
    """Turns triggers, reads and frames into :class:`AssembledItem` records.

    Not thread-safe: one agent loop owns it. ``id_prefix`` makes window ids unique across
    agent restarts (the journal refuses a duplicate); the default is random.
    """

    def __init__(
        self,
        settings: AssemblySettings,
        *,
        id_prefix: str | None = None,
        priority: tuple[ReadSource, ...] = DEFAULT_PRIORITY,
        parse: Callable[[str], ParseOutcome] = parse_item_id,
        parse_epc: Callable[[str], ParseOutcome] = parse_epc_hex,
    ) -> None:
        self.settings = settings
        self.id_prefix = id_prefix if id_prefix is not None else uuid.uuid4().hex[:12]
        self._rank = {source: i for i, source in enumerate(priority)}
        self._parse, self._parse_epc = parse, parse_epc
        self._pending: list[tuple[float, int, int, _Input]] = []
        self._order = 0
        self._horizon = -math.inf  # inputs at or before this time have been taken
        self._open: list[_Window] = []  # by start
        self._next_window = 1
        self.counters: Counter[str] = Counter(
            dict.fromkeys(
                (
                    "triggers",
                    "triggers_late",
                    "triggers_ignored",
                    "reads",
                    "reads_invalid",
                    "reads_unassigned",
                    "reads_late",
                    "frames",
                    "frames_unassigned",
                    "frames_late",
                    "inputs_bad_time",
                    "windows_opened",
                    "windows_closed",
                ),
                0,
            )
        )

    @property
    def open_windows(self) -> int:
        """Windows opened and not yet returned."""
        return len(self._open)

    # --- inputs ----------------------------------------------------------------------

    def trigger(self, ts: float) -> None:
        """The photo eye saw an item enter at ``ts`` (ignored, counted, in quiet-gap mode)."""
        if not _finite(ts):
            self.counters["inputs_bad_time"] += 1
            return
        if self.settings.mode is not TriggerMode.PHOTO_EYE:
            self.counters["triggers_ignored"] += 1
            return
        self.counters["triggers"] += 1
        key = ts - self.settings.lead_s
        if key <= self._horizon:
            self._late_trigger(ts)
            return
        self._push(key, _TRIGGER, float(ts))

    def photo_eye(self, event: PhotoEyeEvent) -> None:
        """A gate I/O photo-eye event: enter edges trigger, leave edges are ignored."""
        if event.edge is PhotoEyeEdge.ENTER:
            self.trigger(event.ts)

    def read(self, read: SourceRead) -> None:
        """An ID read (barcode, RFID, camera DataMatrix); parsed here if not yet."""
        if not _finite(read.ts):
            self.counters["inputs_bad_time"] += 1
            return
        if read.outcome is None:
            parse = self._parse_epc if read.source is ReadSource.RFID else self._parse
            read = replace(read, outcome=parse(read.raw))
        self.counters["reads"] += 1
        if read.outcome is None or not read.outcome.ok:
            self.counters["reads_invalid"] += 1
        if read.ts <= self._horizon:
            self._late_input(read)
            return
        self._push(read.ts, _INPUT, read)

    def frame(self, frame: FrameRef) -> None:
        """A camera frame (attached to the window it was taken in, if any)."""
        if not _finite(frame.ts):
            self.counters["inputs_bad_time"] += 1
            return
        self.counters["frames"] += 1
        if frame.ts <= self._horizon:
            self._late_input(frame)
            return
        self._push(frame.ts, _INPUT, frame)

    # --- time ------------------------------------------------------------------------

    def advance(self, now: float) -> list[AssembledItem]:
        """Take inputs up to ``now - grace - lead``; return the items closed by then."""
        if not _finite(now):
            return []
        horizon = now - self.settings.grace_s - self.settings.lead_s
        if horizon <= self._horizon:
            return []
        while self._pending and self._pending[0][0] <= horizon:
            key, _, _, value = heapq.heappop(self._pending)
            self._take(key, value)
        self._horizon = horizon
        return self._close(lambda w: w.end <= horizon)

    def flush(self) -> list[AssembledItem]:
        """Take every input and close every window now (the agent is stopping)."""
        while self._pending:
            key, _, _, value = heapq.heappop(self._pending)
            self._horizon = max(self._horizon, key)
            self._take(key, value)
        return self._close(lambda _w: True)

    # --- internals -------------------------------------------------------------------

    def _push(self, key: float, kind: int, value: _Input) -> None:
        self._order += 1
        heapq.heappush(self._pending, (key, kind, self._order, value))

    def _new_window(self, start: float, end: float, trigger_ts: float | None) -> _Window:
        window = _Window(f"{self.id_prefix}-{self._next_window:08d}", start, end, trigger_ts, start)
        self._next_window += 1
        self.counters["windows_opened"] += 1
        return window

    def _take(self, key: float, value: _Input) -> None:
        """Apply one input in time order (``key`` at or after every input taken so far)."""
        if isinstance(value, float):
            window = self._new_window(key, value + self.settings.window_s, value)
            if self._open and self._open[-1].end > key:
                self._open[-1].end = max(self._open[-1].start, key)  # the next item cuts it
            self._open.append(window)
            return
        if isinstance(value, FrameRef):
            holder = next((w for w in reversed(self._open) if w.holds(value.ts)), None)
            if holder is None:
                self.counters["frames_unassigned"] += 1
            else:
                holder.frames.append(value)
            return
        current = self._open[-1] if self._open else None
        if self.settings.mode is TriggerMode.QUIET_GAP:
            if current is None or not current.holds(value.ts):
                current = self._new_window(value.ts, value.ts, None)
                self._open.append(current)
            current.last_read = value.ts
            current.end = min(
                value.ts + self.settings.quiet_gap_s, current.start + self.settings.window_s
            )
        else:
            current = next((w for w in reversed(self._open) if w.holds(value.ts)), None)
            if current is None:
                self.counters["reads_unassigned"] += 1
                return
        current.reads.append(value)

    def _late_input(self, value: SourceRead | FrameRef) -> None:
        """An input whose time was already taken: into its window if still open."""
        for window in reversed(self._open):
            if window.holds(value.ts):
                if isinstance(value, FrameRef):
                    window.frames.append(value)
                else:
                    window.reads.append(value)
                return
        self.counters["frames_late" if isinstance(value, FrameRef) else "reads_late"] += 1

    def _late_trigger(self, ts: float) -> None:
        """A photo-eye edge whose window start has passed: open what is left of it."""
        self.counters["triggers_late"] += 1
        start = self._horizon
        end = max(start, ts + self.settings.window_s)
        later = [w for w in self._open if w.trigger_ts is not None and w.trigger_ts > ts]
        if later:
            end = max(start, min(end, later[0].start))
        for window in self._open:
            if window not in later and window.end > start:
                window.end = max(window.start, start)
        window = self._new_window(start, end, ts)
        window.late_trigger = True
        self._open.append(window)
        self._open.sort(key=lambda w: (w.start, w.id))

    def _close(self, due: Callable[[_Window], bool]) -> list[AssembledItem]:
        closing = [w for w in self._open if due(w)]
        if not closing:
            return []
        self._open = [w for w in self._open if not due(w)]
        self.counters["windows_closed"] += len(closing)
        closing.sort(key=lambda w: (w.end, w.start, w.id))
        return [self._assemble(w) for w in closing]

    def _assemble(self, window: _Window) -> AssembledItem:
        reads = tuple(sorted(window.reads, key=lambda r: r.ts))
        valid = [(r, r.outcome.item) for r in reads if r.outcome is not None and r.outcome.item]
        invalid = len(reads) - len(valid)
        reasons: list[str] = []
        item: CanonicalItemId | None = None
        sources: list[ReadSource] = []
        also: list[CanonicalItemId] = []
        if valid:
            rank = self._rank
            _, item = min(
                valid,
                key=lambda rv: (-_specificity(rv[1]), rank.get(rv[0].source, len(rank)), rv[0].ts),
            )
            seen = {_fields(item)}
            for read, other in valid:
                if _compatible(item, other):
                    if read.source not in sources:
                        sources.append(read.source)
                elif _fields(other) not in seen:
                    seen.add(_fields(other))
                    also.append(other)
            sources.sort(key=lambda s: rank.get(s, len(rank)))
            if also:
                reasons.append(READ_MISMATCH)
        else:
            reasons.append(READ_NONE)
            if invalid:
                reasons.append(READ_INVALID)
        if window.late_trigger:
            reasons.append(WINDOW_LATE_TRIGGER)
        return AssembledItem(
            window_id=window.id,
            opened_at=window.start,
            closed_at=window.end,
            trigger_ts=window.trigger_ts,
            item=item,
            sources=tuple(sources),
            also_read=tuple(also[:MAX_ALSO_READ]),
            reasons=tuple(reasons),
            frames=tuple(sorted(window.frames, key=frame_order)),
            reads=reads,
            invalid_reads=invalid,
        )


def _finite(ts: object) -> bool:
    if type(ts) is float:  # the usual case, checked first
        return math.isfinite(ts)
    return isinstance(ts, _NUMBERS) and not isinstance(ts, bool) and math.isfinite(ts)


_NUMBERS: Final = (int, float)


def _fields(item: CanonicalItemId) -> tuple[object, ...]:
    return (item.gtin, item.serial, item.batch, item.expiry)


def _specificity(item: CanonicalItemId) -> int:
    return sum(x is not None for x in (item.serial, item.batch, item.expiry))


def _compatible(a: CanonicalItemId, b: CanonicalItemId) -> bool:
    """Same GTIN, and serial, batch and expiry equal wherever both name them."""
    pairs = ((a.serial, b.serial), (a.batch, b.batch), (a.expiry, b.expiry))
    return a.gtin == b.gtin and all(x is None or y is None or x == y for x, y in pairs)
