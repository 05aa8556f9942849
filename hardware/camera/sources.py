"""Where frames come from: OpenCV ``VideoCapture`` (devices, streams, files) or an image folder.

A source is opened once per connection and read by the camera's capture thread; it turns
every OpenCV failure into a :class:`ReadResult` (or :class:`SourceOpenError` on open), so
nothing OpenCV does can end that thread.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from hardware.camera.config import OpenCvCameraConfig, SourceKind

__all__ = [
    "IMAGE_SUFFIXES",
    "FrameSource",
    "ImageFolderSource",
    "ReadResult",
    "ReadStatus",
    "SourceOpenError",
    "VideoCaptureSource",
    "as_bgr",
    "open_source",
]

IMAGE_SUFFIXES: Final = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)
DEFAULT_FOLDER_FPS: Final = 10.0
_FFMPEG_OPTIONS_ENV: Final = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# OpenCV reads OPENCV_FFMPEG_CAPTURE_OPTIONS from the environment while opening; cameras
# with different options must not open at the same moment.
_ENV_LOCK = threading.Lock()
_DIGITS_RE: Final = re.compile(r"(\d+)")


class SourceOpenError(Exception):
    """The source cannot be opened now (missing device, refused stream, empty folder)."""


class ReadStatus(Enum):
    """What one read produced."""

    FRAME = "frame"  # an image
    CORRUPT = "corrupt"  # an image that could not be decoded; the source goes on
    FAILED = "failed"  # no image; corrupt data, a lost stream, or a file's end
    END = "end"  # a finite source has nothing more


@dataclass(frozen=True, slots=True)
class ReadResult:
    """The outcome of one read."""

    status: ReadStatus
    image: NDArray[np.uint8] | None = None
    origin: str = ""
    detail: str = ""


class FrameSource(ABC):
    """An opened source of images."""

    kind: SourceKind
    description: str
    native_fps: float | None = None

    @property
    def finite(self) -> bool:
        """True for files and folders, which end, can loop, and are paced."""
        return self.kind in (SourceKind.FILE, SourceKind.FOLDER)

    @abstractmethod
    def read(self) -> ReadResult:
        """The next image (blocks for devices and streams)."""

    @abstractmethod
    def close(self) -> None:
        """Release the source."""


def as_bgr(image: object) -> NDArray[np.uint8] | None:
    """``image`` as a 3-channel uint8 BGR array, or None when it is not a usable image."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
        return None
    if image.ndim == 2:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if image.ndim != 3:
        return None
    channels = image.shape[2]
    if channels == 3:
        return np.asarray(image, dtype=np.uint8)
    if channels == 4:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    if channels == 1:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    return None


class VideoCaptureSource(FrameSource):
    """A V4L2 device, a stream or a video file opened with ``cv2.VideoCapture``."""

    def __init__(self, config: OpenCvCameraConfig, kind: SourceKind) -> None:
        self.kind = kind
        self.description = config.source
        if kind is SourceKind.DEVICE:
            self._capture = self._open_device(config)
        else:
            self._capture = self._open_ffmpeg(config)
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceOpenError(f"OpenCV cannot open {kind.value} {config.source!r}")
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        self.native_fps = fps if 0 < fps < 1000 else None

    @staticmethod
    def _open_device(config: OpenCvCameraConfig) -> cv2.VideoCapture:
        # No open() parameters here: a backend that does not take them (V4L2) refuses
        # to open at all. Format, size and rate are requested after opening, in the
        # order UVC cameras need (the pixel format decides which sizes exist).
        try:
            if config.source.isdigit():
                capture = cv2.VideoCapture(int(config.source), cv2.CAP_V4L2)
            else:
                capture = cv2.VideoCapture(config.source, cv2.CAP_V4L2)
            if capture.isOpened():
                if config.fourcc is not None:
                    capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*config.fourcc))
                if config.width is not None and config.height is not None:
                    capture.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
                    capture.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
                if config.fps is not None:
                    capture.set(cv2.CAP_PROP_FPS, config.fps)
        except cv2.error as exc:
            raise SourceOpenError(f"OpenCV error opening {config.source!r}: {exc}") from exc
        return capture

    @staticmethod
    def _open_ffmpeg(config: OpenCvCameraConfig) -> cv2.VideoCapture:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            round(config.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            round(config.read_timeout_s * 1000),
        ]
        try:
            if config.ffmpeg_options is None:
                return cv2.VideoCapture(config.source, cv2.CAP_FFMPEG, params)
            with _ENV_LOCK:
                previous = os.environ.get(_FFMPEG_OPTIONS_ENV)
                os.environ[_FFMPEG_OPTIONS_ENV] = config.ffmpeg_options
                try:
                    return cv2.VideoCapture(config.source, cv2.CAP_FFMPEG, params)
                finally:
                    if previous is None:
                        del os.environ[_FFMPEG_OPTIONS_ENV]
                    else:
                        os.environ[_FFMPEG_OPTIONS_ENV] = previous
        except cv2.error as exc:
            raise SourceOpenError(f"OpenCV error opening {config.source!r}: {exc}") from exc

    def read(self) -> ReadResult:
        try:
            ok, image = self._capture.read()
        except cv2.error as exc:
            return ReadResult(ReadStatus.FAILED, detail=f"OpenCV error: {exc}")
        if not ok:
            return ReadResult(ReadStatus.FAILED, detail="read returned no frame")
        bgr = as_bgr(image)
        if bgr is None:
            return ReadResult(ReadStatus.CORRUPT, detail=f"unusable image {_describe(image)}")
        return ReadResult(ReadStatus.FRAME, bgr, self.description)

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            self._capture.release()


def _natural_key(path: Path) -> tuple[tuple[int, int | str], ...]:
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in _DIGITS_RE.split(path.name)
        if part
    )


class ImageFolderSource(FrameSource):
    """The image files of a folder in natural name order (``img2`` before ``img10``).

    The folder is listed when opened; files that vanish or do not decode are CORRUPT.
    """

    def __init__(self, config: OpenCvCameraConfig) -> None:
        self.kind = SourceKind.FOLDER
        self.description = config.source
        self.native_fps = DEFAULT_FOLDER_FPS
        folder = Path(config.source)
        try:
            files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        except OSError as exc:
            raise SourceOpenError(f"cannot list image folder {folder}: {exc}") from exc
        if not files:
            raise SourceOpenError(f"no image files in {folder}")
        self._files = sorted(files, key=_natural_key)
        self._next = 0

    def read(self) -> ReadResult:
        if self._next >= len(self._files):
            return ReadResult(ReadStatus.END)
        path = self._files[self._next]
        self._next += 1
        try:
            data = path.read_bytes()
        except OSError as exc:
            return ReadResult(ReadStatus.CORRUPT, origin=str(path), detail=f"unreadable: {exc}")
        image: object = None
        if data:
            try:
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            except cv2.error:
                image = None
        bgr = as_bgr(image)
        if bgr is None:
            return ReadResult(ReadStatus.CORRUPT, origin=str(path), detail="not a decodable image")
        return ReadResult(ReadStatus.FRAME, bgr, str(path))

    def close(self) -> None:
        self._files = []


def open_source(config: OpenCvCameraConfig) -> FrameSource:
    """Open what ``config.source`` names; SourceOpenError when it is not there (yet)."""
    kind = config.kind
    if kind is SourceKind.FOLDER:
        return ImageFolderSource(config)
    if kind is SourceKind.FILE and not Path(config.source).is_file():
        raise SourceOpenError(f"no such video file: {config.source}")
    return VideoCaptureSource(config, kind)


def _describe(image: object) -> str:
    if isinstance(image, np.ndarray):
        return f"(shape {image.shape}, dtype {image.dtype})"
    return f"({type(image).__name__})"
