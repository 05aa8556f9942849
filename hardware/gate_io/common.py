"""What every gate I/O backend shares: debounced photo-eye events (with the belt encoder's
count at the edge), timed diverter pulses, stack-light state, health, and reopening
outputs that failed."""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import abstractmethod
from collections.abc import Callable

from hardware.backoff import Backoff
from hardware.gate_io.config import GateIoTiming
from hardware.gate_io.debounce import Debouncer
from hardware.gate_io.encoder import EncoderSource
from hardware.gate_io.interface import (
    Actuation,
    ActuationKind,
    GateIo,
    LightColor,
    LightMode,
    PhotoEyeEdge,
    PhotoEyeEvent,
    PhotoEyeListener,
)
from hardware.gate_io.scheduler import Scheduler
from hardware.health import BurstLogger, Counters, DeviceHealth, DeviceState

__all__ = ["COUNTERS", "BaseGateIo", "OutputError"]

log = logging.getLogger(__name__)

COUNTERS = (
    "photo_eye_edges",
    "glitches",
    "items",
    "diverter_pulses",
    "pulses_clamped",
    "light_changes",
    "unwired_lights",
    "actuation_errors",
    "open_failures",
    "callback_errors",
    "encoder_pulses",
)


class OutputError(Exception):
    """A backend could not open or drive its I/O (the pins or chip went away)."""


class BaseGateIo(GateIo):
    """Gate I/O logic on top of four backend operations: open, close, drive, read input.

    Backends call :meth:`_input_edge` with each raw photo-eye level; everything above
    that (debounce, item numbering, listeners, pulse timing, health) lives here. A backend
    with a belt encoder sets :attr:`_encoder` before :meth:`start`.
    """

    def __init__(self, config: GateIoTiming, *, backoff: Backoff | None = None) -> None:
        self.name = config.name
        self.timing = config
        self._counters = Counters()
        self._burst = BurstLogger(log)
        self._backoff = backoff or Backoff(0.5, 10.0)
        self._scheduler = Scheduler(f"gate-io-{config.name}", self._scheduled_error)
        self._debouncer = Debouncer(
            config.debounce_ms / 1000, self._settled_change, self._scheduler.call_at
        )
        self._lock = threading.RLock()  # outputs and state below
        self._listeners: tuple[PhotoEyeListener, ...] = ()
        self._items = 0
        self._entered_at: float | None = None
        self._diverter_on = False
        self._diverter_off_at = 0.0
        self._lights = dict.fromkeys(LightColor, LightMode.OFF)
        self._state = DeviceState.STOPPED
        self._last_error: str | None = None
        self._reopens = 0
        self._healthy = threading.Event()
        self._encoder: EncoderSource | None = None

    # -- backend operations ---------------------------------------------------------------

    @abstractmethod
    def _open_io(self) -> bool:
        """Claim the pins; return the photo eye's current 'item present' level."""

    @abstractmethod
    def _close_io(self) -> None:
        """Release the pins (outputs off); must not raise."""

    @abstractmethod
    def _drive_diverter(self, on: bool) -> None:
        """Switch the diverter output; OutputError when it cannot."""

    @abstractmethod
    def _drive_light(self, color: LightColor, mode: LightMode) -> bool:
        """Set a lamp; False if the lamp is not wired; OutputError when it cannot."""

    def _recorded(self, actuation: Actuation) -> None:
        """Called with every actuation (the simulator keeps them)."""

    # -- Device ---------------------------------------------------------------------------

    def start(self) -> None:
        """Claim the I/O; if that fails, report unhealthy and retry with backoff."""
        with self._lock:
            if self._state is not DeviceState.STOPPED:
                return
            self._state = DeviceState.CONNECTING
        self._scheduler.start()
        self._try_open()

    def stop(self) -> None:
        """Switch every output off and release the I/O."""
        with self._lock:
            self._state = DeviceState.STOPPED
            self._healthy.clear()
            self._diverter_on = False
            self._lights = dict.fromkeys(LightColor, LightMode.OFF)
            self._close_io()
        self._scheduler.stop()

    def health(self) -> DeviceHealth:
        """State and counters: photo_eye_edges, glitches, items, diverter_pulses,
        pulses_clamped, light_changes, unwired_lights, actuation_errors, open_failures,
        callback_errors, encoder_pulses (0 without an encoder)."""
        counters = dict.fromkeys(COUNTERS, 0)
        counters.update(self._counters.snapshot())
        counters["encoder_pulses"] = self.encoder_count() or 0
        counters["photo_eye_edges"] = self._debouncer.edges
        counters["glitches"] = self._debouncer.glitches
        return DeviceHealth(self.name, self._state, counters, self._last_error, self._reopens)

    def wait_healthy(self, timeout: float) -> bool:
        return self._healthy.wait(timeout)

    # -- photo eye ------------------------------------------------------------------------

    def subscribe(self, listener: PhotoEyeListener) -> Callable[[], None]:
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not listener)

        return unsubscribe

    def item_present(self) -> bool:
        return self._debouncer.settled

    def encoder_count(self, at: float | None = None) -> int | None:
        encoder = self._encoder
        return None if encoder is None else encoder.count_at(at)

    def _input_edge(self, present: bool, ts: float | None = None) -> None:
        """A raw photo-eye level ('item present' or not) seen at ``ts`` (default: now)."""
        self._debouncer.feed(present, time.monotonic() if ts is None else ts)

    def _settled_change(self, present: bool, ts: float) -> None:
        self._emit(PhotoEyeEdge.ENTER if present else PhotoEyeEdge.LEAVE, ts)

    def _emit(self, edge: PhotoEyeEdge, ts: float) -> PhotoEyeEvent:
        wall_ts = time.time() - (time.monotonic() - ts)
        count = self.encoder_count(ts)
        with self._lock:
            if edge is PhotoEyeEdge.ENTER:
                self._items += 1
                self._entered_at = ts
                self._counters.add("items")
                event = PhotoEyeEvent(edge, ts, wall_ts, self._items, encoder_count=count)
            else:
                entered, self._entered_at = self._entered_at, None
                blocked = None if entered is None else max(0.0, ts - entered)
                event = PhotoEyeEvent(edge, ts, wall_ts, self._items, blocked, count)
            listeners = self._listeners
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                self._counters.add("callback_errors")
                if self._burst.warning("callback", "%s: photo-eye listener raised", self.name):
                    log.debug("%s: photo-eye listener raised", self.name, exc_info=True)
        return event

    # -- outputs --------------------------------------------------------------------------

    def fire_diverter(self, duration_s: float | None = None) -> Actuation:
        timing = self.timing
        duration = timing.diverter_pulse_ms / 1000 if duration_s is None else duration_s
        if not (math.isfinite(duration) and duration > 0):
            raise ValueError(f"diverter pulse must be a positive number of seconds: {duration}")
        limit = timing.max_diverter_pulse_ms / 1000
        if duration > limit:
            self._counters.add("pulses_clamped")
            self._burst.warning(
                "clamped", "%s: diverter pulse %.3f s cut to %.3f s", self.name, duration, limit
            )
            duration = limit
        with self._lock:
            now = time.monotonic()
            error = self._unusable()
            if error is None:
                try:
                    if not self._diverter_on:
                        self._drive_diverter(True)
                    self._diverter_on = True
                    self._diverter_off_at = max(self._diverter_off_at, now + duration)
                    self._scheduler.call_at(now + duration, self._end_pulse)
                    self._counters.add("diverter_pulses")
                except OutputError as exc:
                    error = self._output_failed(f"diverter: {exc}")
            return self._record(ActuationKind.DIVERTER, "diverter", "pulse", now, duration, error)

    def diverter_active(self) -> bool:
        with self._lock:
            return self._diverter_on

    def _end_pulse(self) -> None:
        with self._lock:
            if not self._diverter_on or time.monotonic() < self._diverter_off_at:
                return  # a longer pulse is running; its own end is scheduled
            self._diverter_on = False
            if self._state is DeviceState.HEALTHY:
                try:
                    self._drive_diverter(False)
                except OutputError as exc:
                    self._output_failed(f"diverter off: {exc}")

    def set_light(self, color: LightColor | str, mode: LightMode | str) -> Actuation:
        color, mode = LightColor(color), LightMode(mode)
        with self._lock:
            now = time.monotonic()
            error = self._unusable()
            if error is None:
                try:
                    if self._drive_light(color, mode):
                        self._lights[color] = mode
                        self._counters.add("light_changes")
                    else:
                        error = f"no {color.value} lamp is wired"
                        self._counters.add("unwired_lights")
                except OutputError as exc:
                    error = self._output_failed(f"{color.value} lamp: {exc}")
            return self._record(ActuationKind.LIGHT, color.value, mode.value, now, None, error)

    def lights(self) -> dict[LightColor, LightMode]:
        with self._lock:
            return dict(self._lights)

    def _record(
        self,
        kind: ActuationKind,
        target: str,
        value: str,
        ts: float,
        duration: float | None,
        error: str | None,
    ) -> Actuation:
        wall_ts = time.time() - (time.monotonic() - ts)
        actuation = Actuation(kind, target, value, ts, duration, wall_ts, error is None, error)
        self._recorded(actuation)
        return actuation

    # -- health and reopening -------------------------------------------------------------

    def _unusable(self) -> str | None:
        if self._state is DeviceState.HEALTHY:
            return None
        self._counters.add("actuation_errors")
        reason = "not started" if self._state is DeviceState.STOPPED else self._last_error
        message = f"gate I/O unavailable: {reason}"
        self._burst.warning("unusable", "%s: %s", self.name, message)
        return message

    def _try_open(self) -> None:
        with self._lock:
            if self._state not in (DeviceState.CONNECTING, DeviceState.UNHEALTHY):
                return
            try:
                present = self._open_io()
            except OutputError as exc:
                self._counters.add("open_failures")
                self._set_unhealthy(str(exc))
                self._scheduler.call_at(
                    time.monotonic() + self._backoff.next_delay(), self._try_open
                )
                return
            if self._state is DeviceState.UNHEALTHY:
                self._reopens += 1
            self._state = DeviceState.HEALTHY
            self._last_error = None
            self._backoff.reset()
            self._debouncer.reset(present)
            self._diverter_on = False
            try:
                for color, mode in self._lights.items():
                    if mode is not LightMode.OFF:
                        self._drive_light(color, mode)  # restore the lamps after a reopen
            except OutputError as exc:
                self._output_failed(f"{color.value} lamp: {exc}")
                return
        self._healthy.set()
        if present:
            log.info("%s: photo eye blocked at start (an item is in the beam)", self.name)

    def _output_failed(self, reason: str) -> str:
        """An output stopped working: close, report, and reopen in the background."""
        self._counters.add("actuation_errors")
        self._close_io()
        self._set_unhealthy(reason)
        self._scheduler.call_at(time.monotonic() + self._backoff.next_delay(), self._try_open)
        return reason

    def _set_unhealthy(self, reason: str) -> None:
        if self._state is not DeviceState.UNHEALTHY:
            log.warning("%s: %s; retrying with backoff", self.name, reason)
        self._state = DeviceState.UNHEALTHY
        self._last_error = reason
        self._healthy.clear()

    def _scheduled_error(self, exc: BaseException) -> None:
        self._counters.add("callback_errors")
        if self._burst.warning("scheduled", "%s: timer callback failed: %s", self.name, exc):
            log.debug("%s: timer callback failed", self.name, exc_info=exc)
