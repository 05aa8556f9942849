"""The gate agent: device events in, one timed, journaled decision per item out.

One agent thread owns the :class:`~edge_agent.assembly.ItemAssembler` and the
:class:`~edge_agent.journal.Journal` (SQLite connections stay on the thread that opened
them). Everything else reaches it as a message on one queue: device events
(:meth:`GateAgent.on_photo_eye`, :meth:`on_scan`, :meth:`on_sighting`, :meth:`on_frame`,
called from the drivers' threads), vision results (worker thread), verification outcomes
(MQTT threads) and diverter actuations (scheduler thread). The thread sleeps on the queue
until a message comes or the next item window is due to close: no polling while idle.

Per closed item: label check on the vision worker (if the gate has vision and the window
has frames) → journal the item → :meth:`VerifyClient.submit` with the deadline
``trigger + profile.deadline_s`` (items without an ID are not asked) → :func:`fuse` →
journal the decision (durable, with its gate event, before acting) → notify the outbox →
REJECT and HOLD fire the diverter when the item reaches it, ``trigger + travel - actuation
time`` at the belt's top speed, or with an encoder by belt travel (:mod:`edge_agent.belt`;
never when the verdict arrives) → journal the actuation. A decision made after that
moment (by travel, with an encoder) is journaled late as HOLD with reason
``decision.late`` and the amber lamp blinks (the item has passed the diverter: pull it by
hand). On start, items a crashed run left undecided are held
(:meth:`Journal.hold_undecided`).

Early label checks: with a photo eye, the label check starts as soon as the frames it will
use have arrived (the first frame of cameras A and B, or a single camera's first
``early_frames``, taken at or after the latest trigger within its window), on the vision
worker, while the window is still open for reads. At the close the check is used only if
the window's own frame selection is exactly those frames; otherwise it is checked again
then. The read window no longer waits for the model.

Group commit: the thread handles every message waiting in its queue as one journal batch
(:meth:`Journal.batch`, one fsync), and only after that commit asks the gateway (the items
of a batch together), notifies the outbox or schedules the diverter, so "durable before
acted on" holds at any rate; a PASS whose write or batch commit fails is held and diverted
instead, and one failing action does not stop the others. Stopping lets the scheduled
diverter shots fire first. The loop also drives the verify client
(:meth:`VerifyClient.pump`: due batches sent, late items expired), so a request is sent
from this thread, with no hand-over to another.
"""

from __future__ import annotations

import heapq
import logging
import math
import queue
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from edge_agent.assembly import (
    AssembledItem,
    AssemblySettings,
    FrameRef,
    ItemAssembler,
    SourceRead,
    frame_order,
)
from edge_agent.belt import BeltGeometry, BeltScheduler, DiverterTiming
from edge_agent.decision import FusedDecision, VerifyOutcome, fuse
from edge_agent.journal import GateIdentity, Journal, JournalError
from edge_agent.profile import DecisionPolicy, GateProfile, TriggerMode
from edge_agent.verify_client import VerifyClient, VerifyItem
from edge_agent.vision.checker import FrameInput, VisionResult, unreadable
from edge_agent.vision.worker import VisionWorker
from gatewire.messages import Decision
from hardware.gate_io.interface import GateIo, LightColor, LightMode, PhotoEyeEdge, PhotoEyeEvent
from hardware.gate_io.scheduler import Scheduler
from hardware.registry import build_device

if TYPE_CHECKING:
    from edge_agent.outbox import Outbox
    from hardware.barcode.events import ScanEvent
    from hardware.camera.frames import Frame
    from hardware.rfid.sightings import TagSighting

__all__ = [
    "DECISION_LATE",
    "DIVERTER_LAG_TOLERANCE_S",
    "JOURNAL_FAILED",
    "AgentTiming",
    "GateAgent",
]

log = logging.getLogger(__name__)

DECISION_LATE: Final = "decision.late"
"""The decision came after the item passed the diverter (held: pull it by hand)."""
JOURNAL_FAILED: Final = "journal.failed"
"""The item could not be journaled (outbox full, disk full): held, never passed."""
_IDLE_TICK_S: Final = 0.05  # wake-up while windows are open but no close time is known
_FRAMES_KEPT: Final = 24
"""Frames kept for windows still open: 60 ms of two frames per item at 200 items/s (a
640×480 frame is ~0.9 MB, so this bounds the agent's image memory to ~22 MB)."""
DIVERTER_LAG_TOLERANCE_S: Final = 0.01
"""A diverter shot later than this past its moment may miss the item (a starved host): it is
counted (``diverter_late``), logged and the amber lamp blinks so the item is checked by hand."""
_BATCH_MAX: Final = 256  # messages handled per journal commit (group commit)
_EARLY_KEPT: Final = 8
"""Early label checks kept for windows not yet closed (a few items' worth)."""
_RECENT_FRAMES: Final = 8
"""Frame references remembered for the next early check (frames may beat their trigger)."""
FrameKey = tuple[tuple[str, int], ...]
"""The frames a label check used, as (camera, seq) pairs in check order."""


@dataclass(frozen=True, slots=True)
class AgentTiming:
    """Belt timing in seconds after an item's trigger (photo-eye edge or first read)."""

    deadline_s: float
    """The decision must exist by then (verification deadline)."""
    divert_s: float
    """When to fire the diverter: scan-to-reject travel minus actuation time."""

    @classmethod
    def from_profile(cls, profile: GateProfile) -> AgentTiming:
        belt = profile.belt
        return cls(profile.deadline_s, belt.travel_s - belt.actuation_ms / 1000)


@dataclass(slots=True)
class _Item:
    assembled: AssembledItem
    trigger: float  # monotonic
    trigger_count: int | None = None  # belt encoder count at the trigger
    vision: VisionResult | None = None
    journaled: bool = False
    extra: tuple[str, ...] = field(default_factory=tuple)


class GateAgent:
    """The main loop of one gate. Start with :meth:`start`, stop with :meth:`stop`."""

    def __init__(
        self,
        *,
        assembler: ItemAssembler,
        open_journal: Callable[[], Journal],
        verify: VerifyClient,
        gate_io: GateIo,
        timing: AgentTiming,
        policy: DecisionPolicy,
        vision: VisionWorker | None = None,
        outbox: Outbox | None = None,
        scheduler: Scheduler | None = None,
        label_id_required: bool = False,
        camera_order: tuple[str, ...] = (),
        belt: DiverterTiming | None = None,
        early_frames: int = 0,
    ) -> None:
        """``label_id_required``: the label check reads the label's DataMatrix, which must
        name the item for its verdict to count (see :func:`~edge_agent.decision.fuse`);
        ``camera_order``: the cameras' names, lighting angle A first; ``belt``: times the
        diverter by belt travel (encoder) and judges lateness by it; None: at
        ``timing.divert_s`` after the trigger; ``early_frames``: how many frames a single
        camera's label check uses (1 or 2; several cameras: one each of the first two), so
        the check may start before the window closes; 0: only at the close."""
        self.camera_order = camera_order
        self.assembler, self.verify, self.gate_io = assembler, verify, gate_io
        self.label_id_required = label_id_required
        self.timing, self.policy = timing, policy
        self.vision, self.outbox = vision, outbox
        self._open_journal = open_journal
        self._journal: Journal | None = None
        self._scheduler = scheduler or Scheduler("agent-diverter", self._scheduler_error)
        self.belt = belt
        self._belt_scheduler = (
            None if belt is None else BeltScheduler(belt, self._scheduler.call_at)
        )
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._closes: list[float] = []  # monotonic times a window may close (heap)
        self._frames: OrderedDict[tuple[str, int], FrameInput] = OrderedDict()
        self._frames_lock = threading.Lock()
        self.early_frames = early_frames if vision is not None else 0
        self._early: OrderedDict[FrameKey, Future[VisionResult]] = OrderedDict()
        self._recent: deque[FrameRef] = deque(maxlen=_RECENT_FRAMES)
        self._last_trigger = -math.inf  # monotonic time of the latest photo-eye enter edge
        self._counters: Counter[str] = Counter(
            dict.fromkeys(
                (
                    "items",
                    "passed",
                    "rejected",
                    "held",
                    "late",
                    "recovered",
                    "diverter_late",
                    "agent_errors",
                    "vision_early",
                ),
                0,
            )
        )
        self._counters_lock = threading.Lock()
        self._in_flight = 0
        self._queued = 0  # messages put and not yet handled
        self._deferred: list[Callable[[], object]] | None = None  # run after the batch commits
        self._asks: list[tuple[_Item, VerifyItem, float]] = []  # sent after the batch commits
        self._passes: list[tuple[_Item, float]] = []  # PASSes the batch journaled (divert_at)
        self._shots = 0  # diverter shots scheduled and not yet fired
        self._idle = threading.Condition()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gate-agent", daemon=True)
        verify.pumped = True  # this loop sends the batches and expires deadlines
        self._verify_due = math.inf  # monotonic time verify.pump() wants to run again

    @classmethod
    def from_profile(
        cls,
        profile: GateProfile,
        *,
        key: bytes | None = None,
        gate_io: GateIo | None = None,
        vision: VisionWorker | None = None,
        outbox: Outbox | None = None,
    ) -> GateAgent:
        """An agent with the profile's assembly, journal, verification and timing; the key
        defaults to the profile's key source, the gate I/O to its ``devices.gate_io``
        (built, not started). ValueError when the key cannot be loaded."""
        key = profile.gate.load_key() if key is None else key
        if gate_io is None:
            device = build_device(profile.devices.gate_io)
            assert isinstance(device, GateIo)
            gate_io = device
        identity = GateIdentity(profile.gate.site, profile.gate.id, key)
        j = profile.journal
        return cls(
            assembler=ItemAssembler(AssemblySettings.from_profile(profile)),
            open_journal=lambda: Journal.open(
                j.path, identity, durability=j.durability, max_backlog=j.max_backlog
            ),
            verify=VerifyClient.from_profile(profile, key),
            gate_io=gate_io,
            timing=AgentTiming.from_profile(profile),
            policy=profile.policy,
            vision=vision,
            outbox=outbox,
            label_id_required=profile.vision is not None and profile.vision.decode_datamatrix,
            camera_order=tuple(c.name for c in profile.devices.cameras),
            belt=DiverterTiming(BeltGeometry.from_settings(profile.belt), gate_io),
            early_frames=_early_frames(profile),
        )

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Open the journal, hold what a crash left undecided, start the loop."""
        self._scheduler.start()
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("gate agent did not start")
        if self._start_error is not None:
            raise RuntimeError(f"gate agent could not start: {self._start_error}")

    def stop(self, timeout: float = 10.0) -> None:
        """Close the open windows, decide what is in flight, stop the loop."""
        self._put("stop", None)
        self._thread.join(timeout)
        self._scheduler.stop()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no window is open and every item is decided (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queued or self._closes or self._in_flight or self.assembler.open_windows:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, _IDLE_TICK_S))
            return True

    def counters(self) -> dict[str, int]:
        """For the heartbeat: items, passed, rejected, held, late, recovered (held at start),
        diverter_late (shots past their moment), vision_early (items whose label check
        started before their window closed)."""
        with self._counters_lock:
            return dict(self._counters)

    # --- device events (any thread) ----------------------------------------------------

    def on_photo_eye(self, event: PhotoEyeEvent) -> None:
        """A photo-eye edge (subscribe this to the gate I/O)."""
        if self.belt is not None:
            self.belt.on_photo_eye(event)  # a stuck encoder shows here
        self._put("eye", event)

    def on_scan(self, event: ScanEvent) -> None:
        """A barcode scan."""
        self._put("read", SourceRead.from_scan(event))

    def on_sighting(self, sighting: TagSighting) -> None:
        """An RFID tag sighting."""
        self._put("read", SourceRead.from_sighting(sighting))

    def on_read(self, read: SourceRead) -> None:
        """Any ID read (e.g. a camera DataMatrix)."""
        self._put("read", read)

    def on_frame(self, frame: Frame) -> None:
        """A camera frame; the last few images are kept for the label check."""
        with self._frames_lock:
            self._frames[(frame.camera, frame.seq)] = frame.image
            while len(self._frames) > _FRAMES_KEPT:
                self._frames.popitem(last=False)
        self._put("frame", FrameRef.from_frame(frame))

    # --- the loop (agent thread) -------------------------------------------------------

    def _run(self) -> None:
        try:
            self._journal = self._open_journal()
            held = self._journal.hold_undecided()
            self._count("recovered", len(held))
            if held:
                log.warning("gate agent: held %d items left undecided by a crash", len(held))
                self._notify_outbox()
        except (JournalError, OSError, ValueError) as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            while self._step():
                pass
        finally:
            self._journal.close()

    def _step(self) -> bool:
        """Handle the waiting messages (and due window closes) as one journal batch; False
        once stopped.

        Group commit: everything the batch writes is committed with one fsync, and what the
        gate does about it (ask the gateway, notify the outbox, fire the diverter) runs only
        after that commit (:meth:`_after_commit`).
        """
        timeout: float | None = None
        now = time.monotonic()
        if self._closes:
            timeout = max(0.0, min(self._closes[0], self._verify_due) - now)
        elif self._verify_due < math.inf:
            timeout = max(0.0, self._verify_due - now)
        elif self.assembler.open_windows:
            timeout = _IDLE_TICK_S
        try:
            messages = [self._inbox.get(timeout=timeout)]
        except queue.Empty:
            messages = [("tick", None)]
        while len(messages) < _BATCH_MAX:
            try:
                messages.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        stopping = False
        self._deferred, self._passes = [], []
        try:
            assert self._journal is not None
            with self._journal.batch():
                for kind, value in messages:
                    if kind == "stop":
                        stopping = True
                    elif kind != "tick":
                        self._handle_guarded(kind, value)
                now = time.monotonic()
                while self._closes and self._closes[0] <= now:
                    heapq.heappop(self._closes)
                for assembled in self.assembler.advance(now):
                    self._closed(assembled)
        except JournalError as exc:  # the commit failed: act anyway, fail closed
            log.error("gate agent: journal batch not committed: %s", exc)
            self._unjournal_asks()
            self._unjournal_passes()
        finally:
            deferred, self._deferred = self._deferred, None
            self._passes = []
        self._ask()
        self._pump_verify()
        for action in deferred:
            try:
                action()
            except Exception:  # one failing action must not drop the shots after it
                log.exception("gate agent: action after the journal commit failed")
        handled = sum(kind != "tick" for kind, _ in messages)
        with self._idle:
            self._queued -= handled
        if stopping:
            self._shutdown()
            return False
        self._wake_idle()
        return True

    def _handle_guarded(self, kind: str, value: Any) -> None:
        """:meth:`_handle`; a bug in one message's handling is counted (``agent_errors``),
        logged and flagged on the amber lamp, and the loop goes on with the next message
        instead of the agent thread dying (after which nothing would be diverted)."""
        try:
            self._handle(kind, value)
        except JournalError:
            raise  # the batch is lost: handled by the caller (held and diverted)
        except Exception:
            self._count("agent_errors")
            log.exception("gate agent: handling a %s message failed", kind)
            self._after_commit(lambda: self.gate_io.set_light(LightColor.AMBER, LightMode.BLINK))
            item = value[0] if kind in ("vision", "verified") else None
            if isinstance(item, _Item):  # its decision failed: hold and divert it
                self._in_flight -= 1
                self._count("held")
                divert_at = item.trigger + self.timing.divert_s
                self._after_commit(lambda: self._schedule_fire(item, divert_at))

    def _after_commit(self, action: Callable[[], object]) -> None:
        """Run ``action`` once the current journal batch is durable (now, outside one)."""
        if self._deferred is None:
            action()
        else:
            self._deferred.append(action)

    def _unjournal_asks(self) -> None:
        """The items of a batch that was not committed are not journaled: held, unasked."""
        asks, self._asks = self._asks, []
        for item, _, _ in asks:
            item.journaled, item.extra = False, (JOURNAL_FAILED,)
            self._decide(item, None)

    def _unjournal_passes(self) -> None:
        """A PASS whose journal write was not committed is not durable: hold and divert it."""
        passes, self._passes = self._passes, []
        for item, divert_at in passes:
            self._unpass(item, divert_at)

    def _unpass(self, item: _Item, divert_at: float) -> None:
        log.error("gate agent: PASS of %s not journaled; holding it", item.assembled.window_id)
        item.journaled = False
        self._count("passed", -1)
        self._count("held")
        self._after_commit(lambda: self._schedule_fire(item, divert_at))

    def _ask(self) -> None:
        """Ask the gateway about the items of the batch just committed, together."""
        if not self._asks:
            return
        asks, self._asks = self._asks, []
        futures = self.verify.submit_all([(request, deadline) for _, request, deadline in asks])
        for (item, _, _), future in zip(asks, futures, strict=True):
            future.add_done_callback(self._on_verified(item))

    def _pump_verify(self) -> None:
        """Let the verify client send what is due and expire what is late."""
        if self.verify.pumped:
            self._verify_due = time.monotonic() + self.verify.pump()

    def _on_verified(self, item: _Item) -> Callable[[Future[VerifyOutcome]], None]:
        return lambda future: self._put("verified", (item, _result(future)))

    def _handle(self, kind: str, value: Any) -> None:
        s = self.assembler.settings
        if kind == "eye":
            event: PhotoEyeEvent = value
            self.assembler.photo_eye(event)
            self._close_at(event.ts + s.grace_s)  # a window the new item cuts short
            self._close_at(event.ts + s.window_s + s.grace_s + s.lead_s)
            if event.edge is PhotoEyeEdge.ENTER and event.ts > self._last_trigger:
                self._last_trigger = event.ts
                self._check_early()
        elif kind == "read":
            read: SourceRead = value
            self.assembler.read(read)
            if s.mode is TriggerMode.QUIET_GAP:
                self._close_at(read.ts + min(s.quiet_gap_s, s.window_s) + s.grace_s)
                self._close_at(read.ts + s.window_s + s.grace_s)
        elif kind == "frame":
            self.assembler.frame(value)
            if self.early_frames:
                self._recent.append(value)
                self._check_early()
        elif kind == "vision":
            item, result = value
            item.vision = result
            self._verify(item)
        elif kind == "verified":
            item, outcome = value
            self._decide(item, outcome)
        elif kind == "actuated":
            window_id, wall_ts = value
            self._journal_call(lambda j: j.record_actuation(window_id, wall_ts))

    def _close_at(self, ts: float) -> None:
        heapq.heappush(self._closes, ts)

    def _closed(self, assembled: AssembledItem) -> None:
        trigger = assembled.trigger_ts if assembled.trigger_ts is not None else assembled.opened_at
        count = None if self.belt is None else self.belt.trigger_count(trigger)
        item = _Item(assembled, trigger, count)
        self._in_flight += 1
        self._count("items")
        refs = self._check_refs(assembled.frames)
        early = self._early.pop(_key(refs), None) if refs else None
        if early is not None and early.done() and _refused(early):
            early = None  # the worker was busy then: ask again now
        if early is not None:
            self._count("vision_early")
            if early.done():
                item.vision = _vision_result(early)
                self._verify(item)
            else:
                early.add_done_callback(lambda f: self._put("vision", (item, _vision_result(f))))
            return
        frames = self._images(refs)
        if self.vision is not None and frames:
            self.vision.submit(frames, lambda r: self._put("vision", (item, r)))
        else:
            self._verify(item)

    def _verify(self, item: _Item) -> None:
        a = item.assembled
        vision = item.vision
        try:
            assert self._journal is not None
            self._journal.record_item(
                a.window_id,
                scanned_at=self._wall(item.trigger),
                deadline=self._wall(item.trigger + self.timing.deadline_s),
                reads=a.reads_by_source(),
                item=a.item,
                vision_verdict=None if vision is None else vision.verdict,
                vision_score=None if vision is None else vision.score,
            )
            item.journaled = True
        except JournalError as exc:
            log.error("gate agent: item %s not journaled: %s; holding it", a.window_id, exc)
            item.extra = (JOURNAL_FAILED,)
        if a.item is None or not item.journaled:
            self._decide(item, None)
            return
        request = VerifyItem.from_assembled(a, vision)
        self._asks.append((item, request, item.trigger + self.timing.deadline_s))
        if self._deferred is None:  # outside a batch (shutdown): ask now
            self._ask()

    def _decide(self, item: _Item, outcome: VerifyOutcome | None) -> None:
        a = item.assembled
        fused = fuse(
            a,
            outcome,
            item.vision,
            self.policy,
            vision_enabled=self.vision is not None,
            label_id_required=self.label_id_required,
        )
        if item.extra:
            fused = FusedDecision(Decision.HOLD, (*item.extra, *fused.reasons), fused.inspect)
        now = time.monotonic()
        if self.belt is None:
            divert_at = item.trigger + self.timing.divert_s
            late = now > divert_at
        else:  # by belt travel; divert_at: the soonest it may come (belt at top speed)
            count = item.trigger_count
            to_fire = self.belt.earliest_time_to_fire(item.trigger, now, trigger_count=count)
            divert_at = now + to_fire
            late = self.belt.late(item.trigger, now, trigger_count=count)
        decision, reasons = fused.decision, fused.reasons
        if late:
            decision, reasons = Decision.HOLD, (DECISION_LATE, *reasons)
        request_id = None if outcome is None else outcome.request_id
        written = False
        if item.journaled:
            wall_now = self._wall(now)
            written = self._journal_call(
                lambda j: j.record_decision(
                    a.window_id,
                    decision,
                    reasons,
                    decided_at=wall_now,
                    late=late,
                    request_id=request_id,
                )
            )
            item.journaled = written  # no actuation to journal for an undecided record
            self._after_commit(self._notify_outbox)
        if decision is Decision.PASS and not written:  # never PASS without a journaled PASS
            decision, reasons = Decision.HOLD, (JOURNAL_FAILED, *reasons)
        elif decision is Decision.PASS and self._deferred is not None:
            self._passes.append((item, divert_at))  # held if the batch does not commit
        self._count({Decision.PASS: "passed", Decision.REJECT: "rejected"}.get(decision, "held"))
        if late:
            self._count("late")
            log.warning("gate agent: %s decided after it passed the diverter", a.window_id)
            self._after_commit(lambda: self.gate_io.set_light(LightColor.AMBER, LightMode.BLINK))
        elif decision is not Decision.PASS:
            self._after_commit(lambda: self._schedule_fire(item, divert_at))
        self._in_flight -= 1

    def _schedule_fire(self, item: _Item, divert_at: float) -> None:
        """Fire the diverter when the item reaches it (by the encoder with a belt timing)."""
        window_id, journaled = item.assembled.window_id, item.journaled
        with self._counters_lock:
            self._shots += 1
        if self._belt_scheduler is None:
            self._scheduler.call_at(
                divert_at,
                lambda: self._fire(window_id, journaled, time.monotonic() - divert_at),
            )
        else:
            self._belt_scheduler.when_reached(
                item.trigger,
                lambda lag_s: self._fire(window_id, journaled, lag_s),
                trigger_count=item.trigger_count,
            )

    def _fire(self, window_id: str, journaled: bool, lag_s: float = 0.0) -> None:
        """Scheduler thread: fire the diverter (``lag_s`` after its moment); the agent thread
        journals it. A late shot may miss the item: counted, logged, amber lamp."""
        try:
            actuation = self.gate_io.fire_diverter()
            if lag_s > DIVERTER_LAG_TOLERANCE_S:
                self._count("diverter_late")
                log.warning(
                    "gate agent: diverter for %s fired %s: check the item by hand",
                    window_id,
                    "blind (belt position unknown)"
                    if math.isinf(lag_s)
                    else f"{lag_s * 1000:.0f} ms late",
                )
                self.gate_io.set_light(LightColor.AMBER, LightMode.BLINK)
            if not actuation.applied:
                log.error("gate agent: diverter failed for %s: %s", window_id, actuation.error)
                return
            if journaled:
                self._put("actuated", (window_id, actuation.wall_ts))
        finally:
            with self._counters_lock:
                self._shots -= 1

    def _shutdown(self) -> None:
        """Decide what is in flight and let the scheduled diverter shots fire (the
        scheduler forgets the rest when it stops)."""
        for assembled in self.assembler.flush():
            self._closed(assembled)
        deadline = time.monotonic() + self.timing.divert_s + 1.0
        while (self._in_flight or self._shots_pending()) and time.monotonic() < deadline:
            self._pump_verify()
            now = time.monotonic()
            wait = min(deadline, self._verify_due, now + _IDLE_TICK_S) - now
            try:
                kind, value = self._inbox.get(timeout=max(0.0, wait))
            except queue.Empty:
                continue
            if kind in ("vision", "verified", "actuated"):
                self._handle(kind, value)
            with self._idle:
                self._queued -= 1
        if shots := self._shots_pending():
            log.error("gate agent: stopped with %d diverter shots not fired", shots)
        self._wake_idle()

    def _shots_pending(self) -> int:
        with self._counters_lock:
            return self._shots

    # --- helpers -----------------------------------------------------------------------

    def _check_refs(self, refs: tuple[FrameRef, ...]) -> tuple[FrameRef, ...]:
        """The frames (of a window's, in time order) the label check gets: with several
        cameras, the first frame of each in profile order (camera A, then B: the two
        lighting angles); with one camera, its first two frames (two LEDs alternating), or
        its first when the check uses one (``early_frames`` 1)."""
        cameras = dict.fromkeys(r.camera for r in refs)
        if len(cameras) > 1:
            order = [c for c in self.camera_order if c in cameras]
            order += [c for c in cameras if c not in order]
            first = {c: next(r for r in refs if r.camera == c) for c in order}
            refs = tuple(first[c] for c in order)
            return refs[:2]
        return refs[: self.early_frames or 2]  # one frame when the check uses only one

    def _images(self, refs: tuple[FrameRef, ...]) -> list[FrameInput]:
        """The kept images of ``refs`` (those still kept)."""
        with self._frames_lock:
            images = [self._frames.get((r.camera, r.seq)) for r in refs]
        return [image for image in images if image is not None]

    def _check_early(self) -> None:
        """Start the label check of the item behind the latest trigger once the frames its
        window will give the check have arrived (see the module docstring)."""
        if not self.early_frames or self.vision is None:
            return
        s = self.assembler.settings
        start, end = self._last_trigger - s.lead_s, self._last_trigger + s.window_s
        refs = self._check_refs(
            tuple(sorted((r for r in self._recent if start <= r.ts < end), key=frame_order))
        )
        wanted = self.camera_order[:2] if len(self.camera_order) > 1 else None
        if wanted is not None and tuple(r.camera for r in refs) != wanted:
            return
        if wanted is None and len(refs) != self.early_frames:
            return
        key = _key(refs)
        if key in self._early:
            return
        images = self._images(refs)
        if len(images) != len(refs):
            return
        self._early[key] = self.vision.submit(images)
        while len(self._early) > _EARLY_KEPT:
            self._early.popitem(last=False)

    def _journal_call(self, work: Callable[[Journal], object]) -> bool:
        """Run a journal write; False (logged) if it failed."""
        assert self._journal is not None
        try:
            work(self._journal)
        except (JournalError, ValueError) as exc:
            log.error("gate agent: journal write failed: %s", exc)
            return False
        return True

    def _put(self, kind: str, value: Any) -> None:
        with self._idle:
            self._queued += 1
        self._inbox.put((kind, value))

    def _notify_outbox(self) -> None:
        if self.outbox is not None:
            self.outbox.notify()

    def _count(self, name: str, n: int = 1) -> None:
        with self._counters_lock:
            self._counters[name] += n

    def _wake_idle(self) -> None:
        with self._idle:
            self._idle.notify_all()

    @staticmethod
    def _wall(mono: float) -> float:
        return time.time() - time.monotonic() + mono

    def _scheduler_error(self, exc: BaseException) -> None:
        log.error("gate agent: diverter callback failed: %s", exc)


def _early_frames(profile: GateProfile) -> int:
    """Frames a single camera's label check uses (2 with the two-frame option), for the
    early check; 0 without vision or cameras, or without a photo eye to time it by."""
    if profile.vision is None or not profile.devices.cameras:
        return 0
    if profile.trigger.mode is not TriggerMode.PHOTO_EYE:
        return 0
    return 2 if profile.vision.two_frame or len(profile.devices.cameras) > 1 else 1


def _key(refs: tuple[FrameRef, ...]) -> FrameKey:
    return tuple((r.camera, r.seq) for r in refs)


def _refused(future: Future[VisionResult]) -> bool:
    """The (done) early check was refused, not run: the vision worker was busy."""
    try:
        return "vision_busy" in future.result().reasons
    except Exception:
        return True


def _vision_result(future: Future[VisionResult]) -> VisionResult:
    """The check's result; unreadable if it failed (the worker never lets it fail)."""
    try:
        return future.result()
    except Exception:  # cancelled or failed: no verdict, which the decision holds
        log.exception("gate agent: early label check failed")
        return unreadable("internal_error")


def _result(future: Future[VerifyOutcome]) -> VerifyOutcome | None:
    """The outcome, or None (held as ``verify.missing``) if the future failed."""
    try:
        return future.result()
    except Exception as exc:
        log.error("gate agent: verification failed: %s", exc)
        return None
