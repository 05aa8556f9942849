"""The colour-shifting film patch: genuine diffraction film and the flat or missing fakes.

Genuine film shows fine rainbow stripes (a diffraction grating, wavy like a guilloche)
over a sheen gradient; its mean hue moves by the brand's ``film_shift`` (≥ 75°) from
lighting angle A to angle B while the stripes and the sheen move too. A flat print has one
hue at both angles and at most a faint imitation of the stripes, plus a halftone screen.
"""

from __future__ import annotations

import functools
import math
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["film_patch", "flat_patch", "hue_shift_deg", "mean_hue_deg", "missing_patch"]

_STRIPE_PERIOD: Final = 7.0
"""Stripe period in canonical pixels: 3.5 px at the runtime's 160 × 96 warp, still seen."""
_STRIPE_ANGLE: Final = math.radians(60.0)
_HUE_SWING: Final = 28.0
_SHEEN_SWING: Final = 30.0

Image = NDArray[np.uint8]
Field = NDArray[np.float32]


@functools.cache
def _fields(width: int, height: int, scale: float) -> tuple[Field, Field, Field]:
    """Stripe phase, sheen gradient (-1…1) and halftone screen (0…1) of a patch."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) / np.float32(scale)
    period = _STRIPE_PERIOD
    phase = 2 * np.pi * (xs * math.cos(_STRIPE_ANGLE) + ys * math.sin(_STRIPE_ANGLE)) / period
    phase += 1.3 * np.sin(2 * np.pi * ys / 37.0) + 0.8 * np.sin(2 * np.pi * xs / 53.0)
    diag = xs / max(1.0, width / scale) - ys / max(1.0, height / scale)  # -1 … 1
    dots = 0.5 + 0.25 * (np.cos(np.pi * xs) + np.cos(np.pi * ys))  # 2-px halftone screen
    return phase.astype(np.float32), diag.astype(np.float32), dots.astype(np.float32)


def _quantise(hue: Field, sat: Field, val: Field) -> Image:
    """HSV fields (hue in degrees *relative* to the mean, -90…90) as OpenCV 8-bit HSV with
    hue stored offset by 90 (so the mean hue is applied later through a lookup table)."""
    h = np.clip(np.round(hue / 2.0) + 45, 0, 179)
    hsv = cv2.merge([h, np.clip(sat, 0, 1) * 255.0, np.clip(val, 0, 1) * 255.0])
    out = np.asarray(np.round(hsv), np.uint8)
    out.setflags(write=False)
    return out


@functools.cache
def _film_fields(width: int, height: int, scale: float, angle_b: bool) -> Image:
    phase, diag, _ = _fields(width, height, scale)
    turn = np.float32(np.pi / 2 if angle_b else 0.0)
    sheen = -diag if angle_b else diag
    h = _HUE_SWING * np.sin(phase + turn) + _SHEEN_SWING * sheen
    s = 0.78 + 0.2 * np.cos(phase + turn)
    v = 0.68 + 0.22 * np.sin(phase + turn + 1.0) + 0.12 * np.exp(-((sheen - 0.4) ** 2) / 0.08)
    return _quantise(h, s, v)


@functools.lru_cache(maxsize=64)
def _flat_fields(width: int, height: int, scale: float, texture: float, screen: float) -> Image:
    phase, diag, dots = _fields(width, height, scale)
    h = texture * _HUE_SWING * np.sin(phase) + 6.0 * diag
    s = 0.62 + texture * 0.2 * np.cos(phase) - 0.1 * screen * dots
    v = 0.82 + texture * 0.2 * np.sin(phase + 1.0) - (0.08 + 0.12 * screen) * dots
    return _quantise(h, s, v)


def _with_hue(fields: Image, hue: float) -> Image:
    """Turn quantised relative HSV ``fields`` to BGR at mean hue ``hue`` (degrees)."""
    shift = round(hue / 2.0) - 45
    lut = ((np.arange(256) + shift) % 180).astype(np.uint8)
    h, s, v = cv2.split(fields)
    hsv = cv2.merge([cv2.LUT(h, lut), s, v])
    return np.asarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))


def film_patch(width: int, height: int, scale: float, hue: float, angle_b: bool) -> Image:
    """Genuine film of mean hue ``hue`` (degrees) as seen under lighting angle A or B."""
    return _with_hue(_film_fields(width, height, scale, angle_b), hue)


def flat_patch(width: int, height: int, scale: float, hue: float, severity: float) -> Image:
    """Flat print imitating the film: one hue at every angle, faint stripes, halftone.

    ``severity`` (0–1, quantised to tenths) fades the imitation stripes and coarsens the
    halftone.
    """
    level = round(severity * 10) / 10
    return _with_hue(_flat_fields(width, height, scale, 0.25 * (1.0 - level), level), hue)


def missing_patch(width: int, height: int, paper: tuple[int, int, int], severity: float) -> Image:
    """No film: bare paper (lower severity) or a plain silver-grey block (higher)."""
    patch = np.empty((height, width, 3), np.uint8)
    if severity < 0.6:
        patch[:] = paper
    else:
        grey = round(150 + 40 * (1.0 - severity))
        patch[:] = (grey, grey, grey + 4)
    return patch


def mean_hue_deg(image: Image, min_saturation: float = 0.2) -> float:
    """Circular mean hue (degrees, 0–360) of ``image``'s coloured pixels, saturation-weighted.

    Returns NaN when no pixel is saturated enough to have a hue.
    """
    hsv = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_BGR2HSV)
    hue = np.radians(hsv[..., 0])
    weight = np.where(hsv[..., 1] >= min_saturation, hsv[..., 1], 0.0)
    if float(weight.sum()) <= 0.0:
        return math.nan
    angle = math.atan2(float((weight * np.sin(hue)).sum()), float((weight * np.cos(hue)).sum()))
    return math.degrees(angle) % 360.0


def hue_shift_deg(first: Image, second: Image) -> float:
    """Absolute difference of the two images' mean hues, degrees (0–180; NaN if no hue)."""
    diff = abs(mean_hue_deg(first) - mean_hue_deg(second)) % 360.0
    return min(diff, 360.0 - diff)
