"""How each counterfeit kind departs from the genuine label, scaled by its severity.

A :class:`Defect` says which style the static artwork is drawn in, what stands in for the
film patch, and whether the whole label is then photocopied. Every kind stays visible in a
single frame at the lowest default severity (0.4) after capture and the runtime's warp to
about half the canonical size: the magnitudes below were chosen for that.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Final, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.vision.layout import LabelKind
from simulators.labels.artwork import LabelStyle, genuine_style
from simulators.labels.brands import Brand, LogoShape

__all__ = ["Defect", "make_defect", "photocopy"]

Image = NDArray[np.uint8]
Bgr = tuple[int, int, int]

_FACE_FAMILIES: Final = (
    ("futural", "futuram"),
    ("timesr", "timesrb"),
    ("timesi", "timesib"),
    ("scripts", "scriptc"),
)
"""Hershey faces grouped by look: a wrong font comes from another group than the right one
(a sans face for a serif one, never its bolder twin)."""
_WRONG_FACES: Final = ("futural", "futuram", "timesr", "timesrb", "timesi", "timesib", "scripts")

PatchMode = Literal["film", "flat", "missing"]


@dataclass(frozen=True, slots=True)
class Defect:
    """A counterfeit's departures from the genuine label (none for a genuine one)."""

    style: LabelStyle
    patch: PatchMode = "film"
    flat_hue: float = 0.0
    """Hue of a flat-printed patch, degrees."""
    photocopy: float = 0.0
    """Severity of photocopy artefacts over the whole label (0 = not a copy)."""


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _distort_shape(
    shape: LogoShape, shift: float, stretch: float, rng: np.random.Generator
) -> LogoShape:
    angle = rng.uniform(0, 2 * math.pi)
    dx, dy = shift * math.cos(angle), shift * math.sin(angle)
    sx = 1.0 + _sign(rng) * stretch
    sy = 1.0 + rng.uniform(-0.3, 0.3) * stretch
    pts = np.array(shape.points, np.float64)
    centre = pts.mean(axis=0)
    moved = (pts - centre) * (sx, sy) + centre + (dx, dy)
    thickness = shape.thickness
    if thickness > 0:
        thickness = max(1.0, thickness * (1.0 + _sign(rng) * (0.5 + stretch)))
    return dataclasses.replace(
        shape,
        points=tuple((float(x), float(y)) for x, y in moved),
        size=shape.size * sx,
        thickness=thickness,
    )


def _distorted_logo(
    logo: tuple[LogoShape, ...], severity: float, rng: np.random.Generator
) -> tuple[LogoShape, ...]:
    """Every shape moved and stretched; the first (largest) by the full amount."""
    shift = 4.0 + 6.0 * severity  # canonical pixels
    stretch = 0.12 + 0.2 * severity
    shapes = []
    for index, shape in enumerate(logo):
        part = 1.0 if index == 0 else rng.uniform(0.5, 1.0)
        shapes.append(_distort_shape(shape, shift * part, stretch * part, rng))
    return tuple(shapes)


def _off_colour(colour: Bgr, severity: float, direction: float) -> Bgr:
    """``colour`` with its hue turned (or a near-grey ink lightened) beyond tolerance."""
    pixel = np.array([[colour]], np.float32) / 255.0
    hsv = cv2.cvtColor(pixel, cv2.COLOR_BGR2HSV)
    if hsv[0, 0, 1] < 0.3:
        hsv[0, 0, 2] = min(1.0, hsv[0, 0, 2] + 0.25 + 0.3 * severity)
        hsv[0, 0, 1] = 0.5
    else:
        hsv[0, 0, 0] = (hsv[0, 0, 0] + direction * (45.0 + 45.0 * severity)) % 360.0
        hsv[0, 0, 1] *= 1.0 - 0.2 * severity
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0] * 255.0
    return (round(float(bgr[0])), round(float(bgr[1])), round(float(bgr[2])))


def _other_font(face: str, rng: np.random.Generator) -> str:
    """A face from another family than ``face``: clearly different letter shapes."""
    family = next((f for f in _FACE_FAMILIES if face in f), (face,))
    choices = [f for f in _WRONG_FACES if f not in family]
    return choices[int(rng.integers(0, len(choices)))]


def make_defect(kind: LabelKind, brand: Brand, severity: float, rng: np.random.Generator) -> Defect:
    """The departures of a ``kind`` counterfeit of ``brand`` at ``severity`` (0–1)."""
    style = genuine_style(brand)
    kind = LabelKind(kind)
    if kind is LabelKind.GENUINE:
        return Defect(style)
    if kind is LabelKind.PATCH_FLAT:
        hue = brand.film_hue + brand.film_shift * rng.uniform(0.0, 1.0)
        return Defect(style, patch="flat", flat_hue=hue)
    if kind is LabelKind.PATCH_MISSING:
        return Defect(style, patch="missing")
    if kind is LabelKind.LOGO_DISTORTED:
        return Defect(dataclasses.replace(style, logo=_distorted_logo(style.logo, severity, rng)))
    if kind is LabelKind.MICROTEXT_BLURRED:
        thickness = 4 if severity < 0.7 else 5  # ink spread: strokes 2–2.5 canonical px
        blur = 1.0 + 1.5 * severity
        return Defect(
            dataclasses.replace(style, microtext_thickness=thickness, microtext_blur=blur)
        )
    if kind is LabelKind.WRONG_FONT:
        return Defect(
            dataclasses.replace(
                style,
                brand_font=_other_font(brand.brand_font, rng),
                product_font=_other_font(brand.product_font, rng),
                tracking=brand.tracking + _sign(rng) * (2.0 + 4.0 * severity),
                product_tracking=0.5 + (1.0 + 1.5 * severity) * _sign(rng),
            )
        )
    if kind is LabelKind.OFF_COLOUR:
        direction = _sign(rng)
        return Defect(
            dataclasses.replace(
                style,
                primary=_off_colour(brand.primary, severity, direction),
                secondary=_off_colour(brand.secondary, severity, direction),
            )
        )
    if kind is LabelKind.PHOTOCOPY:
        return Defect(style, patch="flat", flat_hue=brand.film_hue, photocopy=severity)
    raise ValueError(f"unknown label kind {kind!r}")


@functools.cache
def _screen(height: int, width: int) -> Image:
    """A halftone screen of 3-pixel period, 0…255."""
    ys, xs = np.mgrid[0:height, 0:width]
    screen = (np.cos(ys * (2 * np.pi / 3)) + np.cos(xs * (2 * np.pi / 3)) + 2.0) * 63.75
    out = cv2.cvtColor(np.asarray(np.round(screen), np.uint8), cv2.COLOR_GRAY2BGR)
    out.setflags(write=False)
    return np.asarray(out)


def photocopy(label: Image, severity: float, rng: np.random.Generator) -> Image:
    """``label`` (canonical size) as a colour copier reproduces it: weak colour, grey
    blacks and whites, a halftone screen, soft detail and toner speckle."""
    grey = cv2.cvtColor(cv2.cvtColor(label, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    keep = 0.5 - 0.35 * severity
    mixed = cv2.addWeighted(label, keep, grey, 1.0 - keep, 0.0)
    low, high = 45.0 + 45.0 * severity, 236.0 - 16.0 * severity
    depth = (12.0 + 20.0 * severity) / 255.0  # halftone screen strength
    lift = low + depth * 127.5  # the screen takes this much back on average
    copy = cv2.convertScaleAbs(mixed, alpha=(high - low) / 255.0, beta=lift)
    copy = cv2.GaussianBlur(copy, (0, 0), 0.45)
    height, width = copy.shape[:2]
    copy = cv2.subtract(copy, cv2.convertScaleAbs(_screen(height, width), alpha=depth))
    count = int(80 + 220 * severity)
    sy = rng.integers(0, height, count)
    sx = rng.integers(0, width, count)
    copy[sy, sx] = rng.integers(50, 120, (count, 1)).astype(np.uint8)
    return np.asarray(copy)
