"""The small fixed set of brands whose labels are rendered, and the item IDs they carry.

Each brand has its own logo (a few shapes and letters), fonts, ink colours and film hue.
Item IDs are GS1 element strings in the bracketed human-readable form
``(01)<GTIN-14>(21)<serial>``: what :func:`zxingcpp.read_barcodes` returns as ``text`` for
the GS1 DataMatrix on the label.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

__all__ = [
    "BRANDS",
    "Brand",
    "LogoShape",
    "gs1_check_digit",
    "random_item_id",
]

Bgr = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class LogoShape:
    """One element of a logo, in canonical pixels relative to the logo region's top left.

    ``kind`` is ``circle`` (centre ``points[0]``, radius ``size``), ``poly`` (closed
    polygon through ``points``) or ``text`` (``text`` in Hershey face ``face`` with its
    baseline start at ``points[0]``, cap height ``size``). ``thickness`` < 0 fills;
    ``ink`` 0 is the brand's primary colour, 1 its secondary, 2 the paper white.
    """

    kind: Literal["circle", "poly", "text"]
    points: tuple[tuple[float, float], ...]
    size: float
    thickness: float
    ink: int
    text: str = ""
    face: str = "futuram"


@dataclass(frozen=True, slots=True)
class Brand:
    """A brand's label artwork: names, fonts, inks, logo and colour-shift film."""

    name: str
    product: str
    company_prefix: str
    primary: Bgr
    secondary: Bgr
    brand_font: str
    """Hershey face of the brand name (see :data:`simulators.labels.text.FACES`)."""
    product_font: str
    tracking: float
    """Extra space between brand-name letters, canonical pixels."""
    logo: tuple[LogoShape, ...]
    film_hue: float
    """Mean hue of the genuine film under lighting angle A, degrees (0–360)."""
    film_shift: float
    """How far the film's mean hue moves from angle A to angle B, degrees."""


def _circle(cx: float, cy: float, r: float, thickness: float, ink: int) -> LogoShape:
    return LogoShape("circle", ((cx, cy),), r, thickness, ink)


def _poly(points: tuple[tuple[float, float], ...], thickness: float, ink: int) -> LogoShape:
    return LogoShape("poly", points, 0.0, thickness, ink)


def _text(text: str, x: float, y: float, cap: float, thickness: float, ink: int) -> LogoShape:
    return LogoShape("text", ((x, y),), cap, thickness, ink, text, "futuram")


BRANDS: Final[tuple[Brand, ...]] = (
    Brand(
        name="AURELIA",
        product="Eau de Parfum 50 ml",
        company_prefix="950600",
        primary=(140, 60, 20),
        secondary=(40, 170, 225),
        brand_font="timesrb",
        product_font="futural",
        tracking=2.0,
        logo=(
            _circle(48, 36, 32, -1, 0),
            _poly(((48, 10), (72, 54), (24, 54)), -1, 1),
            _text("A", 38, 50, 21.0, 2.5, 2),
        ),
        film_hue=35.0,
        film_shift=95.0,
    ),
    Brand(
        name="NORDVIK",
        product="Single Malt Whisky 70 cl",
        company_prefix="735000",
        primary=(50, 110, 20),
        secondary=(40, 40, 190),
        brand_font="futuram",
        product_font="futural",
        tracking=3.0,
        logo=(
            _poly(((10, 6), (86, 6), (86, 66), (10, 66)), -1, 0),
            _poly(((18, 58), (36, 58), (78, 14), (60, 14)), -1, 1),
            _text("N", 22, 44, 19.0, 2.0, 2),
        ),
        film_hue=200.0,
        film_shift=-100.0,
    ),
    Brand(
        name="KESTREL",
        product="Pro Headphones K7",
        company_prefix="871234",
        primary=(40, 30, 200),
        secondary=(30, 30, 30),
        brand_font="futural",
        product_font="futuram",
        tracking=4.0,
        logo=(
            _poly(((4, 64), (48, 4), (92, 64)), -1, 0),
            _circle(48, 44, 14, -1, 1),
            _poly(((20, 68), (76, 68), (48, 56)), 3, 1),
        ),
        film_hue=290.0,
        film_shift=90.0,
    ),
    Brand(
        name="SOLENNE",
        product="Vitamin C Serum 30 ml",
        company_prefix="400638",
        primary=(130, 40, 120),
        secondary=(150, 140, 20),
        brand_font="timesr",
        product_font="futural",
        tracking=1.0,
        logo=(
            _circle(34, 36, 26, 6, 0),
            _circle(62, 36, 26, 6, 1),
            _text("S", 40, 48, 21.0, 2.5, 0),
        ),
        film_hue=120.0,
        film_shift=100.0,
    ),
)
"""The brands a rendered label belongs to (chosen per sample)."""

_SERIAL_CHARS: Final = string.ascii_uppercase + string.digits


def gs1_check_digit(digits: str) -> str:
    """The GS1 mod-10 check digit for ``digits`` (a GTIN without its check digit)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str(-total % 10)


def random_item_id(brand: Brand, rng: np.random.Generator) -> str:
    """A fresh serialised item of ``brand``: ``(01)<GTIN-14>(21)<serial>``."""
    body = "0" + brand.company_prefix + f"{int(rng.integers(0, 1_000_000)):06d}"
    serial = "".join(_SERIAL_CHARS[int(i)] for i in rng.integers(0, len(_SERIAL_CHARS), 8))
    return f"(01){body}{gs1_check_digit(body)}(21){serial}"
