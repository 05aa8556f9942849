"""Find the label in a camera frame and warp it upright into canonical label coordinates.

Locating must cost a small fraction of one model invocation, and after an invocation every
NumPy or OpenCV call costs 10–25 µs (the model's work evicts theirs from the caches), so
locating is nine calls on a small single-channel view of the frame: the light label is
thresholded (Otsu) against the darker belt, and the corners of the largest label-like
outline's convex hull, simplified to four, are the label's corners, each side moved out
to its edge. They are whole pixels of that grid: about a frame pixel off per coordinate
(median; up to about seven on a 640-pixel frame, :func:`work_step` 4), and the label model
is trained on warps from corners jittered by that much (:mod:`edge_agent.vision.dataset`),
so it needs no finer. The warp samples the full-resolution frame directly.

Corners are in frame pixel coordinates with pixel centres at integers: a label whose
outer edge runs along the left edge of pixel column 100 has x = 99.5 there. Labels are
taken to be within ±90° of upright (the gate's belt keeps them so); the top edge is
the long edge higher in the frame.
"""

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.vision.layout import LABEL_ASPECT

try:  # the compiled locate and warp (setup.py); where it was not built, OpenCV's path below
    from edge_agent.vision import _labelcore
except ImportError:  # pragma: no cover - an install without a C compiler
    _labelcore = None  # type: ignore[assignment]
_native = _labelcore

__all__ = [
    "MAX_FRAME_SIDE",
    "MAX_IMAGE_BYTES",
    "MIN_FRAME_SIDE",
    "LocateFailure",
    "check_frame",
    "decode_jpeg",
    "image_size",
    "locate",
    "locate_label",
    "locate_quad",
    "locate_quad_opencv",
    "warp_label",
    "warp_label_opencv",
    "work_step",
]

_UINT8: Final = np.dtype(np.uint8)
MIN_FRAME_SIDE: Final = 96
MAX_FRAME_SIDE: Final = 4096
MAX_IMAGE_BYTES: Final = 32 * 1024 * 1024

_WORK_WIDTH: Final = 160
"""The coarse search runs on a subsampled frame at most this wide."""
_MIN_CONTRAST: Final = 24
"""Grey levels between the darkest and lightest work pixel; less is a blank frame."""
_MIN_AREA_FRACTION: Final = 0.02
_MAX_AREA_FRACTION: Final = 0.8
_MIN_FILL: Final = 0.6
"""Outline area ÷ its four-sided polygon's: less is not a (partly hidden) label."""
_ASPECT_SLACK: Final = 1.8
"""How far perspective may stretch the label's aspect ratio either way."""
_POLYGON_TOLERANCE: Final = 0.04
"""How far (× the hull's perimeter) the four-sided polygon may cut the hull."""
_EDGE_OFFSET: Final = 0.7
"""Work pixels from the sides through the outline's corner pixels out to the label's
edge (measured on 300 rendered labels against their true corners: 0.5 left a longer
tail, 1.0 a larger median)."""


def _configure(native: Any) -> None:
    """Hand the compiled module (this one, or a build of it a test loads) this module's
    locating constants, so they live here only."""
    native.configure(
        work_width=_WORK_WIDTH,
        min_contrast=_MIN_CONTRAST,
        min_area_fraction=_MIN_AREA_FRACTION,
        max_area_fraction=_MAX_AREA_FRACTION,
        min_fill=_MIN_FILL,
        aspect=LABEL_ASPECT,
        aspect_slack=_ASPECT_SLACK,
        polygon_tolerance=_POLYGON_TOLERANCE,
        edge_offset=_EDGE_OFFSET,
    )


if _native is not None:
    _configure(_native)


class LocateFailure(StrEnum):
    """Why no label was found (the reason a no-verdict result carries)."""

    BLANK_FRAME = "blank_frame"
    """Too little contrast: a black, white or covered frame."""
    NO_LABEL = "no_label"
    """Nothing label-shaped and light against the background."""
    LABEL_CUT_OFF = "label_cut_off"
    """A label was found but runs off the edge of the frame."""


_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""JPEG start-of-frame markers (the others in that range are DHT, JPG and DAC)."""
_JPEG_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD9)})
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height a JPEG or PNG declares in its header, without decoding it; or None.

    A few hundred bytes can declare a frame of gigapixels: the decoder would allocate
    it in full before finding out the data is short. Reading the header first lets
    :func:`decode_jpeg` refuse such an image unopened.
    """
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not data.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker in _JPEG_STANDALONE:
            at += 2
            continue
        if marker in _JPEG_SOF:
            if at + 9 > len(data):
                return None
            return (
                int.from_bytes(data[at + 7 : at + 9], "big"),
                int.from_bytes(data[at + 5 : at + 7], "big"),
            )
        if marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            return None
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None


def decode_jpeg(data: bytes) -> NDArray[np.uint8] | None:
    """The BGR image in JPEG (or PNG) ``data``, or None if it is not one of a usable size.

    The size is read from the header first (:func:`image_size`), so an image declaring
    more than ``MAX_FRAME_SIDE`` a side is refused without being decoded.
    """
    if not data or len(data) > MAX_IMAGE_BYTES:
        return None
    size = image_size(data)
    if size is None or min(size) < 1 or max(size) > MAX_FRAME_SIDE:
        return None
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else np.asarray(image, dtype=np.uint8)


def check_frame(frame: object) -> str | None:
    """None if ``frame`` is a usable BGR uint8 image, else the reason it is not."""
    if not isinstance(frame, np.ndarray):
        return "bad_frame_type"
    dtype = frame.dtype
    if dtype is not _UINT8 and dtype != _UINT8:  # the identity test first: the usual case
        return "bad_frame_type"
    shape = frame.shape
    if len(shape) != 3 or shape[2] != 3:
        return "bad_frame_channels"
    height, width = shape[0], shape[1]
    if not (
        MIN_FRAME_SIDE <= height <= MAX_FRAME_SIDE and MIN_FRAME_SIDE <= width <= MAX_FRAME_SIDE
    ):
        return "bad_frame_size"
    return None


def work_step(frame: NDArray[np.uint8]) -> int:
    """Frame pixels per pixel of the grid the label is located on (4 for 640 across):
    located corners are off by up to about two of it (see :func:`locate_quad`)."""
    return max(2, -(-int(frame.shape[1]) // _WORK_WIDTH))


def _work_image(frame: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], float]:
    """A small single-channel view of the frame, and its scale to frame pixels.

    Every step-th pixel of every step-th row of the green channel (which carries most of
    the luminance): the coarse search needs no more, and reading a quarter of the
    frame's rows is several times cheaper than converting and resizing all of it.
    Work pixel k is frame pixel step·k. A view, not a copy: OpenCV's threshold copies
    it as it reads it, one call fewer.
    """
    step = work_step(frame)
    return frame[::step, ::step, 1], float(step)


_LINE_PIXELS: Final = 21
"""BGR pixels a 64-byte cache line holds (21.3): one read in every 21 reads every line."""


def _fetch_box(frame: NDArray[np.uint8], xs: Quad, ys: Quad) -> None:
    """Read every cache line of the part of ``frame`` in the box around the (finite)
    points ``xs``, ``ys`` once, in address order.

    A camera frame is in main memory, not in the CPU's caches, and a warp of a tilted
    label reads it a few bytes here, a few rows down there, stalling on each line it
    misses. One read per line, row after row, keeps many lines in flight at once; the
    warp that follows finds them in cache (measured on cold frames: 215 µs against 270
    without; the whole check 1.51–1.55× the invoke against 1.68–1.70×). The work image
    gains nothing from it: its rows are read whole, in order.
    """
    rows = slice(max(0, int(min(ys))), max(0, int(max(ys)) + 2))
    columns = slice(max(0, int(min(xs))), max(0, int(max(xs)) + 2), _LINE_PIXELS)
    frame[rows, columns, 1].copy()  # a copy of a few KB: the cheapest read of every line


_FLOAT32: Final = struct.Struct("8f")
"""Packs four corners as float32: unpacked again, the float32 nearest each."""
Quad = list[float]
"""Four corners as a flat list, x0, y0, x1, y1, …: the locating stages pass few numbers,
and plain floats cost less than small arrays do."""


def _clockwise(quad: Quad) -> Quad:
    """The same corners in clockwise order on screen (y down)."""
    x0, y0, x1, y1, x2, y2, x3, y3 = quad
    turn = (x1 - x0) * (y2 - y1) - (y1 - y0) * (x2 - x1)
    return quad if turn > 0 else [x3, y3, x2, y2, x1, y1, x0, y0]


def _coarse_quad(work: NDArray[np.uint8]) -> Quad | LocateFailure:
    """Clockwise corners (work pixels) of the largest light, label-shaped outline's
    edges, or why there is none.

    The outline's convex hull, simplified to four corners, gives them under perspective
    (the hull bridges a dent an object or a dark print at the edge makes); a hull that
    will not simplify to four falls back to the outline's minimum-area rectangle. Either
    runs through the outline's outermost pixel centres, so its sides are moved
    ``_EDGE_OFFSET`` out to the label's edge. An outline touching the frame's edge is not
    a whole label. Nine OpenCV and NumPy calls for a frame with one light outline
    (threshold, outlines, area, bounding box, hull, perimeter, polygon, its list): the
    shape is judged on the polygon's plain coordinates.
    """
    _, binary = cv2.threshold(work, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    height, width = work.shape
    work_area = float(height * width)
    smallest = _MIN_AREA_FRACTION * work_area
    sized = []
    for contour in contours:
        if len(contour) >= 4:  # corner points only (CHAIN_APPROX_SIMPLE): fewer is no area
            area = cv2.contourArea(contour)
            if smallest < area <= _MAX_AREA_FRACTION * work_area:
                sized.append((area, contour))
    cut_off = False
    for area, contour in sorted(sized, key=operator.itemgetter(0), reverse=True):
        x, y, w, h = cv2.boundingRect(contour)
        if x == 0 or y == 0 or x + w == width or y + h == height:
            cut_off = cut_off or (w < width and h < height)  # edge to edge: the belt itself
            continue
        hull = cv2.convexHull(contour)
        approx = cv2.approxPolyDP(hull, _POLYGON_TOLERANCE * cv2.arcLength(hull, True), True)
        if len(approx) == 4:
            quad = _clockwise(approx.ravel().tolist())  # whole work pixels
        else:
            (centre_x, centre_y), (rect_w, rect_h), angle = cv2.minAreaRect(contour)
            quad = _box_corners(centre_x, centre_y, rect_w, rect_h, angle)
        if _label_shaped(quad, area):
            outset = _outset(quad, _EDGE_OFFSET)
            if outset is not None:
                return outset
    return LocateFailure.LABEL_CUT_OFF if cut_off else LocateFailure.NO_LABEL


def _label_shaped(quad: Quad, area: float) -> bool:
    """Whether clockwise ``quad`` is shaped like a label seen in perspective (its sides'
    lengths in the label's proportions, ``_ASPECT_SLACK`` either way) and an outline of
    ``area`` fills enough of it (``_MIN_FILL``: a label partly hidden still does)."""
    xs, ys = quad[::2], quad[1::2]
    corners = list(zip(xs, ys, strict=True))
    sides = list(map(math.dist, corners, corners[1:] + corners[:1]))
    first, second = sides[0] + sides[2], sides[1] + sides[3]
    if min(first, second) <= 0:
        return False
    aspect = max(first, second) / min(first, second)
    if not LABEL_ASPECT / _ASPECT_SLACK <= aspect <= LABEL_ASPECT * _ASPECT_SLACK:
        return False
    # shoelace: clockwise on screen is positive here
    enclosed = 0.5 * sum(
        x0 * y1 - x1 * y0
        for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1], strict=True)
    )
    return bool(enclosed > 0 and area / enclosed >= _MIN_FILL)


def _outset(quad: Quad, distance: float) -> Quad | None:
    """Clockwise ``quad`` with every side moved ``distance`` outward; None if two
    neighbouring sides are parallel or a side has no length."""
    xs, ys = quad[::2], quad[1::2]
    lines = []
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:] + xs[:1], ys[1:] + ys[:1], strict=True):
        length = math.hypot(x1 - x0, y1 - y0)
        if length == 0:
            return None
        nx, ny = (y1 - y0) / length, (x0 - x1) / length  # clockwise on screen: outward
        lines.append((nx, ny, -(nx * x0 + ny * y0) - distance))
    return _corners(lines)


def _box_corners(
    centre_x: float, centre_y: float, width: float, height: float, angle: float
) -> Quad:
    """Clockwise corners of the rectangle ``cv2.minAreaRect`` describes (as
    ``cv2.boxPoints`` gives them, in plain floats)."""
    radians = math.radians(angle)
    b, a = math.cos(radians) * 0.5, math.sin(radians) * 0.5
    x0 = centre_x - a * height - b * width
    y0 = centre_y + b * height - a * width
    x1 = centre_x + a * height - b * width
    y1 = centre_y - b * height - a * width
    return _clockwise(
        [x0, y0, x1, y1, 2 * centre_x - x0, 2 * centre_y - y0, 2 * centre_x - x1, 2 * centre_y - y1]
    )


def _corners(lines: list[tuple[float, float, float]]) -> list[float] | None:
    """Where side i-1 meets side i, for each i (x0, y0, x1, …); None if two neighbours
    are parallel."""
    corners: list[float] = []
    for side in range(4):
        a1, b1, c1 = lines[side - 1]
        a2, b2, c2 = lines[side]
        det = a1 * b2 - a2 * b1
        if abs(det) < 1e-9:
            return None
        corners += ((b1 * c2 - b2 * c1) / det, (a2 * c1 - a1 * c2) / det)
    return corners


def _canonical_order(quad: Quad) -> Quad:
    """Clockwise corners re-ordered TL, TR, BR, BL: long sides horizontal, top side higher."""
    x0, y0, x1, y1, x2, y2, x3, y3 = quad
    first = math.hypot(x1 - x0, y1 - y0) + math.hypot(x3 - x2, y3 - y2)
    second = math.hypot(x2 - x1, y2 - y1) + math.hypot(x0 - x3, y0 - y3)
    start = 0 if first >= second else 1
    ys = (y0, y1, y2, y3)
    if ys[start] + ys[start + 1] > ys[start + 2] + ys[(start + 3) % 4]:
        start += 2
    return quad[2 * start :] + quad[: 2 * start]


def locate(frame: NDArray[np.uint8]) -> tuple[NDArray[np.float32] | None, LocateFailure | None]:
    """Corners of the label (TL, TR, BR, BL) in a BGR ``frame``, or None and why not."""
    quad, failure = locate_quad(frame)
    if quad is None:
        return None, failure
    return np.array(quad, dtype=np.float32).reshape(4, 2), None


def locate_quad(frame: NDArray[np.uint8]) -> tuple[Quad | None, LocateFailure | None]:
    """:func:`locate`'s corners as a flat list of floats (x0, y0, x1, …: TL, TR, BR, BL),
    rounded to float32 like its array; or None and why not. What :func:`warp_label` takes
    without converting.

    The corners are those of the work image's outline (:func:`_coarse_quad`), off by
    about two frame pixels (median) and up to about seven at 640 pixels across
    (:func:`work_step` 4); the label model is trained on warps from corners jittered
    that far (:mod:`edge_agent.vision.dataset`).

    The compiled module (``_labelcore``, same algorithm, same corners: tested frame by
    frame against this one) answers in one call; what it leaves (a hull that needs the
    minimum-area rectangle, a hull corner the outline's border passes twice, a frame that
    is not one C-contiguous array) comes here."""
    if _native is not None:
        found = _native.locate(frame)
        if isinstance(found, list):
            return found, None
        if found:
            return None, _NATIVE_FAILURES[found]
    return locate_quad_opencv(frame)


_NATIVE_FAILURES: Final = (
    None,
    LocateFailure.BLANK_FRAME,
    LocateFailure.NO_LABEL,
    LocateFailure.LABEL_CUT_OFF,
)
"""The compiled locate's answer codes (0: decide here)."""


def locate_quad_opencv(frame: NDArray[np.uint8]) -> tuple[Quad | None, LocateFailure | None]:
    """:func:`locate_quad` on OpenCV and NumPy alone: the reference the compiled locate is
    tested against, and its fallback."""
    work, scale = _work_image(frame)
    found = _coarse_quad(work)
    if isinstance(found, LocateFailure):
        return None, _blank_or(work, found)
    quad = _canonical_order([value * scale for value in found])
    if not _convex(quad):  # a label seen flat or in perspective is a convex quadrilateral
        return None, LocateFailure.NO_LABEL
    height, width = frame.shape[:2]
    xs, ys = quad[::2], quad[1::2]
    if min(*xs, *ys) < -scale or max(xs) > width - 1 + scale or max(ys) > height - 1 + scale:
        return None, LocateFailure.LABEL_CUT_OFF
    return list(_FLOAT32.unpack(_FLOAT32.pack(*quad))), None


def _convex(quad: Quad) -> bool:
    """Whether the corners (in order) turn the same way at every corner."""
    xs, ys = quad[::2], quad[1::2]
    turns = [
        (xs[(i + 1) % 4] - xs[i]) * (ys[(i + 2) % 4] - ys[(i + 1) % 4])
        - (ys[(i + 1) % 4] - ys[i]) * (xs[(i + 2) % 4] - xs[(i + 1) % 4])
        for i in range(4)
    ]
    return all(t > 0 for t in turns) or all(t < 0 for t in turns)


def _blank_or(work: NDArray[np.uint8], failure: LocateFailure) -> LocateFailure:
    """``BLANK_FRAME`` if the work image has too little contrast to show anything (a
    black, white or covered frame), else ``failure``.

    Asked only when no label was found (every frame spared the look saves a call). A
    faint label the work image cannot see clearly may then be located on the full frame
    and scored instead of called blank; either way it is held.
    """
    darkest, lightest, _, _ = cv2.minMaxLoc(work)
    return LocateFailure.BLANK_FRAME if lightest - darkest < _MIN_CONTRAST else failure


def locate_label(frame: NDArray[np.uint8]) -> NDArray[np.float32] | None:
    """Corners of the label in ``frame`` as a 4×2 array (TL, TR, BR, BL), or None."""
    return locate(frame)[0]


def _label_to_frame(corners: Quad, width: int, height: int) -> NDArray[np.float64]:
    """The perspective map from a ``width`` × ``height`` label image to the frame: output
    pixel (x, y) (pixel centres at integers) lies at frame point matrix · (x, y, 1).

    ``corners`` (TL, TR, BR, BL, as x0, y0, …) are where the image's outer corners go.
    In closed form (the unit square to a quadrilateral, after Heckbert), so neither
    OpenCV's 8 × 8 solve for the label-to-frame map nor its inversion is needed; the
    same map up to rounding.
    """
    x0, y0, x1, y1, x2, y2, x3, y3 = corners
    sx, sy = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3
    dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
    det = dx1 * dy2 - dx2 * dy1
    g = (sx * dy2 - dx2 * sy) / det if det else 0.0
    h = (dx1 * sy - sx * dy1) / det if det else 0.0
    a, b, d, e = x1 - x0 + g * x1, x3 - x0 + h * x3, y1 - y0 + g * y1, y3 - y0 + h * y3
    # unit square point (u, v) = ((x + 0.5) / width, (y + 0.5) / height)
    u, v = 1 / width, 1 / height
    return np.array(
        [
            [a * u, b * v, (a * u + b * v) / 2 + x0],
            [d * u, e * v, (d * u + e * v) / 2 + y0],
            [g * u, h * v, (g * u + h * v) / 2 + 1],
        ]
    )


def warp_label(
    frame: NDArray[np.uint8],
    corners: NDArray[np.float32] | Sequence[float],
    width: int,
    height: int,
    out: NDArray[np.uint8] | None = None,
    *,
    flip_top_bit: bool = False,
) -> NDArray[np.uint8]:
    """The label inside ``corners`` (TL, TR, BR, BL: a 4 × 2 array, or a flat sequence
    x0, y0, x1, … as :func:`locate_quad` gives) as an upright ``width`` × ``height`` image,
    written into ``out`` (a C-contiguous ``height`` × ``width`` × 3 uint8 array) if given;
    with ``flip_top_bit`` every byte XOR 128 (a model input of int8 at scale 1/255 and
    zero point -128, written as it is warped).

    Corners are the label's outer corners, so the result covers the label edge to edge,
    like the canonical ``LABEL_W`` × ``LABEL_H`` layout scaled to ``width`` × ``height``.
    Each output pixel is the frame pixel nearest its centre: bilinear sampling of this
    3-channel warp measured four to ten times slower here, more than a small model's
    whole invocation. A label inside the frame is warped with a constant border, which
    is then never read; one running off it repeats the frame's edge.

    The compiled module does it in one call with the same map and rounding as
    ``cv2.warpPerspective`` (identical to OpenCV 4.11's; OpenCV 5 rounds about one pixel in
    80,000 the other way, a tie a last bit apart); corners that are not finite or not a
    convex quadrilateral near the frame, and an ``out`` it cannot write or that shares the
    frame's memory, go to OpenCV.
    """
    quad = corners.ravel().tolist() if isinstance(corners, np.ndarray) else corners
    if out is not None and out.shape != (height, width, 3):
        raise ValueError(f"out must be {height} × {width} × 3; it is {out.shape}")
    if _native is not None:
        target = np.empty((height, width, 3), np.uint8) if out is None else out
        if _native.warp(frame, quad, target, flip_top_bit):
            return target
    warped = warp_label_opencv(frame, quad, width, height, out)
    if flip_top_bit:
        np.bitwise_xor(warped, _TOP_BIT, out=warped)
    return warped


_TOP_BIT: Final = np.uint8(128)


def warp_label_opencv(
    frame: NDArray[np.uint8],
    corners: Sequence[float],
    width: int,
    height: int,
    out: NDArray[np.uint8] | None = None,
) -> NDArray[np.uint8]:
    """:func:`warp_label` (without the flip) on OpenCV alone: the reference and fallback."""
    quad = list(corners)
    if len(quad) != 8:
        raise ValueError(f"corners must be four points, eight numbers; got {len(quad)}")
    xs, ys = quad[::2], quad[1::2]
    frame_height, frame_width = frame.shape[:2]
    finite = all(map(math.isfinite, quad))
    if finite:
        _fetch_box(frame, xs, ys)
    inside = finite and min(quad) >= 0 and max(xs) <= frame_width - 1
    inside = inside and max(ys) <= frame_height - 1
    matrix = _label_to_frame(quad, width, height) if finite else np.full((3, 3), np.nan)
    warped = cv2.warpPerspective(
        frame,
        matrix,
        (width, height),
        dst=out,
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT if inside else cv2.BORDER_REPLICATE,
    )
    if out is None:
        return np.asarray(warped, dtype=np.uint8)
    if warped is not out:  # OpenCV made its own array rather than fill this one
        np.copyto(out, warped)
    return out
