"""Label artwork in canonical coordinates, drawn at ``SCALE`` × for crisp fine detail.

A label is a static layer (paper, logo, brand and product text, microtext), cached per
brand and :class:`LabelStyle`, plus what changes per item: details text, the GS1
DataMatrix holding the item ID, and the film patch for one lighting angle. Counterfeits
are genuine artwork drawn with a perturbed :class:`LabelStyle` (see
:mod:`simulators.labels.counterfeit`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Final

import cv2
import numpy as np
import zxingcpp
from numpy.typing import NDArray

from edge_agent.vision.layout import LABEL_H, LABEL_W, REGIONS, Region
from simulators.labels.brands import Brand, LogoShape
from simulators.labels.text import put_text, text_width

__all__ = [
    "PAPER",
    "SCALE",
    "LabelStyle",
    "compose_label",
    "datamatrix_modules",
    "genuine_style",
    "paper",
    "region_slice",
]

SCALE: Final = 2
"""Artwork is drawn at this multiple of the canonical label size, then downsampled."""
PAPER: Final = (246, 247, 248)
INK: Final = (35, 35, 35)
_BRAND_CAP_H: Final = 22.0
_PRODUCT_CAP_H: Final = 10.0
_DETAILS_CAP_H: Final = 7.0
_MICRO_CAP_H: Final = 4.5
_DETAILS_FACE: Final = "futural"
_MICRO_FACE: Final = "futural"
_DM_SIZE: Final = 76

Image = NDArray[np.uint8]
Bgr = tuple[int, int, int]

_INKING: Final = np.array([[INK if v < 128 else PAPER for v in range(256)]], np.uint8)
"""Lookup table printing dark DataMatrix modules in ink on paper."""


@dataclass(frozen=True, slots=True)
class LabelStyle:
    """Everything in the static layer a counterfeiter can get wrong (hashable, cached)."""

    primary: Bgr
    secondary: Bgr
    brand_font: str
    """Hershey face of the brand name (see :data:`simulators.labels.text.FACES`)."""
    product_font: str
    tracking: float
    product_tracking: float = 0.5
    logo: tuple[LogoShape, ...] = field(default=())
    microtext_thickness: int = 1
    """Stroke width of the microtext at ``SCALE`` (1 = half a canonical pixel: fine print)."""
    microtext_blur: float = 0.0
    """Gaussian blur of the microtext band, sigma in canonical pixels (0 = crisp)."""


def genuine_style(brand: Brand) -> LabelStyle:
    """The style the brand owner prints."""
    return LabelStyle(
        primary=brand.primary,
        secondary=brand.secondary,
        brand_font=brand.brand_font,
        product_font=brand.product_font,
        tracking=brand.tracking,
        logo=brand.logo,
    )


def region_slice(name: str, scale: float = SCALE) -> tuple[slice, slice]:
    """Row and column slices of layout region ``name`` in a label drawn at ``scale``."""
    x0, y0, x1, y1 = REGIONS[name].scaled(round(LABEL_W * scale), round(LABEL_H * scale))
    return slice(y0, y1), slice(x0, x1)


def paper(height: int, width: int) -> Image:
    """A blank piece of label paper."""
    return _blank(height, width).copy()


@functools.lru_cache(maxsize=8)
def _blank(height: int, width: int) -> Image:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = np.array(PAPER, np.uint8)
    image.setflags(write=False)
    return image


def _draw_logo(image: Image, shapes: tuple[LogoShape, ...], style: LabelStyle) -> None:
    region = REGIONS["logo"]
    for shape in shapes:
        colour = (style.primary, style.secondary, PAPER)[shape.ink]
        thickness = -1 if shape.thickness < 0 else max(1, round(shape.thickness * SCALE))
        pts = [((region.x + px) * SCALE, (region.y + py) * SCALE) for px, py in shape.points]
        if shape.kind == "circle":
            centre = (round(pts[0][0]), round(pts[0][1]))
            cv2.circle(image, centre, round(shape.size * SCALE), colour, thickness, cv2.LINE_AA)
        elif shape.kind == "poly":
            poly = np.round(np.array(pts, np.float64)).astype(np.int32)
            if thickness < 0:
                cv2.fillPoly(image, [poly], colour, cv2.LINE_AA)
            else:
                cv2.polylines(image, [poly], True, colour, thickness, cv2.LINE_AA)
        else:
            put_text(image, shape.text, pts[0], shape.face, shape.size * SCALE, colour, thickness)


@functools.lru_cache(maxsize=32)
def _microtext_band(text: str, thickness: int, blur: float) -> Image:
    """Two rows of ``text`` repeated, 4.5 canonical px high, in ``thickness`` px strokes."""
    line = (text + " * ") * 12
    rows, cols = region_slice("microtext")
    band = paper(rows.stop - rows.start, cols.stop - cols.start)
    for row in range(2):
        baseline = (1 + _MICRO_CAP_H + row * 7.0) * SCALE
        origin = (-row * 9.0 * SCALE, baseline)
        put_text(band, line, origin, _MICRO_FACE, _MICRO_CAP_H * SCALE, INK, thickness)
    if blur > 0:
        sigma = blur * SCALE
        band = np.asarray(cv2.GaussianBlur(band, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE))
    band.setflags(write=False)
    return band


def _draw_microtext(image: Image, text: str, style: LabelStyle) -> None:
    rows, cols = region_slice("microtext")
    image[rows, cols] = _microtext_band(text, style.microtext_thickness, style.microtext_blur)


@functools.lru_cache(maxsize=16)
def _genuine_layer(brand: Brand) -> Image:
    layer = _static_layer(brand, genuine_style(brand))
    layer.setflags(write=False)
    return layer


def _fitted_cap(text: str, face: str, cap_height: float, tracking: float, width: float) -> float:
    """``cap_height``, or less if ``text`` would not fit in ``width`` (canonical px)."""
    natural = text_width(text, face, cap_height, tracking)
    if natural <= width:
        return cap_height
    spacing = tracking * (len(text) - 1)
    return cap_height * max(0.2, (width - spacing) / max(1e-6, natural - spacing))


def _static_layer(brand: Brand, style: LabelStyle) -> Image:
    """Paper, logo, brand name with its colour bar, product name and microtext (names
    shrunk to fit their regions, as a printer would set them)."""
    image = paper(LABEL_H * SCALE, LABEL_W * SCALE)
    _draw_logo(image, style.logo, style)
    brand_region, product_region = REGIONS["brand_text"], REGIONS["product_text"]
    baseline = (brand_region.y + 4 + _BRAND_CAP_H) * SCALE
    cap = _fitted_cap(brand.name, style.brand_font, _BRAND_CAP_H, style.tracking, brand_region.w)
    put_text(
        image,
        brand.name,
        (brand_region.x * SCALE, baseline),
        style.brand_font,
        cap * SCALE,
        style.primary,
        3 * SCALE // 2,
        style.tracking * SCALE,
    )
    bar_y = (brand_region.y + brand_region.h - 6) * SCALE
    cv2.rectangle(
        image,
        (brand_region.x * SCALE, bar_y),
        ((brand_region.x + brand_region.w) * SCALE - 1, bar_y + 3 * SCALE - 1),
        style.secondary,
        -1,
    )
    cap = _fitted_cap(
        brand.product, style.product_font, _PRODUCT_CAP_H, style.product_tracking, product_region.w
    )
    put_text(
        image,
        brand.product,
        (product_region.x * SCALE, (product_region.y + 4 + _PRODUCT_CAP_H) * SCALE),
        style.product_font,
        cap * SCALE,
        INK,
        SCALE,
        style.product_tracking * SCALE,
    )
    _draw_microtext(image, brand.name, style)
    return image


@functools.lru_cache(maxsize=4096)
def datamatrix_modules(item_hri: str) -> Image:
    """The square GS1 DataMatrix modules of ``item_hri`` (0 = dark, 255 = light), no quiet
    zone (the paper around the symbol is its quiet zone).

    Raises ValueError when zxing-cpp cannot encode it as GS1.
    """
    try:
        barcode = zxingcpp.create_barcode(
            item_hri, zxingcpp.BarcodeFormat.DataMatrix, options="gs1,forceSquare"
        )
        modules = np.asarray(barcode.to_image(scale=1, add_quiet_zones=False), dtype=np.uint8)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"cannot encode {item_hri!r} as a GS1 DataMatrix: {exc}") from exc
    modules.setflags(write=False)
    return modules


def _draw_datamatrix(image: Image, item_hri: str) -> None:
    modules = datamatrix_modules(item_hri)
    region: Region = REGIONS["datamatrix"]
    cell = _DM_SIZE * SCALE // modules.shape[0]  # whole pixels: uneven modules read worse
    side = cell * modules.shape[0]
    big = cv2.resize(modules, (side, side), interpolation=cv2.INTER_NEAREST)
    x0 = region.x * SCALE + (region.w * SCALE - side) // 2
    y0 = region.y * SCALE + (region.h * SCALE - side) // 2
    image[y0 : y0 + side, x0 : x0 + side] = cv2.LUT(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR), _INKING)


def _draw_details(image: Image, lines: tuple[str, ...]) -> None:
    region = REGIONS["details_text"]
    for index, line in enumerate(lines):
        baseline = (region.y + 4 + _DETAILS_CAP_H + index * 16.0) * SCALE
        origin = (region.x * SCALE, baseline)
        put_text(image, line, origin, _DETAILS_FACE, _DETAILS_CAP_H * SCALE, INK, SCALE)


def compose_label(
    brand: Brand,
    style: LabelStyle,
    details: tuple[str, ...],
    item_hri: str,
    patch: Image | None,
) -> Image:
    """The full label at ``SCALE``; ``patch`` (region-sized at ``SCALE``) or bare paper."""
    if style == genuine_style(brand):  # only the owner's artwork repeats: cache it
        image = _genuine_layer(brand).copy()
    else:
        image = _static_layer(brand, style)
    _draw_details(image, details)
    _draw_datamatrix(image, item_hri)
    if patch is not None:
        rows, cols = region_slice("patch")
        image[rows, cols] = patch
    return image
