"""A simulated conveyor: items pass a gate's photo eye, scanner, RFID field and cameras on time.

:class:`Conveyor` moves a list of :class:`BeltItem` past the gate at ``rate`` items per
second, on its own thread, driving the simulated devices the real drivers read:

- the photo eye of a :class:`~hardware.gate_io.sim.SimGateIo` (enter and leave edges);
- the barcode, written as the scanner sends it to the
  :class:`~simulators.scanner.SimulatedScanner`'s pty while the item is in its window;
- the item's tag, in the field of a :class:`~simulators.thingmagic.ThingMagicSimulator`
  from the photo eye until late in the window;
- the item's frames, shown to the :class:`~simulators.belt_camera.BeltCamera` s while it is
  in the window (frame A to the first camera, frame B to the second, or both in turn to a
  single camera; B is always captured after A).

Item ``i`` reaches the photo eye ``i / rate`` s after the belt starts. Its reads happen
inside the part of its item window that the next item does not cut off, at fixed shares of
it, so the schedule is the same on every run; what each item's trigger really was is kept
as a :class:`Passage` (monotonic and wall time) for matching the gate's journal later.
When the simulator itself falls behind (a starved CPU), the belt slips: later actions move
back by the delay, so a late read can miss its own item but never lands on the next one.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from hardware.gate_io.sim import SimGateIo
from simulators.belt_camera import BeltCamera, FrameData, decode_frame
from simulators.scanner import SimulatedScanner, wait_for_reader
from simulators.thingmagic import ThingMagicSimulator

__all__ = ["BeltItem", "Conveyor", "Passage"]

log = logging.getLogger(__name__)

MIN_READ_WINDOW_S: Final = 0.002
SCAN_AT: Final = 0.05
"""The barcode is read this share of the way into the item's read window."""
FRAME_AT: Final = 0.05
"""The cameras capture the label this share of the way into it."""
TAG_LEAVES_AT: Final = 0.80
"""The tag leaves the RFID field this share of the way into it."""
SLIP_AFTER_S: Final = 0.004
"""A device action this late (the simulator was starved of CPU) makes the belt slip: every
later action moves back by as much, so late reads never reach the next item's window."""
CAPTURE_WAIT_S: Final = 1.0
"""Longest an item waits at the photo eye for the cameras to capture the previous one."""
CAPTURE_GAP_S: Final = 0.002
PREPARE_AHEAD_S: Final = 0.2
"""An item's frames are decoded this long before it reaches the photo eye (not in its window)."""
READY_TIMEOUT_S: Final = 5.0
"""Longest the belt waits for the scanner's port to be opened and the reader to stream."""


@dataclass(frozen=True, slots=True)
class BeltItem:
    """What one item shows the gate's devices."""

    seq: int
    barcode: str | None = None
    """What the scanner reads (AIM prefix included or added by the scanner); None: none."""
    rfid_epc: str | None = None
    """The tag's EPC (hex or SGTIN URI); None: no tag."""
    frames: tuple[FrameData, ...] = ()
    """The label as the cameras see it: frame A (and B, the second lighting angle)."""


@dataclass(frozen=True, slots=True)
class Passage:
    """When one item passed the photo eye."""

    seq: int
    scheduled: float
    """``time.monotonic()`` it was due at the photo eye (after any slip of the belt)."""
    trigger: float
    """``time.monotonic()`` of its photo-eye enter edge (the agent's trigger time)."""
    trigger_wall: float
    """The same moment as ``time.time()``."""
    read_window_s: float
    """The part of its item window its reads were placed in."""


class Conveyor:
    """Moves ``items`` past the devices; :meth:`start` it once, :meth:`stop` any time."""

    def __init__(
        self,
        items: Sequence[BeltItem],
        *,
        rate: float,
        window_s: float,
        gate_io: SimGateIo,
        lead_s: float = 0.0,
        scanner: SimulatedScanner | None = None,
        rfid: ThingMagicSimulator | None = None,
        cameras: Sequence[BeltCamera] = (),
        start_delay_s: float = PREPARE_AHEAD_S,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError("rate must be a positive number of items per second")
        if not (math.isfinite(window_s) and window_s > 0 and lead_s >= 0):
            raise ValueError("window_s must be positive and lead_s not negative")
        seqs = [item.seq for item in items]
        if len(set(seqs)) != len(seqs):
            raise ValueError("item seqs must be distinct")
        self.items = list(items)
        self.rate, self.window_s, self.lead_s = rate, window_s, lead_s
        self.gate_io, self.scanner, self.rfid = gate_io, scanner, rfid
        self.cameras = list(cameras)
        self.start_delay_s = start_delay_s
        self.ready_timeout_s = ready_timeout_s
        self.errors = 0
        self.started_at: float | None = None
        """``time.monotonic()`` the first item was due (None until the belt runs)."""
        self._passages: list[Passage] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._waiting = threading.Event()  # the wait for the devices (stop() ends it)
        self._done = threading.Event()
        self._events: list[tuple[float, int, int, Callable[[], None]]] = []
        self._decoded: dict[int, Future[tuple[FrameData, ...]]] = {}
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="conveyor-decode")
        self._captures: list[threading.Event] = []  # the last item's frames, until taken
        self._slip = 0.0
        self.slips = 0
        """How often the belt slipped (the simulator fell behind)."""
        self._thread = threading.Thread(target=self._run, name="conveyor", daemon=True)
        if self.read_window_s(1.0 / rate) <= MIN_READ_WINDOW_S:
            log.warning(
                "conveyor: %.0f items/s leaves no room for reads in a %.0f ms window with a "
                "%.0f ms lead; reads may land in the next item's window",
                rate,
                window_s * 1000,
                lead_s * 1000,
            )

    # --- control -----------------------------------------------------------------------

    def start(self) -> Conveyor:
        """Run the belt on a background thread (waits for the scanner's port first)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the belt now (items not yet at the photo eye never come)."""
        self._stop.set()
        self._waiting.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every item has passed (True) or ``timeout`` passes (False)."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        """True once the belt has finished (every item passed, or stopped)."""
        return self._done.is_set()

    @property
    def passages(self) -> list[Passage]:
        """The items that reached the photo eye so far, in order."""
        with self._lock:
            return list(self._passages)

    def read_window_s(self, gap_s: float) -> float:
        """The read window of an item the next one follows ``gap_s`` later."""
        return max(MIN_READ_WINDOW_S, min(self.window_s, gap_s - self.lead_s))

    # --- the belt (conveyor thread) ----------------------------------------------------

    def _run(self) -> None:
        try:
            if not self._devices_ready():
                return
            t0 = time.monotonic() + self.start_delay_s
            self.started_at = t0
            for index, item in enumerate(self.items):
                due = t0 + index / self.rate
                self._push(due, item.seq, 0, self._arrival(index, item))
                if item.frames and self.cameras:
                    self._push(due - PREPARE_AHEAD_S, item.seq, -1, self._preparation(item))
            while self._events and not self._stop.is_set():
                due, _, _, action = self._events[0]
                delay = due + self._slip - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                heapq.heappop(self._events)
                if -delay > SLIP_AFTER_S:
                    self._slip -= delay
                    self.slips += 1
                try:
                    action()
                except Exception:
                    self.errors += 1
                    log.exception("conveyor: a device action failed")
            if not self._stop.is_set():
                self._await_captures()  # done means the cameras saw every item
        finally:
            self._decoder.shutdown(wait=False, cancel_futures=True)
            if self.rfid is not None:
                self.rfid.clear_tags()
            self._done.set()

    def _devices_ready(self) -> bool:
        """The scanner's port is open and the reader inventories (else reads are lost).
        A port nobody opens in time ends the belt before any item (an error, not a hang)."""
        if self.scanner is not None:
            waiting = threading.Event()  # set by stop() or the timeout
            timer = threading.Timer(self.ready_timeout_s, waiting.set)
            self._waiting = waiting
            if self._stop.is_set():  # stop() came before the line above
                waiting.set()
            timer.start()
            try:
                opened = wait_for_reader(self.scanner.endpoint, waiting)
            finally:
                timer.cancel()
            if not opened:
                if not self._stop.is_set():
                    self.errors += 1
                    log.error(
                        "conveyor: nobody opened the scanner's port in %.0f s: no item comes",
                        self.ready_timeout_s,
                    )
                return False
        if self.rfid is not None and not self.rfid.wait_streaming(self.ready_timeout_s):
            log.warning("conveyor: the RFID reader is not inventorying; tags may be missed")
        return not self._stop.is_set()

    def _push(self, due: float, seq: int, phase: int, action: Callable[[], None]) -> None:
        """Queue ``action`` at ``due`` (monotonic, before any slip)."""
        heapq.heappush(self._events, (due, seq, phase, action))

    def _arrival(self, index: int, item: BeltItem) -> Callable[[], None]:
        scheduled = (self.started_at or 0.0) + index / self.rate
        next_due = scheduled + 1.0 / self.rate if index + 1 < len(self.items) else math.inf

        def arrive() -> None:
            self._await_captures()
            trigger = time.monotonic()
            wall = time.time()
            window = self.read_window_s(next_due + self._slip - trigger)
            self.gate_io.simulate_item(trigger, trigger + window / 2)
            with self._lock:
                passage = Passage(item.seq, scheduled + self._slip, trigger, wall, window)
                self._passages.append(passage)
            self._plan_reads(item, trigger - self._slip, window)

        return arrive

    def _preparation(self, item: BeltItem) -> Callable[[], None]:
        """Decode the item's frames on the decoder thread (the belt thread never waits)."""

        def decode() -> tuple[FrameData, ...]:
            images = [decode_frame(frame) for frame in item.frames]
            # an undecodable frame stays as it is: the camera reports it corrupt
            return tuple(
                i if i is not None else f for i, f in zip(images, item.frames, strict=True)
            )

        def prepare() -> None:
            self._decoded[item.seq] = self._decoder.submit(decode)

        return prepare

    def _plan_reads(self, item: BeltItem, trigger: float, window: float) -> None:
        """Queue the item's reads; ``trigger`` is on the unslipped clock of the events."""
        seq = item.seq
        rfid, scanner = self.rfid, self.scanner
        if rfid is not None and item.rfid_epc is not None:
            epc = item.rfid_epc
            rfid.add_tag(epc)
            self._push(trigger + TAG_LEAVES_AT * window, seq, 3, lambda: _untag(rfid, epc))
        if scanner is not None and item.barcode is not None:
            data = scanner.encode(item.barcode)
            self._push(trigger + SCAN_AT * window, seq, 1, lambda: _send(scanner, data))
        if self.cameras and item.frames:
            ready = self._decoded.pop(seq, None)
            decoded = ready is not None and ready.done() and ready.exception() is None
            frames = ready.result() if ready is not None and decoded else item.frames
            self._push(trigger + FRAME_AT * window, seq, 2, lambda: self._show(frames))

    def _show(self, frames: tuple[FrameData, ...]) -> None:
        """Frame A to the first camera; B to the second (or the first again), after A."""
        first = self.cameras[0]
        taken = first.show(frames[0])
        self._captures.append(taken)
        for index, frame in enumerate(frames[1:], start=1):
            camera = self.cameras[min(index, len(self.cameras) - 1)]
            taken = camera.show(frame, after=taken)
            self._captures.append(taken)

    def _await_captures(self) -> None:
        """Hold the next item until the cameras captured the last one's frames: a camera
        thread starved of CPU must not stamp them inside the next item's window. The belt
        slips by the wait."""
        started = time.monotonic()
        pending = [taken for taken in self._captures if not taken.is_set()]
        self._captures.clear()
        if not pending:
            return
        for taken in pending:
            if not taken.wait(max(0.0, started + CAPTURE_WAIT_S - time.monotonic())):
                log.warning("conveyor: a camera did not take its frame in %.1f s", CAPTURE_WAIT_S)
                break
        time.sleep(CAPTURE_GAP_S)  # the camera stamps a frame just after taking it
        self._slip += time.monotonic() - started
        self.slips += 1


def _send(scanner: SimulatedScanner, data: bytes) -> None:
    if not scanner.endpoint.write(data):
        raise OSError("the scanner's port is closed")


def _untag(rfid: ThingMagicSimulator, epc: str) -> None:
    rfid.remove_tag(epc)
