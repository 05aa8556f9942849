"""What the label model's configuration names of the runtime, importable without NumPy.

The gate profile (and with it every ``provgate`` command) validates the vision settings;
keeping these here spares them importing NumPy and the TFLite runtimes
(:mod:`edge_agent.vision.runtime` re-exports both).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ModelLoadError", "RuntimeName"]

RuntimeName = Literal["auto", "ai_edge_litert", "tflite_runtime"]
"""Which TFLite runtime runs the model: the first that imports, or the one named."""


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable, or not a label model this code can run."""
