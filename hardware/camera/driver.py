"""The OpenCV camera driver (``type: opencv_camera``): a capture thread and a frame buffer.

The capture thread opens the source, reads frames, timestamps them and puts them in a
:class:`~hardware.camera.frames.FrameBuffer` of the newest ``buffer_frames``. When a
device or stream is lost (reads fail, the device vanishes, the stream stalls) the camera
reports itself unhealthy, waits with exponential backoff and jitter, reopens and goes on
with the same sequence numbers. Files and folders are paced at their frame rate and loop
or end at their end. Undecodable frames are counted and skipped; nothing a source does
can end the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

from hardware.backoff import Backoff
from hardware.base import Device
from hardware.camera.config import OpenCvCameraConfig
from hardware.camera.frames import Frame, FrameBuffer
from hardware.health import BurstLogger, Counters, DeviceHealth, DeviceState
from hardware.registry import DeviceKind, register_driver

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from hardware.camera.sources import FrameSource

__all__ = ["OpenCvCamera", "build_opencv_camera"]

log = logging.getLogger(__name__)

COUNTERS = (
    "frames",
    "dropped",
    "read_failures",
    "corrupt",
    "reconnects",
    "disconnects",
    "open_failures",
    "loops",
    "callback_errors",
)
# A failed read that took this share of the read timeout was a stall, not a bad frame.
_STALL_SHARE = 0.8


class _Outcome(Enum):
    LOST = "lost"
    END = "end"
    STOPPED = "stopped"


class _Pacer:
    """Spaces frames ``1 / fps`` apart; after falling behind it restarts, never bursts."""

    def __init__(self, fps: float, stop: threading.Event) -> None:
        self._period = 1.0 / fps
        self._stop = stop
        self._due: float | None = None

    def wait(self) -> None:
        now = time.monotonic()
        if self._due is None or now - self._due > self._period:
            self._due = now
        elif self._due > now:
            self._stop.wait(self._due - now)
        self._due += self._period


class OpenCvCamera(Device):
    """A camera read through OpenCV; frames go to a buffer and, optionally, a callback."""

    def __init__(
        self,
        config: OpenCvCameraConfig,
        on_frame: Callable[[Frame], None] | None = None,
        *,
        backoff: Backoff | None = None,
        open_source: Callable[[OpenCvCameraConfig], FrameSource] | None = None,
    ) -> None:
        """``on_frame`` runs on the capture thread for every frame; keep it short.

        ``open_source`` replaces OpenCV as the way the source is opened (a simulator's
        in-process frames); it raises ``SourceOpenError`` when the source is not there.
        """
        from hardware.camera import sources  # OpenCV is needed only once a camera exists

        self._sources = sources
        self._open_source = open_source or sources.open_source
        self.name = config.name
        self.config = config
        self._on_frame = on_frame
        self._counters = Counters()
        self._burst = BurstLogger(log)
        self._backoff = backoff or Backoff(config.backoff_initial_s, config.backoff_max_s)
        self.buffer = FrameBuffer(config.buffer_frames, on_drop=self._dropped)
        self._state = DeviceState.STOPPED
        self._last_error: str | None = None
        self._seq = 0
        self._pass_frames = 0  # frames delivered since the source was last opened
        self._stop = threading.Event()
        self._healthy = threading.Event()
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> OpenCvCamera:
        self.start()
        return self

    def start(self) -> None:
        """Start the capture thread; it opens (and reopens) the source by itself."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._ended.clear()
        self._state = DeviceState.CONNECTING
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop capturing and release the source (waits up to one open or read timeout)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=max(self.config.read_timeout_s, self.config.open_timeout_s) + 2)
        self._state = DeviceState.STOPPED
        self._healthy.clear()

    def health(self) -> DeviceHealth:
        """State and counters: frames, dropped, read_failures, corrupt, reconnects,
        disconnects, open_failures, loops, callback_errors."""
        counters = dict.fromkeys(COUNTERS, 0)
        counters.update(self._counters.snapshot())
        counters["dropped"] = self.buffer.dropped
        return DeviceHealth(
            self.name, self._state, counters, self._last_error, counters["reconnects"]
        )

    def wait_healthy(self, timeout: float) -> bool:
        """Block until the source is open (True) or ``timeout`` passes (False)."""
        return self._healthy.wait(timeout)

    def ended(self) -> bool:
        """True once a file or folder (without ``loop``) has delivered its last frame."""
        return self._ended.is_set()

    def wait_ended(self, timeout: float) -> bool:
        """Block until the file or folder has ended (True) or ``timeout`` passes."""
        return self._ended.wait(timeout)

    def latest(self) -> Frame | None:
        """The newest frame, or None before the first."""
        return self.buffer.latest()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame not yet returned by ``get`` (see :meth:`FrameBuffer.get`)."""
        return self.buffer.get(timeout)

    def frames_between(self, t0: float, t1: float, wait_s: float = 0.0) -> list[Frame]:
        """Frames captured at ``t0 <= ts <= t1`` (monotonic) still in the buffer.

        With ``wait_s``, first wait that long at most for a frame captured at or after
        ``t1``, so a window that has just closed is complete.
        """
        if wait_s > 0:
            self.buffer.wait_for_time(t1, wait_s)
        return self.buffer.frames_between(t0, t1)

    # -- capture thread ---------------------------------------------------------------

    def _run(self) -> None:
        lost_before = False
        while not self._stop.is_set():
            source = self._open()
            if source is None:
                self._stop.wait(self._backoff.next_delay())
                continue
            if lost_before:
                self._counters.add("reconnects")
                log.info("%s: reconnected to %s", self.name, self.config.source)
            try:
                outcome = self._pump(source)
            except Exception as exc:  # a bug must not end capture: treat as a loss
                log.exception("%s: capture error", self.name)
                self._last_error = f"capture error: {exc}"
                outcome = _Outcome.LOST
            finally:
                source.close()
            if outcome is _Outcome.LOST:
                lost_before = True
                self._counters.add("disconnects")
                self._set_unhealthy(self._last_error or "source lost")
                self._stop.wait(self._backoff.next_delay())
            elif outcome is _Outcome.END:
                if self.config.loop and self._pass_frames:
                    self._counters.add("loops")
                    continue
                if self.config.loop:  # nothing decodable: do not spin, retry later
                    self._set_unhealthy(f"no decodable frames in {self.config.source}")
                    self._stop.wait(self._backoff.next_delay())
                    continue
                log.info("%s: end of %s", self.name, self.config.source)
                self._state = DeviceState.STOPPED
                self._healthy.clear()
                self._ended.set()
                return

    def _open(self) -> FrameSource | None:
        try:
            source = self._open_source(self.config)
        except self._sources.SourceOpenError as exc:
            self._counters.add("open_failures")
            self._set_unhealthy(str(exc))
            return None
        self._state = DeviceState.HEALTHY
        self._last_error = None
        self._healthy.set()
        log.info("%s: opened %s %s", self.name, source.kind.value, self.config.source)
        return source

    def _pump(self, source: FrameSource) -> _Outcome:
        pacer = self._pacer_for(source)
        failures = 0
        self._pass_frames = 0
        while not self._stop.is_set():
            started = time.monotonic()
            result = source.read()
            status = result.status
            if status is self._sources.ReadStatus.FRAME and result.image is not None:
                if failures:
                    # The source recovered by itself: the failed reads were bad frames.
                    self._corrupt(failures, f"{failures} undecodable frame(s) skipped")
                    failures = 0
                if pacer is not None:
                    pacer.wait()
                self._deliver(result.image, result.origin or source.description)
                if not self._pass_frames:
                    self._backoff.reset()  # only frames prove the source works again
                self._pass_frames += 1
            elif status is self._sources.ReadStatus.CORRUPT:
                self._corrupt(1, f"{result.origin or source.description}: {result.detail}")
            elif status is self._sources.ReadStatus.END:
                return _Outcome.END
            else:
                failures += 1
                if not source.finite:
                    self._counters.add("read_failures")
                stalled = time.monotonic() - started >= _STALL_SHARE * self.config.read_timeout_s
                if failures >= self.config.max_consecutive_failures or (
                    stalled and not source.finite
                ):
                    if source.finite:
                        return _Outcome.END
                    self._last_error = (
                        f"stream stalled: no frame within {self.config.read_timeout_s:g} s"
                        if stalled
                        else f"{result.detail} ({failures} failed reads in a row)"
                    )
                    return _Outcome.LOST
        return _Outcome.STOPPED

    def _pacer_for(self, source: FrameSource) -> _Pacer | None:
        if not (source.finite and self.config.pace):
            return None
        fps = self.config.fps or source.native_fps or self._sources.DEFAULT_FOLDER_FPS
        return _Pacer(fps, self._stop)

    def _deliver(self, image: NDArray[np.uint8], origin: str) -> None:
        image.flags.writeable = False  # frames are shared between readers
        frame = Frame(image, self._seq, time.monotonic(), time.time(), self.name, origin)
        self._seq += 1
        self.buffer.put(frame)
        self._counters.add("frames")
        if self._on_frame is not None:
            try:
                self._on_frame(frame)
            except Exception:
                self._counters.add("callback_errors")
                if self._burst.warning("callback", "%s: on_frame callback raised", self.name):
                    log.debug("%s: on_frame callback raised", self.name, exc_info=True)

    def _corrupt(self, count: int, detail: str) -> None:
        self._counters.add("corrupt", count)
        self._burst.warning("corrupt", "%s: corrupt frame skipped: %s", self.name, detail)

    def _dropped(self, count: int) -> None:
        self._burst.warning(
            "dropped", "%s: reader too slow, %d frame(s) fell out of the buffer", self.name, count
        )

    def _set_unhealthy(self, reason: str) -> None:
        if self._state is not DeviceState.UNHEALTHY:
            log.warning("%s: %s; retrying with backoff", self.name, reason)
        self._state = DeviceState.UNHEALTHY
        self._last_error = reason
        self._healthy.clear()


@register_driver(DeviceKind.CAMERA, OpenCvCameraConfig)
def build_opencv_camera(config: OpenCvCameraConfig) -> OpenCvCamera:
    """Build an :class:`OpenCvCamera` from its validated config (frames go to its buffer)."""
    return OpenCvCamera(config)
