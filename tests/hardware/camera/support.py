"""Helpers for camera tests: configs with short timeouts and a polling wait."""

from __future__ import annotations

import time
from collections.abc import Callable

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


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
