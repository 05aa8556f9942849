"""The colour-shifting film check: how far the patch's hue moves between two lighting angles.

A genuine film patch changes hue with the lighting angle (by tens of degrees); a flat
print of it keeps one hue. With two frames of the same label under different lights
(two LEDs or two cameras at the gate), the circular mean hue of the patch's coloured
pixels is measured in each warped label and the two are compared.
"""

from __future__ import annotations

import math
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.vision.layout import REGIONS

__all__ = ["MIN_SATURATION", "hue_shift", "patch_hue"]

MIN_SATURATION: Final = 0.25
"""Pixels less saturated than this (0–1) have no meaningful hue and are ignored."""
_MIN_COLOURED_FRACTION: Final = 0.05
"""A patch with fewer coloured pixels than this has no hue (missing or grey)."""
_INSET: Final = 0.12
"""Fraction of the patch trimmed off each side, so a slightly-off warp sees no paper."""


def patch_hue(label_bgr: NDArray[np.uint8], min_saturation: float = MIN_SATURATION) -> float | None:
    """Circular mean hue (degrees, 0–360) of the film patch in an upright label image.

    Saturation-weighted over the patch's coloured pixels; None when too few pixels are
    coloured for a hue (a missing, grey or washed-out patch).
    """
    height, width = label_bgr.shape[:2]
    x0, y0, x1, y1 = REGIONS["patch"].scaled(width, height)
    dx, dy = round((x1 - x0) * _INSET), round((y1 - y0) * _INSET)
    patch = label_bgr[y0 + dy : y1 - dy, x0 + dx : x1 - dx]
    if patch.size == 0:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_BGR2HSV_FULL)
    hue = hsv[..., 0].astype(np.float32) * np.float32(2 * math.pi / 256)
    saturation = hsv[..., 1].astype(np.float32) / np.float32(255)
    weight = np.where(saturation >= min_saturation, saturation, np.float32(0))
    if np.count_nonzero(weight) < _MIN_COLOURED_FRACTION * weight.size:
        return None
    angle = math.atan2(float((weight * np.sin(hue)).sum()), float((weight * np.cos(hue)).sum()))
    return math.degrees(angle) % 360.0


def hue_shift(first_label: NDArray[np.uint8], second_label: NDArray[np.uint8]) -> float | None:
    """How far the patch's hue moved between two upright label images, degrees (0–180).

    None when either patch has no hue.
    """
    first, second = patch_hue(first_label), patch_hue(second_label)
    if first is None or second is None:
        return None
    difference = abs(first - second) % 360.0
    return min(difference, 360.0 - difference)
