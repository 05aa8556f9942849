"""Simulated gate cameras that see a label only while its item is in front of them.

A :class:`BeltCamera` is a live :class:`~hardware.camera.sources.FrameSource` for the real
:class:`~hardware.camera.driver.OpenCvCamera` driver: :meth:`BeltCamera.read` blocks until
the conveyor shows it an item's frame (:meth:`BeltCamera.show`), so every frame the driver
timestamps was taken while its item was in the window. Frames may be JPEG bytes (decoded
on the camera's thread, as a network camera's stream is) or BGR arrays. A frame can be
held back until another camera has taken its own (``after``): the second lighting angle
of a two-camera gate is always captured after the first. :meth:`BeltCamera.shut` ends the
feed; the driver's capture thread then sees the end of the source and stops at once.

:class:`BeltCameras` holds a gate's cameras by name; its :meth:`BeltCameras.open` is the
``camera_source`` factory of :func:`edge_agent.runner.build_gate`.
:func:`render_label_frames` pre-renders an item's label (the DataMatrix of
:func:`label_id`) as the cameras will show it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.vision.layout import LabelKind
from gatewire.identity import parse_item_id
from hardware.camera.config import OpenCvCameraConfig, SourceKind
from hardware.camera.sources import FrameSource, ReadResult, ReadStatus, SourceOpenError
from simulators.labels import normalise_item_id, render_sample
from simulators.scanner import without_aim

__all__ = [
    "SOURCE_PREFIX",
    "BeltCamera",
    "BeltCameras",
    "FrameData",
    "decode_frame",
    "encode_frame",
    "label_id",
    "render_label_frames",
]

SOURCE_PREFIX: Final = "http://belt.sim/"
"""Camera ``source`` the gate simulator writes into a profile (a stream URL: live, unpaced)."""
_AFTER_GAP_S: Final = 0.002  # a frame held for another camera goes this much later
_AFTER_WAIT_S: Final = 1.0  # ... but never waits longer than this for it

FrameData = bytes | NDArray[np.uint8]
"""A frame as the conveyor holds it: JPEG bytes or a BGR image."""


def encode_frame(image: NDArray[np.uint8], quality: int = 95) -> bytes:
    """``image`` as JPEG bytes (pre-rendered frames stay small in memory)."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the frame as JPEG")
    return bytes(data.tobytes())


class BeltCamera(FrameSource):
    """One simulated camera: frames come when the conveyor shows them, in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind = SourceKind.STREAM
        self.description = SOURCE_PREFIX + name
        self.native_fps = None
        self._cond = threading.Condition()
        self._queue: deque[tuple[FrameData, threading.Event | None, threading.Event]] = deque()
        self._shut = False
        self.shown = 0
        self.taken = 0

    def show(self, frame: FrameData, after: threading.Event | None = None) -> threading.Event:
        """Queue ``frame`` for the camera now; the returned event is set once it is taken.

        With ``after``, the frame is taken only once ``after`` is set (another camera took
        its frame), a moment later, so the two captures are in that order.
        """
        taken = threading.Event()
        with self._cond:
            self._queue.append((frame, after, taken))
            self.shown += 1
            self._cond.notify_all()
        return taken

    def shut(self) -> None:
        """End the feed: reads return END (the driver's capture thread stops)."""
        with self._cond:
            self._shut = True
            self._cond.notify_all()

    @property
    def is_shut(self) -> bool:
        """True once :meth:`shut` was called."""
        return self._shut

    def read(self) -> ReadResult:
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._shut)
            if self._shut:
                return ReadResult(ReadStatus.END)
            frame, after, taken = self._queue.popleft()
        if after is not None:
            after.wait(_AFTER_WAIT_S)
            time.sleep(_AFTER_GAP_S)
        result = _decoded(frame, self.description)
        with self._cond:
            self.taken += 1
        taken.set()
        return result

    def close(self) -> None:
        """Nothing to release: the feed stays until :meth:`shut` (the driver may reopen)."""


class BeltCameras:
    """A gate's simulated cameras by name; :meth:`open` is ``build_gate``'s camera_source."""

    def __init__(self, names: Iterable[str]) -> None:
        self.cameras = {name: BeltCamera(name) for name in names}

    def __getitem__(self, name: str) -> BeltCamera:
        return self.cameras[name]

    def open(self, config: OpenCvCameraConfig) -> FrameSource:
        """The camera named in ``config``; SourceOpenError for an unknown or shut one."""
        camera = self.cameras.get(config.name)
        if camera is None or camera.is_shut:
            raise SourceOpenError(f"no simulated camera {config.name!r} on this belt")
        return camera

    def shut(self) -> None:
        """End every camera's feed."""
        for camera in self.cameras.values():
            camera.shut()


def decode_frame(frame: FrameData) -> NDArray[np.uint8] | None:
    """``frame`` as a BGR image (JPEG bytes decoded); None when it does not decode."""
    if isinstance(frame, np.ndarray):
        return frame
    image = cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else np.asarray(image, dtype=np.uint8)


def _decoded(frame: FrameData, origin: str) -> ReadResult:
    image = decode_frame(frame)
    if image is None:
        return ReadResult(ReadStatus.CORRUPT, origin=origin, detail="undecodable JPEG")
    return ReadResult(ReadStatus.FRAME, image, origin)


def label_id(barcode: str | None, item: str) -> str | None:
    """The GS1 ID the item's printed label carries: its barcode's, else its item ID's
    GTIN and serial; None when neither names a GS1 item (the renderer picks one)."""
    if barcode is not None:
        with contextlib.suppress(ValueError):
            return normalise_item_id(without_aim(barcode))
    parsed = parse_item_id(item).item
    if parsed is None or parsed.serial is None:
        return None
    return f"(01){parsed.gtin}(21){parsed.serial}"


def render_label_frames(
    seed: int, kind: LabelKind, item_id: str | None, frames: int
) -> tuple[bytes, ...]:
    """One item's label photographed ``frames`` times (angle A, then B), as JPEG bytes.

    ``seed`` is the sample's own seed (:func:`simulators.labels.sample_seed`)."""
    try:
        sample = render_sample(seed, kind, item_id=item_id, frames=frames)
    except ValueError:  # an ID the label cannot carry: a label of the brand's own
        sample = render_sample(seed, kind, item_id=None, frames=frames)
    return tuple(encode_frame(image) for image in sample.frames)
