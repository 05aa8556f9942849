"""Configuration of an OpenCV camera (``type: opencv_camera``) and how its source is read."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["OpenCvCameraConfig", "SourceKind", "classify_source"]

_STREAM_RE: Final = re.compile(r"^(rtsps?|rtmps?|https?|udp|tcp|srt)://", re.IGNORECASE)
_OTHER_URL_RE: Final = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_FFMPEG_OPTIONS_RE: Final = re.compile(r"^[A-Za-z0-9_]+;[^|;]*(\|[A-Za-z0-9_]+;[^|;]*)*$")


class SourceKind(StrEnum):
    """What a camera ``source`` is, which decides how it is opened and read."""

    DEVICE = "device"  # a V4L2 camera: index 0 or /dev/video0
    STREAM = "stream"  # a network camera: rtsp://..., http://.../stream.mjpg
    FILE = "file"  # a video file, paced at its own frame rate
    FOLDER = "folder"  # a folder of still images, read in name order


def classify_source(source: str, kind: str = "auto") -> SourceKind:
    """The kind of ``source``; with ``auto``, a path is a folder if it is a directory now."""
    if kind != "auto":
        return SourceKind(kind)
    if source.isdigit() or source.startswith(("/dev/video", "/dev/v4l/")):
        return SourceKind.DEVICE
    if _STREAM_RE.match(source):
        return SourceKind.STREAM
    return SourceKind.FOLDER if Path(source).is_dir() else SourceKind.FILE


class OpenCvCameraConfig(BaseModel):
    """Camera read with OpenCV: a V4L2 device, an RTSP/HTTP stream, a video file or images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["opencv_camera"] = Field(
        title="Driver type",
        description="Selects this driver: frames captured through OpenCV VideoCapture.",
    )
    name: str = Field(
        default="camera",
        min_length=1,
        max_length=64,
        title="Name",
        description="Name of this camera in logs, health and frames.",
    )
    source: str = Field(
        min_length=1,
        title="Source",
        description=(
            "What to capture from: a V4L2 device index (0) or path (/dev/video0, a stable "
            "/dev/v4l/by-id/... link), a stream URL (rtsp://..., http://host/stream.mjpg), "
            "a video file, or a folder of images (read in natural name order)."
        ),
    )
    source_kind: Literal["auto", "device", "stream", "file", "folder"] = Field(
        default="auto",
        title="Source kind",
        description=(
            "How to treat the source; 'auto' decides from its form (digits or /dev/video*: "
            "device; rtsp/http/...:// : stream; a directory: folder; otherwise a file)."
        ),
    )
    width: int | None = Field(
        default=None,
        ge=16,
        le=8192,
        title="Requested width",
        description="Devices only: frame width to ask the camera for (it may pick another).",
    )
    height: int | None = Field(
        default=None,
        ge=16,
        le=8192,
        title="Requested height",
        description="Devices only: frame height to ask the camera for (it may pick another).",
    )
    fps: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        title="Frame rate",
        description=(
            "Devices: the frame rate to ask the camera for. Files and folders: the rate "
            "they are paced at (default: the file's own rate; 10 for a folder)."
        ),
    )
    fourcc: str | None = Field(
        default=None,
        min_length=4,
        max_length=4,
        title="Pixel format",
        description=(
            "Devices only: FOURCC to ask for, e.g. MJPG (USB cameras need it for high "
            "resolutions at full rate) or YUYV."
        ),
    )
    pace: bool = Field(
        default=True,
        title="Pace files",
        description=(
            "Files and folders: deliver frames at the frame rate, as a camera would. "
            "Off: as fast as they decode (tests, batch runs)."
        ),
    )
    loop: bool = Field(
        default=False,
        title="Loop files",
        description=(
            "Files and folders: start again at the end. Off: the camera stops at the end "
            "(state 'stopped', ended() is true)."
        ),
    )
    buffer_frames: int = Field(
        default=30,
        ge=1,
        le=10_000,
        title="Frame buffer size",
        description=(
            "Newest frames kept for latest(), get() and frames_between(); older ones fall "
            "out. Memory: width × height × 3 bytes each (0.9 MB at 640×480)."
        ),
    )
    open_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=120,
        title="Open timeout (s)",
        description="Streams: how long opening may take before it counts as failed.",
    )
    read_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=120,
        title="Read timeout (s)",
        description=(
            "Streams: how long a read may wait for a frame; a stalled stream is then "
            "treated as lost and reopened."
        ),
    )
    max_consecutive_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        title="Failed reads before reconnect",
        description=(
            "Failed reads in a row after which a device or stream counts as lost (and is "
            "reopened) or a file as ended. Fewer, followed by a good frame, were "
            "undecodable frames: counted as corrupt and skipped."
        ),
    )
    backoff_initial_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        title="First retry delay (s)",
        description="Delay before the first reopen after a loss; it doubles up to the maximum.",
    )
    backoff_max_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        title="Longest retry delay (s)",
        description="Upper bound of the reopen delay (each delay is jittered by ±20%).",
    )
    ffmpeg_options: str | None = Field(
        default=None,
        title="FFmpeg options",
        description=(
            "Streams and files: FFmpeg demuxer options in OpenCV's form 'key;value|key;value', "
            "e.g. 'rtsp_transport;tcp' for cameras that lose UDP packets."
        ),
    )

    @field_validator("source")
    @classmethod
    def _source_is_known(cls, value: str) -> str:
        value = value.strip()
        if _OTHER_URL_RE.match(value) and not _STREAM_RE.match(value):
            raise ValueError(
                "URL scheme not supported: use rtsp://, rtsps://, rtmp://, http://, https://, "
                "udp://, tcp:// or srt://"
            )
        return value

    @field_validator("fourcc")
    @classmethod
    def _fourcc_is_ascii(cls, value: str | None) -> str | None:
        if value is not None and not (value.isascii() and value.isprintable()):
            raise ValueError("fourcc must be 4 printable ASCII characters, e.g. MJPG")
        return value

    @field_validator("ffmpeg_options")
    @classmethod
    def _ffmpeg_options_form(cls, value: str | None) -> str | None:
        if value is not None and not _FFMPEG_OPTIONS_RE.match(value):
            raise ValueError("ffmpeg_options must read 'key;value' or 'key;value|key;value'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> OpenCvCameraConfig:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height are requested together: set both or neither")
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("backoff_initial_s must not exceed backoff_max_s")
        return self

    @property
    def kind(self) -> SourceKind:
        """The source kind, resolved now (a path's folder-or-file is checked on disk)."""
        return classify_source(self.source, self.source_kind)
