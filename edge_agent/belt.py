"""When the diverter fires for an item: when the item reaches it, not when the verdict comes.

Without an encoder the belt is taken to run at its configured speed: the diverter fires
``scan_to_reject_m / speed_m_s - actuation`` after the item's trigger. With an encoder
(``belt.encoder.pulses_per_m`` and a gate I/O that counts pulses) the item's position is
the belt's travel since its trigger, and :class:`BeltScheduler` keeps re-checking it: the
first check comes at the earliest moment the item could be in reach (belt at its top
speed), each later one at the earliest moment again, and once the item is near, at the
moment the current speed predicts; the diverter fires when the item is one actuation time
(at the current speed) from the diverter. A belt that slows or stops delays the shot, one
that speeds up (never past its top speed) is caught within ``step_s``. The verification
deadline stays computed for the top speed (the earliest an item can arrive).

An encoder that stops counting while items still pass the photo eye (a broken wire, a
slipping wheel) would leave every item "not arrived yet" and never diverted: a photo-eye
leave with no pulses during the block latches :attr:`DiverterTiming.encoder_fault`, after
which every decision is late (held) and scheduled shots fall back to top-speed timing.

No I/O here: the pulse count comes from the gate I/O (:class:`PulseSource`), the timer
from the caller (``Scheduler.call_at``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from edge_agent.profile import BeltSettings
from hardware.gate_io.interface import PhotoEyeEdge, PhotoEyeEvent

__all__ = ["BeltGeometry", "BeltScheduler", "DiverterTiming", "FireCallback", "PulseSource"]

log = logging.getLogger(__name__)

FireCallback = Callable[[float], None]
"""Called with the lag in seconds past the moment the diverter had to fire (0 on time)."""
_SPEED_PULSES: Final = 8
"""The speed is measured over at least this many pulses at top speed (coarse encoders)."""
_OVERSPEED: Final = 1.05  # measured speed above top speed × this is reported
_STALL_BLOCK_S: Final = 0.02
"""A photo-eye block at least this long with no encoder pulse means the encoder is stuck."""


class PulseSource(Protocol):
    """The gate I/O's encoder count (``GateIo.encoder_count``)."""

    def encoder_count(self, at: float | None = None) -> int | None:
        """Pulses counted up to ``at`` (monotonic; default now); None without an encoder."""
        ...


@dataclass(frozen=True, slots=True)
class BeltGeometry:
    """What the timing needs from the profile's ``belt:`` section."""

    scan_to_reject_m: float
    max_speed_m_s: float
    actuation_s: float
    pulses_per_m: float | None = None
    """None: no encoder, the belt runs at ``max_speed_m_s``."""

    def __post_init__(self) -> None:
        positive = (self.scan_to_reject_m, self.max_speed_m_s)
        if not all(math.isfinite(x) and x > 0 for x in positive):
            raise ValueError("scan_to_reject_m and max_speed_m_s must be positive")
        if not (math.isfinite(self.actuation_s) and self.actuation_s >= 0):
            raise ValueError("actuation_s must be >= 0")
        if self.pulses_per_m is not None and not (
            math.isfinite(self.pulses_per_m) and self.pulses_per_m > 0
        ):
            raise ValueError("pulses_per_m must be positive")

    @classmethod
    def from_settings(cls, belt: BeltSettings) -> BeltGeometry:
        """From a profile's ``belt:`` section."""
        return cls(
            belt.scan_to_reject_m,
            belt.speed_m_s,
            belt.actuation_ms / 1000,
            None if belt.encoder is None else belt.encoder.pulses_per_m,
        )

    @property
    def fixed_divert_s(self) -> float:
        """Seconds after the trigger to fire at top speed (the no-encoder timing)."""
        return self.scan_to_reject_m / self.max_speed_m_s - self.actuation_s


class DiverterTiming:
    """Where an item is and how long until the diverter must fire for it (thread-safe).

    ``source`` is the gate I/O; encoder timing is used when the geometry has
    ``pulses_per_m`` and the source counts pulses. ``speed_window_s``: the belt speed is
    the travel over this last stretch of time (longer for a coarse encoder: at least
    8 pulses at top speed).
    """

    def __init__(
        self,
        geometry: BeltGeometry,
        source: PulseSource | None = None,
        *,
        speed_window_s: float = 0.02,
    ) -> None:
        if not speed_window_s > 0:
            raise ValueError("speed_window_s must be positive")
        self.geometry = geometry
        self._source = source
        ppm = geometry.pulses_per_m
        coarse = 0.0 if ppm is None else _SPEED_PULSES / (ppm * geometry.max_speed_m_s)
        self._window = max(speed_window_s, coarse)
        self._fault: str | None = None
        self._lock = threading.Lock()
        self.encoder = (
            geometry.pulses_per_m is not None
            and source is not None
            and source.encoder_count() is not None
        )
        """True when items are timed by the encoder."""

    @property
    def encoder_fault(self) -> str | None:
        """Why the encoder is not trusted (latched until restart), or None."""
        with self._lock:
            return self._fault

    def trigger_count(self, trigger_ts: float) -> int | None:
        """The encoder count at an item's trigger (None without encoder timing)."""
        if not self.encoder or self._source is None:
            return None
        return self._source.encoder_count(trigger_ts)

    def time_to_fire(
        self, trigger_ts: float, now: float | None = None, *, trigger_count: int | None = None
    ) -> float:
        """Seconds from ``now`` until the diverter must fire for the item triggered at
        ``trigger_ts`` (negative: that moment has passed; ``inf``: the belt stands still
        with the item short of it). ``trigger_count`` defaults to the count at the trigger."""
        now = time.monotonic() if now is None else now
        position = self._position(trigger_ts, now, trigger_count)
        if position is None:
            return trigger_ts + self.geometry.fixed_divert_s - now
        remaining_m, speed = position
        act = self.geometry.actuation_s
        if speed <= 0:
            return math.inf if remaining_m > 0 else -act
        return remaining_m / speed - act

    def earliest_time_to_fire(
        self, trigger_ts: float, now: float | None = None, *, trigger_count: int | None = None
    ) -> float:
        """Like :meth:`time_to_fire`, but with the belt at its top speed from ``now`` on:
        the soonest the diverter may have to fire (what must be ready by then)."""
        now = time.monotonic() if now is None else now
        position = self._position(trigger_ts, now, trigger_count)
        if position is None:
            return trigger_ts + self.geometry.fixed_divert_s - now
        remaining_m, speed = position
        return remaining_m / max(speed, self.geometry.max_speed_m_s) - self.geometry.actuation_s

    def late(
        self, trigger_ts: float, now: float | None = None, *, trigger_count: int | None = None
    ) -> bool:
        """A decision made at ``now`` is late: the item passed the point where the diverter
        had to fire (by belt travel with an encoder), or the encoder is not trusted."""
        if self.encoder and self.encoder_fault is not None:
            return True
        return self.time_to_fire(trigger_ts, now, trigger_count=trigger_count) < 0

    def remaining_and_speed(
        self, trigger_ts: float, now: float, trigger_count: int | None = None
    ) -> tuple[float, float] | None:
        """(metres from the item to the diverter, belt speed in m/s) by the encoder; None
        when the item is timed by the clock (no encoder, or an encoder fault)."""
        return self._position(trigger_ts, now, trigger_count)

    def on_photo_eye(self, event: PhotoEyeEvent) -> None:
        """Subscribe to the gate I/O: an item that blocked the beam for a while with no
        encoder pulse meanwhile means the encoder is stuck (latches the fault)."""
        if not self.encoder or event.edge is not PhotoEyeEdge.LEAVE:
            return
        blocked = event.blocked_s
        if blocked is None or blocked < _STALL_BLOCK_S or event.encoder_count is None:
            return
        assert self._source is not None
        entered = self._source.encoder_count(event.ts - blocked)
        if entered is not None and event.encoder_count - entered <= 0:
            reason = (
                f"belt encoder counted no pulse while item {event.item} blocked the photo "
                f"eye for {blocked * 1000:.0f} ms"
            )
            self.latch_fault(reason)

    def latch_fault(self, reason: str) -> None:
        """Stop trusting the encoder until the agent restarts (every decision late: held)."""
        with self._lock:
            first = self._fault is None
            self._fault = self._fault or reason
        if first:
            log.error("%s: items are held until the agent restarts", reason)

    def _position(
        self, trigger_ts: float, now: float, trigger_count: int | None
    ) -> tuple[float, float] | None:
        ppm = self.geometry.pulses_per_m
        source = self._source
        if not self.encoder or ppm is None or source is None or self.encoder_fault is not None:
            return None
        start = source.encoder_count(trigger_ts) if trigger_count is None else trigger_count
        current = source.encoder_count(now)
        before = source.encoder_count(now - self._window)
        if start is None or current is None or before is None:
            return None
        travelled = (current - start) / ppm
        speed = (current - before) / ppm / self._window
        return self.geometry.scan_to_reject_m - travelled, speed


class BeltScheduler:
    """Fires a callback when an item is one actuation time from the diverter.

    ``call_at(deadline, callback)`` runs a callback at a monotonic deadline on a timer
    thread (``hardware.gate_io.scheduler.Scheduler.call_at``). ``step_s``: the longest
    gap between checks once the item could be in reach at top speed (the worst lateness
    if the belt jumps to top speed); ``tolerance_s``: a shot this close counts as due.
    """

    def __init__(
        self,
        timing: DiverterTiming,
        call_at: Callable[[float, Callable[[], None]], None],
        *,
        step_s: float = 0.002,
        tolerance_s: float = 0.0005,
    ) -> None:
        if not (step_s > 0 and tolerance_s >= 0):
            raise ValueError("step_s must be positive and tolerance_s >= 0")
        self.timing = timing
        self._call_at = call_at
        self._step = step_s
        self._tolerance = tolerance_s
        self._lock = threading.Lock()
        self.checks = 0
        """Timer callbacks run so far (cost: a handful per item at full speed)."""
        self.overspeed = 0
        """Checks that measured the belt faster than its configured top speed (then the
        first check, the deadline and possibly the shot come too late: fix speed_m_s)."""
        self.errors = 0
        """Checks that could not read the belt's position: the shot then fires at once with
        an infinite lag (the item may not be at the diverter: check it by hand) and the
        encoder fault is latched."""

    def when_reached(
        self, trigger_ts: float, callback: FireCallback, *, trigger_count: int | None = None
    ) -> None:
        """Call ``callback(lag_s)`` on the timer thread when the diverter must fire for the
        item triggered at ``trigger_ts`` (at once if that moment has passed: ``lag_s`` says
        by how much). ``trigger_count``: the encoder count at the trigger, if known (the
        photo-eye event's ``encoder_count``); else it is read back from the gate I/O.

        The first check is at the top-speed time (no item can be in reach before it);
        without an encoder that check fires."""
        timing = self.timing
        count = trigger_count
        if timing.encoder and count is None:
            count = timing.trigger_count(trigger_ts)
        first = trigger_ts + timing.geometry.fixed_divert_s
        self._call_at(first, lambda: self._check(trigger_ts, count, callback))

    def _check(self, trigger_ts: float, count: int | None, callback: FireCallback) -> None:
        with self._lock:
            self.checks += 1
        now = time.monotonic()
        geometry = self.timing.geometry
        try:
            position = self.timing.remaining_and_speed(trigger_ts, now, count)
        except Exception as exc:  # never lose the shot: fire now, flagged, and trust no more
            with self._lock:
                self.errors += 1
            log.exception("belt position unreadable: the diverter fires blind")
            self.timing.latch_fault(f"belt encoder unreadable: {exc}")
            callback(math.inf)  # the item may not be there yet: checked by hand
            return
        if position is None:  # no encoder (or a faulty one): the top-speed time, now past
            callback(max(0.0, now - (trigger_ts + geometry.fixed_divert_s)))
            return
        remaining_m, speed = position
        if speed > geometry.max_speed_m_s * _OVERSPEED:
            with self._lock:
                self.overspeed += 1
                first = self.overspeed == 1
            if first:
                log.error(
                    "belt runs at %.2f m/s, faster than belt.speed_m_s %.2f: diverter shots "
                    "and deadlines may be late",
                    speed,
                    geometry.max_speed_m_s,
                )
        act = geometry.actuation_s
        due = math.inf if speed <= 0 else remaining_m / speed - act
        if remaining_m <= 0:
            due = min(due, -act)
        if due <= self._tolerance:
            callback(max(0.0, -due))
            return
        earliest = remaining_m / max(geometry.max_speed_m_s, speed) - act
        delay = max(earliest, min(due, self._step))
        self._call_at(now + delay, lambda: self._check(trigger_ts, count, callback))
