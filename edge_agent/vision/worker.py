"""Label checks off the agent's I/O loop: one worker thread behind a bounded queue.

:meth:`VisionWorker.submit` never blocks: it queues the check and returns a
:class:`concurrent.futures.Future` (``asyncio.wrap_future`` turns it into an awaitable
on the agent's loop). When the queue is full the check is not run: the future is
already resolved as unreadable (``vision_busy``) and the drop is counted and logged,
so a slow frame or a slow model never stalls serial reading or MQTT. OpenCV and the
TFLite interpreter release the GIL while they work, so a thread is enough.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Final, Protocol

from edge_agent.vision.checker import FrameInput, VisionResult, unreadable

__all__ = ["Checker", "VisionWorker", "WorkerStats"]

_log = logging.getLogger(__name__)

ResultCallback = Callable[[VisionResult], None]
_STOP: Final = object()


class Checker(Protocol):
    """Anything that checks frames like :class:`edge_agent.vision.checker.LabelChecker`."""

    def check(self, frames: Sequence[FrameInput]) -> VisionResult:
        """The verdict on the label in ``frames``; never raises."""
        ...


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """Counts since the worker was made."""

    submitted: int
    completed: int
    busy: int
    """Checks refused because the queue was full (answered 'vision_busy')."""
    queued: int


@dataclass(slots=True)
class _Job:
    frames: Sequence[FrameInput]
    future: Future[VisionResult]
    callback: ResultCallback | None


class VisionWorker:
    """Runs one checker on a worker thread, fed through a queue of ``queue_size`` checks."""

    def __init__(self, checker: Checker, *, queue_size: int = 4, name: str = "vision") -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._checker = checker
        self._queue: queue.Queue[_Job | object] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._submitted = self._completed = self._busy = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __enter__(self) -> VisionWorker:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def stats(self) -> WorkerStats:
        """Submitted, completed and refused checks, and how many wait now."""
        with self._lock:
            queued = 0 if self._closed else self._queue.qsize()  # not the stop marker
            return WorkerStats(self._submitted, self._completed, self._busy, queued)

    def submit(
        self, frames: Sequence[FrameInput], callback: ResultCallback | None = None
    ) -> Future[VisionResult]:
        """Queue a check of ``frames``; its future (and ``callback``, if given) gets the result.

        Never blocks. ``callback`` runs on the worker thread, or at once on the caller's
        thread when the check is refused (queue full: 'vision_busy'; stopped:
        'vision_stopped'); from an asyncio loop, hand it on with ``call_soon_threadsafe``.
        """
        job = _Job(frames, Future(), callback)
        refused = None
        with self._lock:
            self._submitted += 1
            if self._closed:
                refused = "vision_stopped"
            else:
                try:
                    self._queue.put_nowait(job)
                except queue.Full:
                    self._busy += 1
                    refused = "vision_busy"
                    _log.warning("vision worker busy: check refused (%d so far)", self._busy)
        if refused is not None:
            self._finish(job, unreadable(refused))
        return job.future

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop taking checks, answer the queued ones 'vision_stopped', end the thread.

        True if the thread ended within ``timeout`` (a check in progress is let finish).
        Called from a result callback (on the worker thread itself), it does not wait
        and returns False; the thread ends once the callback returns.
        """
        self._close()
        if threading.current_thread() is self._thread:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _close(self) -> None:
        """Refuse new checks, answer the waiting ones 'vision_stopped', queue the stop."""
        with self._lock:
            already = self._closed
            self._closed = True
        if already:
            return
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Job):
                self._finish(item, unreadable("vision_stopped"))
        self._queue.put(_STOP)  # room now: nothing else enters a closed queue

    def _run(self) -> None:
        try:
            self._serve()
        finally:  # also when a callback raises KeyboardInterrupt: no future waits forever
            self._close()

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if not isinstance(item, _Job):
                return
            if not item.future.set_running_or_notify_cancel():
                continue
            try:
                result = self._checker.check(item.frames)
            except Exception:  # the checker promises not to raise; keep the thread alive anyway
                _log.exception("vision check raised")
                result = unreadable("internal_error")
            with self._lock:
                self._completed += 1
            self._finish(item, result)

    @staticmethod
    def _finish(job: _Job, result: VisionResult) -> None:
        with contextlib.suppress(InvalidStateError):  # cancelled by its submitter meanwhile
            job.future.set_result(result)
        if job.callback is not None:
            try:
                job.callback(result)
            except Exception:
                _log.exception("vision result callback raised")
