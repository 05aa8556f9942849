"""Cameras read through OpenCV: V4L2 devices, RTSP/HTTP streams, video files, image folders.

``OpenCvCamera`` is the driver (registered as ``type: opencv_camera``); ``Frame`` is what
it captures; ``FrameBuffer`` keeps the newest frames for ``latest()``, ``get()`` and
``frames_between()``. OpenCV itself is imported only when a camera is built. See
``docs/hardware-camera-io.md``.
"""

from hardware.camera.config import OpenCvCameraConfig, SourceKind, classify_source
from hardware.camera.driver import OpenCvCamera, build_opencv_camera
from hardware.camera.frames import Frame, FrameBuffer

__all__ = [
    "Frame",
    "FrameBuffer",
    "OpenCvCamera",
    "OpenCvCameraConfig",
    "SourceKind",
    "build_opencv_camera",
    "classify_source",
]
