"""The label the vision check knows: its canonical geometry, regions and counterfeit kinds.

Every product label carries the same security layout, drawn in *canonical label
coordinates*: a ``LABEL_W`` × ``LABEL_H`` rectangle, origin top left, x to the right.
The renderer (:mod:`simulators.labels`) draws into these coordinates; the runtime
pipeline warps the label it finds in a camera frame back into them (at any scale), so
both sides agree on where the colour-shifting patch, the microtext and the DataMatrix are.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "COUNTERFEIT_KINDS",
    "LABEL_ASPECT",
    "LABEL_H",
    "LABEL_W",
    "REGIONS",
    "LabelKind",
    "Region",
]

LABEL_W: Final = 320
"""Canonical label width (the long side, horizontal in an upright label)."""
LABEL_H: Final = 192
"""Canonical label height."""
LABEL_ASPECT: Final = LABEL_W / LABEL_H


@dataclass(frozen=True, slots=True)
class Region:
    """An axis-aligned rectangle in canonical label coordinates."""

    x: int
    y: int
    w: int
    h: int

    def scaled(self, width: int, height: int) -> tuple[int, int, int, int]:
        """This region in a label image of ``width`` × ``height`` (x0, y0, x1, y1)."""
        sx, sy = width / LABEL_W, height / LABEL_H
        return (
            round(self.x * sx),
            round(self.y * sy),
            round((self.x + self.w) * sx),
            round((self.y + self.h) * sy),
        )


REGIONS: Final[dict[str, Region]] = {
    "logo": Region(12, 12, 96, 72),
    "brand_text": Region(120, 12, 188, 40),
    "product_text": Region(120, 56, 188, 22),
    "microtext": Region(120, 84, 188, 14),
    "patch": Region(12, 100, 96, 80),
    "details_text": Region(120, 106, 100, 74),
    "datamatrix": Region(232, 104, 76, 76),
}
"""Where each element of the label sits. A quiet white margin of at least 8 canonical
pixels surrounds everything, so the label's outline is easy to find on a belt."""


class LabelKind(StrEnum):
    """What a rendered label is: genuine, or which kind of counterfeit."""

    GENUINE = "genuine"
    PATCH_FLAT = "patch_flat"
    """Colour-shift film imitated by flat print: same hue at every angle, no diffraction."""
    PATCH_MISSING = "patch_missing"
    """No security patch at all (plain paper or a plain colour block)."""
    LOGO_DISTORTED = "logo_distorted"
    """Logo redrawn by hand: proportions, stroke widths or positions slightly off."""
    MICROTEXT_BLURRED = "microtext_blurred"
    """Microtext printed at too low a resolution: blurred or filled in."""
    WRONG_FONT = "wrong_font"
    """Product text in another font or with wrong kerning."""
    OFF_COLOUR = "off_colour"
    """Brand colours off (hue or saturation shifted beyond print tolerance)."""
    PHOTOCOPY = "photocopy"
    """A copy of a genuine label: halftone/dither, contrast loss, toner speckle."""


COUNTERFEIT_KINDS: Final = tuple(k for k in LabelKind if k is not LabelKind.GENUINE)
