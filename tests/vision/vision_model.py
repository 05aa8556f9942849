"""The TFLite model the vision tests run: the shipped one, or ``PROVGATE_TEST_MODEL``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_agent.vision.config import DEFAULT_MODEL_PATH


def model_under_test() -> Path:
    """The model file to test with; fails the test (not skips) when there is none."""
    path = Path(os.environ.get("PROVGATE_TEST_MODEL") or DEFAULT_MODEL_PATH)
    if not path.is_file():
        pytest.fail(f"no label model at {path} (ship models/label_check.tflite)", pytrace=False)
    return path
