"""Simulated gate I/O (``type: sim_gate_io``): records every actuation with its time, and
lets a simulator (or a test) block the photo eye and set the belt encoder's pulse rate."""

from __future__ import annotations

import threading
import time

from hardware.backoff import Backoff
from hardware.gate_io.common import BaseGateIo, OutputError
from hardware.gate_io.config import SimGateIoConfig
from hardware.gate_io.encoder import SimEncoder
from hardware.gate_io.interface import (
    Actuation,
    ActuationKind,
    LightColor,
    LightMode,
    PhotoEyeEdge,
    PhotoEyeEvent,
)
from hardware.registry import DeviceKind, register_driver

__all__ = ["SimGateIo", "build_sim_gate_io"]


class SimGateIo(BaseGateIo):
    """Gate I/O without hardware: the same timing and events, outputs only recorded.

    :attr:`actuations` and :attr:`events` are thread-safe copies of what happened.
    """

    def __init__(self, config: SimGateIoConfig, *, backoff: Backoff | None = None) -> None:
        super().__init__(config, backoff=backoff)
        self.config = config
        self._records_lock = threading.Condition()
        self._actuations: list[Actuation] = []
        self._events: list[PhotoEyeEvent] = []
        self._fail_reason: str | None = None
        self.sim_encoder: SimEncoder | None = None
        """The simulated belt encoder (``encoder:`` in the config), else None."""
        if config.encoder is not None:
            self.sim_encoder = SimEncoder(config.encoder.pulses_per_s)
            self._encoder = self.sim_encoder
        self.subscribe(self._keep_event)

    def __enter__(self) -> SimGateIo:
        self.start()
        return self

    @property
    def actuations(self) -> list[Actuation]:
        """Every diverter pulse and light change so far, in order."""
        with self._records_lock:
            return list(self._actuations)

    @property
    def events(self) -> list[PhotoEyeEvent]:
        """Every photo-eye event delivered so far, in order."""
        with self._records_lock:
            return list(self._events)

    def diverter_pulses(self) -> list[Actuation]:
        """The diverter pulses among :attr:`actuations`."""
        return [a for a in self.actuations if a.kind is ActuationKind.DIVERTER]

    def clear(self) -> None:
        """Forget the recorded actuations and events."""
        with self._records_lock:
            self._actuations.clear()
            self._events.clear()

    def wait_actuations(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` actuations are recorded."""
        deadline = time.monotonic() + timeout
        with self._records_lock:
            while len(self._actuations) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._records_lock.wait(remaining)
            return True

    # -- driving the photo eye ------------------------------------------------------------

    def simulate_item(self, enter_ts: float, leave_ts: float) -> tuple[PhotoEyeEvent, ...]:
        """An item passed the photo eye from ``enter_ts`` to ``leave_ts`` (monotonic).

        Delivers its enter and leave events at once (a clean signal needs no debounce).
        """
        if leave_ts < enter_ts:
            raise ValueError("an item leaves after it enters")
        enter = self._emit(PhotoEyeEdge.ENTER, enter_ts)
        leave = self._emit(PhotoEyeEdge.LEAVE, leave_ts)
        return enter, leave

    def trigger(self, blocked_s: float = 0.05) -> tuple[PhotoEyeEvent, ...]:
        """An item that entered the beam now and blocks it for ``blocked_s``."""
        now = time.monotonic()
        return self.simulate_item(now, now + blocked_s)

    def set_beam(self, blocked: bool, ts: float | None = None) -> None:
        """The raw photo-eye level, as a real sensor gives it (debounced like one)."""
        self._input_edge(blocked, ts)

    # -- driving the belt encoder ---------------------------------------------------------

    def set_encoder_rate(self, pulses_per_s: float, at: float | None = None) -> None:
        """The belt runs at ``pulses_per_s`` from ``at`` (monotonic; default now): speed in
        m/s × pulses per metre; 0 stops it. RuntimeError without ``encoder:`` configured."""
        if self.sim_encoder is None:
            raise RuntimeError(f"{self.name}: no simulated encoder (add encoder: to the config)")
        self.sim_encoder.set_rate(pulses_per_s, at)

    # -- faults ---------------------------------------------------------------------------

    def fail(self, reason: str = "simulated I/O fault") -> None:
        """Make outputs fail (and reopening fail) until :meth:`repair`."""
        with self._lock:
            self._fail_reason = reason

    def repair(self) -> None:
        """Undo :meth:`fail`; the background reopen then succeeds."""
        with self._lock:
            self._fail_reason = None

    # -- backend operations ---------------------------------------------------------------

    def _open_io(self) -> bool:
        self._check()
        return False

    def _close_io(self) -> None:
        pass

    def _drive_diverter(self, on: bool) -> None:
        self._check()

    def _drive_light(self, color: LightColor, mode: LightMode) -> bool:
        self._check()
        return True

    def _check(self) -> None:
        if self._fail_reason is not None:
            raise OutputError(self._fail_reason)

    def _recorded(self, actuation: Actuation) -> None:
        with self._records_lock:
            self._actuations.append(actuation)
            self._records_lock.notify_all()

    def _keep_event(self, event: PhotoEyeEvent) -> None:
        with self._records_lock:
            self._events.append(event)


@register_driver(DeviceKind.GATE_IO, SimGateIoConfig)
def build_sim_gate_io(config: SimGateIoConfig) -> SimGateIo:
    """Build a :class:`SimGateIo` from its validated config."""
    return SimGateIo(config)
