"""Text drawn as Hershey-font strokes, identical under every OpenCV version.

``cv2.putText`` draws different glyphs in OpenCV 4 and 5, so a label rendered in one
environment would not match the same label rendered in the other. Here the glyph outlines
come from the pinned Hershey-Fonts package and only ``cv2.polylines`` (anti-aliased,
sub-pixel ``shift``) touches the image, which both versions draw alike.

Sizes are cap heights in pixels (the height of ``H``); ``org`` is the left end of the
baseline, as for ``cv2.putText``; ``tracking`` adds that many pixels between letters.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
from HersheyFonts import HersheyFonts
from numpy.typing import NDArray

__all__ = ["FACES", "put_text", "text_width"]

FACES: Final = (
    "futural",
    "futuram",
    "timesr",
    "timesrb",
    "timesi",
    "timesib",
    "scripts",
    "scriptc",
    "gothiceng",
)
"""Built-in Hershey faces text may be drawn in: sans simplex and duplex, serif, serif bold,
italic, bold italic, two scripts and blackletter. (The package's ``rowmans``, ``rowmand``,
``rowmant`` and ``cursive`` repeat ``futural``, ``futuram``, ``timesrb`` and ``scripts``.)"""

_SHIFT: Final = 4
"""Fractional bits of the polyline coordinates: 1/16 px positions."""
_CAP_UNITS: Final = 21.0
"""Hershey cap height: cap line -12 to baseline +9 font units."""
_BASELINE: Final = 9
_FALLBACK: Final = "?"

Bgr = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class _Glyph:
    points: NDArray[np.float64]
    """All stroke vertices, font units, x from the glyph's left side, y down from the
    baseline (read-only)."""
    breaks: tuple[int, ...]
    """Index in ``points`` where each stroke after the first starts."""
    advance: int
    """Distance to the next glyph's left side, font units."""


@functools.cache
def _loader() -> HersheyFonts:
    """One loader for every face: it unpacks the package's font archive to list its faces
    once, not per face."""
    return HersheyFonts()


@functools.cache
def _face(face: str) -> dict[str, _Glyph]:
    """The glyphs of built-in Hershey face ``face`` (ValueError if there is none)."""
    if face not in FACES:
        raise ValueError(f"unknown Hershey face {face!r}; choose one of {', '.join(FACES)}")
    font = _loader()
    font.load_default_font(face)
    glyphs: dict[str, _Glyph] = {}
    for char, glyph in font.all_glyphs.items():
        strokes = [s for s in glyph.strokes if len(s) >= 2]
        if strokes:
            points = np.array([p for s in strokes for p in s], np.float64)
            points -= (glyph.left_offset, _BASELINE)
        else:
            points = np.zeros((0, 2), np.float64)
        points.setflags(write=False)
        breaks = tuple(np.cumsum([len(s) for s in strokes])[:-1].tolist())
        glyphs[char] = _Glyph(points, breaks, glyph.char_width)
    return glyphs


def _glyph(glyphs: dict[str, _Glyph], char: str) -> _Glyph:
    return glyphs.get(char) or glyphs[_FALLBACK]


def _scale(cap_height_px: float) -> float:
    if not cap_height_px > 0:
        raise ValueError(f"cap height must be positive, got {cap_height_px}")
    return cap_height_px / _CAP_UNITS


def text_width(text: str, face: str, cap_height_px: float, tracking: float = 0.0) -> float:
    """Advance width of ``text`` in pixels: from ``org`` to the end of its last letter."""
    glyphs, scale = _face(face), _scale(cap_height_px)
    if not text:
        return 0.0
    units = sum(_glyph(glyphs, c).advance for c in text)
    return units * scale + tracking * (len(text) - 1)


def put_text(
    image: NDArray[np.uint8],
    text: str,
    org: tuple[float, float],
    face: str,
    cap_height_px: float,
    colour: Bgr | int,
    thickness: int = 1,
    tracking: float = 0.0,
) -> float:
    """Draw ``text`` into ``image`` in place with its baseline starting at ``org`` (may be
    fractional) and return its width as :func:`text_width` does.

    Strokes are ``thickness`` px wide (at least 1) and anti-aliased. Characters the face
    lacks are drawn as ``?``.
    """
    glyphs, scale = _face(face), _scale(cap_height_px)
    parts: list[NDArray[np.float64]] = []
    breaks: list[int] = []
    pen, count = 0.0, 0
    for char in text:
        glyph = _glyph(glyphs, char)
        if len(glyph.points):
            parts.append(glyph.points * scale + (pen, 0.0))
            breaks.extend(count + b for b in glyph.breaks)
            count += len(glyph.points)
            breaks.append(count)
        pen += glyph.advance * scale + tracking
    if parts:
        points = np.concatenate(parts) + org
        fixed = np.round(points * (1 << _SHIFT)).astype(np.int32)
        strokes = np.split(fixed, breaks[:-1])
        colour_value = (colour,) * 3 if isinstance(colour, int) else colour
        cv2.polylines(
            image, strokes, False, colour_value, max(1, int(thickness)), cv2.LINE_AA, _SHIFT
        )
    return max(0.0, pen - tracking) if text else 0.0
