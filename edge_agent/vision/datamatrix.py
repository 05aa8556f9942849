"""Read the label's GS1 DataMatrix from the camera frame: the camera as a third ID source.

The label has already been located, so the DataMatrix's place is known: the frame's
pixels around its region of the canonical layout (plus a quiet zone) are cut out and
turned grey (some ten thousand pixels, not the whole frame), and zxing-cpp, told what to
expect (one DataMatrix, dark on light, at one scale), reads them as they are; only if
that fails is the region warped upright first. That costs a fraction of a model
invocation (it cost more than the rest of the check when every read warped a
two-times-enlarged colour region).
"""

from __future__ import annotations

import math
from typing import Final

import cv2
import numpy as np
import zxingcpp
from numpy.typing import NDArray

from edge_agent.vision.layout import LABEL_H, LABEL_W, REGIONS

__all__ = ["datamatrix_image", "read_item_id"]

_PIXELS_PER_UNIT: Final = 1.25
"""Scale of the warped DataMatrix image, pixels per canonical label pixel: a module is
about 4 pixels, as in the frame. At 1.0 a few more codes failed; 2.0 cost more, read
no more."""
_QUIET: Final = 6
"""Canonical pixels of the label's white margin kept around the symbol (its quiet zone)."""
_LABEL: Final = np.array(
    [[-0.5, -0.5], [LABEL_W - 0.5, -0.5], [LABEL_W - 0.5, LABEL_H - 0.5], [-0.5, LABEL_H - 0.5]],
    dtype=np.float32,
)
"""The label's outer corners in canonical coordinates (pixel centres at integers)."""


def _region_geometry() -> tuple[list[tuple[float, float]], NDArray[np.float32], tuple[int, int]]:
    """The quiet-zoned DataMatrix region's outer corners in canonical coordinates, the
    corners of the image it is warped to, and that image's size."""
    region = REGIONS["datamatrix"]
    x0, y0 = region.x - _QUIET - 0.5, region.y - _QUIET - 0.5
    x1, y1 = x0 + region.w + 2 * _QUIET, y0 + region.h + 2 * _QUIET
    width = round((region.w + 2 * _QUIET) * _PIXELS_PER_UNIT)
    height = round((region.h + 2 * _QUIET) * _PIXELS_PER_UNIT)
    image = np.array(
        [[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]],
        dtype=np.float32,
    )
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], image, (width, height)


_REGION, _IMAGE, _SIZE = _region_geometry()


def _frame_region(
    frame: NDArray[np.uint8], corners: NDArray[np.float32]
) -> tuple[NDArray[np.uint8], NDArray[np.float32]] | None:
    """The frame's pixels around the label's DataMatrix region (quiet zone included), in
    grey, and the region's outline (TL, TR, BR, BL) in them; None if that outline is
    not finite or not in front of the camera (corners that are not a label's)."""
    label_to_frame = cv2.getPerspectiveTransform(_LABEL, np.asarray(corners, dtype=np.float32))
    (a, b, c), (d, e, f), (g, h, i) = label_to_frame.tolist()
    outline = []
    for x, y in _REGION:  # four points: plain arithmetic beats numpy calls here
        w = g * x + h * y + i
        if not w > 1e-9:  # also NaN
            return None
        outline.append(((a * x + b * y + c) / w, (d * x + e * y + f) / w))
    xs, ys = [x for x, _ in outline], [y for _, y in outline]
    if not all(map(math.isfinite, xs + ys)):
        return None
    height, width = frame.shape[:2]
    x0 = min(max(math.floor(min(xs)) - 1, 0), width - 1)
    y0 = min(max(math.floor(min(ys)) - 1, 0), height - 1)
    x1 = max(min(math.ceil(max(xs)) + 2, width), x0 + 1)
    y1 = max(min(math.ceil(max(ys)) + 2, height), y0 + 1)
    grey = np.asarray(cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    return grey, np.array(outline, dtype=np.float32) - np.array([x0, y0], dtype=np.float32)


def _warped(grey: NDArray[np.uint8], outline: NDArray[np.float32]) -> NDArray[np.uint8]:
    """The region inside ``outline`` in ``grey``, warped upright to ``_SIZE`` (bilinear)."""
    to_image = cv2.getPerspectiveTransform(outline, _IMAGE)
    warped = cv2.warpPerspective(
        grey, to_image, _SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(warped, dtype=np.uint8)


def datamatrix_image(frame: NDArray[np.uint8], corners: NDArray[np.float32]) -> NDArray[np.uint8]:
    """The DataMatrix region of the label at ``corners``, upright and grey, with quiet zone
    (all white if ``corners`` are not a label's).

    Only the frame's pixels around the region are converted to grey; the warp then
    samples them bilinearly (the symbol's modules are only a few pixels wide).
    """
    found = _frame_region(frame, corners)
    if found is None:
        return np.full((_SIZE[1], _SIZE[0]), 255, np.uint8)
    return _warped(*found)


def _decode(image: NDArray[np.uint8], binarizer: zxingcpp.Binarizer) -> str | None:
    found = zxingcpp.read_barcodes(
        image,
        # zxing-cpp 2 and 3 both take a single format here; the stubs want the set type
        formats=zxingcpp.BarcodeFormat.DataMatrix,  # type: ignore[arg-type]
        try_rotate=False,  # the label is upright (within its tilt)
        try_downscale=False,  # modules are a few pixels: no smaller copy would read
        try_invert=False,  # printed dark on the light label
        binarizer=binarizer,
    )
    for barcode in found:
        if barcode.valid and barcode.text:
            return str(barcode.text)
    return None


def read_item_id(frame: NDArray[np.uint8], corners: NDArray[np.float32]) -> str | None:
    """The text of the label's DataMatrix (GS1 in bracketed ``(01)…`` form), or None.

    First from the frame's pixels around the region as they are, with one global
    threshold (zxing-cpp finds the symbol under the label's tilt and perspective; over
    99 % of fresh renders read so, at a third of the cost); failing that, from the
    region warped upright, thresholded locally (with the first, 100 % of 4000).
    """
    try:
        found = _frame_region(frame, corners)
        if found is None:
            return None
        grey, outline = found
        text = _decode(grey, zxingcpp.Binarizer.GlobalHistogram)
        if text is None:
            text = _decode(_warped(grey, outline), zxingcpp.Binarizer.LocalAverage)
        return text
    except (cv2.error, RuntimeError, ValueError):
        return None
