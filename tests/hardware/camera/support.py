"""Helpers for camera tests: configs with short timeouts and a polling wait."""

from __future__ import annotations

from hardware.backoff import Backoff
from hardware.camera.config import OpenCvCameraConfig

FAST = Backoff(initial=0.02, maximum=0.1)


def camera_config(source: str, **overrides: object) -> OpenCvCameraConfig:
    fields: dict[str, object] = {
        "type": "opencv_camera",
        "source": source,
        "open_timeout_s": 2.0,
        "read_timeout_s": 1.0,
    }
    fields.update(overrides)
    return OpenCvCameraConfig.model_validate(fields)
