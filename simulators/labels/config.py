"""What the label renderer varies, and within which ranges: :class:`RenderConfig`."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.vision.layout import COUNTERFEIT_KINDS, LabelKind

__all__ = ["FloatRange", "RenderConfig"]

FloatRange = tuple[float, float]
"""An inclusive ``(low, high)`` range a value is drawn from uniformly."""

_Unit = Annotated[float, Field(ge=0.0, le=1.0)]


def _default_weights() -> dict[LabelKind, float]:
    return dict.fromkeys(COUNTERFEIT_KINDS, 1.0)


class RenderConfig(BaseModel):
    """Mix of counterfeit kinds, defect severity and capture variation of rendered labels.

    The defaults are what training and evaluation use: every genuine label stays clearly
    apart from every counterfeit, even at the lowest severity and the worst capture.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    frame_width: int = Field(
        default=640,
        ge=160,
        le=4096,
        title="Frame width",
        description="Width of each camera frame in pixels.",
    )
    frame_height: int = Field(
        default=480,
        ge=120,
        le=4096,
        title="Frame height",
        description="Height of each camera frame in pixels.",
    )
    counterfeit_share: _Unit = Field(
        default=0.5,
        title="Counterfeit share",
        description="Fraction of a rendered data set that is counterfeit (0–1).",
    )
    kinds: dict[LabelKind, float] = Field(
        default_factory=_default_weights,
        title="Counterfeit kind weights",
        description=(
            "Relative frequency of each counterfeit kind among the counterfeits; kinds left "
            "out are never drawn. Weights are non-negative and at least one is positive."
        ),
    )
    severity: FloatRange = Field(
        default=(0.4, 1.0),
        title="Severity range",
        description="Range (0–1) the strength of a counterfeit's defect is drawn from.",
    )
    label_width: FloatRange = Field(
        default=(0.45, 0.70),
        title="Label width",
        description="Range of the label's long side as a fraction of the frame width.",
    )
    rotation_deg: float = Field(
        default=20.0,
        ge=0.0,
        le=30.0,
        title="Rotation",
        description="Largest in-plane rotation of the label, degrees either way.",
    )
    perspective: float = Field(
        default=0.03,
        ge=0.0,
        le=0.1,
        title="Perspective",
        description="Largest shift of each label corner, as a fraction of the label width.",
    )
    brightness: FloatRange = Field(
        default=(0.8, 1.12),
        title="Brightness",
        description="Range of the overall illumination gain.",
    )
    white_balance: float = Field(
        default=0.06,
        ge=0.0,
        le=0.2,
        title="White balance",
        description="Largest per-channel gain error of the camera's white balance (±).",
    )
    illumination_gradient: float = Field(
        default=0.15,
        ge=0.0,
        le=0.5,
        title="Illumination gradient",
        description="Largest brightness change from one side of the frame to the other.",
    )
    blur_sigma: FloatRange = Field(
        default=(0.0, 0.7),
        title="Focus blur",
        description="Range of the Gaussian focus blur, sigma in frame pixels.",
    )
    motion_blur: FloatRange = Field(
        default=(0.0, 1.5),
        title="Motion blur",
        description="Range of the motion blur length in frame pixels (random direction).",
    )
    noise_sigma: FloatRange = Field(
        default=(1.0, 5.0),
        title="Sensor noise",
        description="Range of the Gaussian sensor noise, sigma in 8-bit grey levels.",
    )
    jpeg_quality: tuple[int, int] = Field(
        default=(70, 95),
        title="JPEG quality",
        description="Range of the JPEG quality each frame is encoded and decoded at.",
    )
    occlusion_probability: _Unit = Field(
        default=0.25,
        title="Occlusion probability",
        description=(
            "Chance that a small object covers part of the label's edge (at most 10% of "
            "the label, never the patch or the DataMatrix)."
        ),
    )

    @field_validator("kinds")
    @classmethod
    def _kinds_valid(cls, weights: dict[LabelKind, float]) -> dict[LabelKind, float]:
        if LabelKind.GENUINE in weights:
            raise ValueError("kinds lists counterfeit kinds only, not 'genuine'")
        if any(w < 0 for w in weights.values()):
            raise ValueError("kinds must not be negative")
        if not any(w > 0 for w in weights.values()):
            raise ValueError("kinds needs at least one positive weight")
        return weights

    @field_validator("severity", "label_width", "blur_sigma", "motion_blur", "noise_sigma")
    @classmethod
    def _range_valid(cls, bounds: FloatRange) -> FloatRange:
        low, high = bounds
        if not 0.0 <= low <= high:
            raise ValueError(f"range must satisfy 0 <= low <= high, got {bounds}")
        return bounds

    @model_validator(mode="after")
    def _bounds_valid(self) -> Self:
        if self.severity[1] > 1.0:
            raise ValueError("severity range must lie within 0–1")
        if self.label_width[0] < 0.2 or self.label_width[1] > 0.8:
            raise ValueError("label_width range must lie within 0.2–0.8 of the frame width")
        low, high = self.jpeg_quality
        if not 10 <= low <= high <= 100:
            raise ValueError(f"jpeg_quality must satisfy 10 <= low <= high <= 100, got {low, high}")
        return self
