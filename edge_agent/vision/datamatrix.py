"""Read the label's GS1 DataMatrix from the camera frame: the camera as a third ID source.

The label has already been located, so the DataMatrix's place is known: its region of
the canonical layout (plus a quiet zone) is warped upright out of the full-resolution
frame at a fixed scale, in grey, and zxing-cpp decodes it there. This runs after the
verdict's timed path; it costs more than the rest of the pipeline together.
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np
import zxingcpp
from numpy.typing import NDArray

from edge_agent.vision.layout import LABEL_H, LABEL_W, REGIONS

__all__ = ["datamatrix_image", "read_item_id"]

_PIXELS_PER_UNIT: Final = 2.0
"""Scale of the warped DataMatrix image, pixels per canonical label pixel."""
_QUIET: Final = 6
"""Canonical pixels of the label's white margin kept around the symbol (its quiet zone)."""


def datamatrix_image(frame: NDArray[np.uint8], corners: NDArray[np.float32]) -> NDArray[np.uint8]:
    """The DataMatrix region of the label at ``corners``, upright and grey, with quiet zone."""
    region = REGIONS["datamatrix"]
    label = np.array(
        [
            [-0.5, -0.5],
            [LABEL_W - 0.5, -0.5],
            [LABEL_W - 0.5, LABEL_H - 0.5],
            [-0.5, LABEL_H - 0.5],
        ],
        dtype=np.float32,
    )
    label_to_frame = cv2.getPerspectiveTransform(label, np.asarray(corners, dtype=np.float32))
    k = _PIXELS_PER_UNIT
    out_to_label = np.array(
        [
            [1 / k, 0, region.x - _QUIET - 0.5 + 0.5 / k],
            [0, 1 / k, region.y - _QUIET - 0.5 + 0.5 / k],
            [0, 0, 1],
        ]
    )
    size = (round((region.w + 2 * _QUIET) * k), round((region.h + 2 * _QUIET) * k))
    warped = cv2.warpPerspective(
        frame,
        label_to_frame @ out_to_label,
        size,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.asarray(cv2.cvtColor(warped, cv2.COLOR_BGR2GRAY), dtype=np.uint8)


def read_item_id(frame: NDArray[np.uint8], corners: NDArray[np.float32]) -> str | None:
    """The text of the label's DataMatrix (GS1 in bracketed ``(01)…`` form), or None."""
    image = datamatrix_image(frame, corners)
    try:
        found = zxingcpp.read_barcodes(
            image,
            # zxing-cpp 2 and 3 both take a single format here; the stubs want the set type
            formats=zxingcpp.BarcodeFormat.DataMatrix,  # type: ignore[arg-type]
            try_rotate=False,  # upright already; both flags exist since zxing-cpp 2.0
            try_downscale=False,
        )
    except (RuntimeError, ValueError):
        return None
    for barcode in found:
        if barcode.valid and barcode.text:
            return barcode.text
    return None
