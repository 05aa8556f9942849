"""Configuration of the camera label check, and the decision threshold from the model card."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.vision.model_card import card_paths
from edge_agent.vision.runtime_names import ModelLoadError, RuntimeName

__all__ = [
    "DEFAULT_CARD_PATH",
    "DEFAULT_MODEL_PATH",
    "DEFAULT_THRESHOLD",
    "VisionConfig",
    "card_path_for",
    "read_card_threshold",
]

_log = logging.getLogger(__name__)

_REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_PATH: Final = _REPO_ROOT / "models" / "label_check.tflite"
"""The shipped model (trained on synthetic labels; see its card)."""
DEFAULT_CARD_PATH: Final = _REPO_ROOT / "models" / "label_check.card.json"
DEFAULT_THRESHOLD: Final = 0.5
"""Used only when neither the configuration nor the model card gives a threshold."""
_MAX_CARD_BYTES: Final = 1024 * 1024


def card_path_for(model_path: Path) -> Path:
    """The model card beside a model: ``label_check.tflite`` → ``label_check.card.json``
    (the file training writes, :func:`~edge_agent.vision.model_card.card_paths`)."""
    return card_paths(model_path)[0]


def read_card_threshold(card_path: Path, model_path: Path | None = None) -> float | None:
    """The ``threshold`` in a model card, None if the card is absent.

    ModelLoadError if the card exists but is unreadable, has no threshold, or its
    threshold is not in (0, 1]: a threshold of 0 would pass every label. Given
    ``model_path``, also if the card's ``model_sha256`` is not that file's (a stale card
    beside a replaced model would set another model's threshold).
    """
    try:
        if card_path.stat().st_size > _MAX_CARD_BYTES:
            raise ModelLoadError(f"model card {card_path} is too large")
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read model card {card_path}: {exc}") from exc
    threshold = card.get("threshold") if isinstance(card, dict) else None
    if threshold is None:
        raise ModelLoadError(f"model card {card_path} has no threshold")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not (0.0 < threshold <= 1.0 and math.isfinite(threshold))  # a huge int: no float
    ):
        raise ModelLoadError(
            f"model card {card_path}: threshold {threshold!r} is not above 0 and at most 1"
        )
    expected = card.get("model_sha256")
    if model_path is not None and expected is not None:
        try:
            actual = hashlib.sha256(model_path.read_bytes()).hexdigest()
        except OSError as exc:
            raise ModelLoadError(f"cannot read model {model_path}: {exc.strerror}") from exc
        if actual != expected:
            raise ModelLoadError(
                f"model card {card_path} is for another model (SHA-256 {expected!r}, "
                f"{model_path.name} has {actual})"
            )
    return float(threshold)


class VisionConfig(BaseModel):
    """The camera label check: which model, how it runs, and what the gate offers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: Path = Field(
        default=DEFAULT_MODEL_PATH,
        title="Model file",
        description=(
            "Full-integer TFLite label model: input [1, H, W, 3] BGR label image, output "
            "the probability that the label is genuine. Defaults to the shipped model."
        ),
    )
    card_path: Path | None = Field(
        default=None,
        title="Model card",
        description=(
            "JSON model card whose 'threshold' is the decision threshold; default: the "
            "card beside the model (label_check.tflite → label_check.card.json)."
        ),
    )
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        title="Genuine threshold",
        description=(
            "Model scores below this mark the label suspect. Default: the model card's "
            f"threshold, or {DEFAULT_THRESHOLD} without a card."
        ),
    )
    runtime: RuntimeName = Field(
        default="auto",
        title="TFLite runtime",
        description=(
            "'ai_edge_litert', 'tflite_runtime', or 'auto' (the first that imports; "
            "the PROVGATE_TFLITE_RUNTIME environment variable overrides 'auto')."
        ),
    )
    num_threads: int = Field(
        default=1,
        ge=1,
        le=8,
        title="Inference threads",
        description="Threads the interpreter may use; 1 leaves the other cores to the agent.",
    )
    two_frame: bool = Field(
        default=False,
        title="Two-frame colour-shift check",
        description=(
            "The gate takes two frames of each label under different lighting angles (two "
            "LEDs or two cameras); the film patch's hue shift between them feeds the verdict."
        ),
    )
    min_hue_shift_deg: float = Field(
        default=20.0,
        ge=0.0,
        le=180.0,
        title="Minimum hue shift",
        description=(
            "With two frames, a patch whose hue moves less than this (degrees) between "
            "them is a flat print: the label is suspect ('colour_shift_flat')."
        ),
    )
    decode_datamatrix: bool = Field(
        default=True,
        title="Decode DataMatrix",
        description="Read the label's GS1 DataMatrix as a third source of the item's ID.",
    )
    queue_size: int = Field(
        default=16,
        ge=1,
        le=256,
        title="Worker queue size",
        description=(
            "Checks waiting for the vision worker; when full, a new check is answered "
            "at once as unreadable ('vision_busy') rather than blocking the caller. The "
            "default, 16, is ~50 ms of checks: a burst rides it out well inside a deadline."
        ),
    )

    def resolved_threshold(self) -> float:
        """The threshold in force: this configuration's, else the card's, else the default."""
        if self.threshold is not None:
            return self.threshold
        card = self.card_path or card_path_for(self.model_path)
        from_card = read_card_threshold(card, self.model_path)
        if from_card is None and self.card_path is not None:
            raise ModelLoadError(f"model card {card} does not exist")
        if from_card is None:
            _log.warning("no model card threshold at %s; using %s", card, DEFAULT_THRESHOLD)
            return DEFAULT_THRESHOLD
        return from_card
