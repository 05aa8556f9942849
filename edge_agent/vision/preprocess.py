"""Find the label in a camera frame and warp it upright into canonical label coordinates.

Locating must cost a small fraction of one model invocation, so the search runs on a
small single-channel copy of the frame: the light label is thresholded (Otsu) against
the darker belt and the largest label-like outline gives a rough quadrilateral. Its
sides are then measured on the full-resolution frame, across each side at a dozen
places, and fitted as robust lines, so the corners come out to a fraction of a pixel
even under perspective or with a stretch of edge hidden by something in front. The
warp samples the full-resolution frame directly.

Corners are in frame pixel coordinates with pixel centres at integers: a label whose
outer edge runs along the left edge of pixel column 100 has x = 99.5 there. Labels are
taken to be within ±90° of upright (the gate's belt keeps them so); the top edge is
the long edge higher in the frame.
"""

from __future__ import annotations

import functools
import math
import operator
from enum import StrEnum
from typing import Final, NamedTuple

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.vision.layout import LABEL_ASPECT

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
    "warp_label",
]

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
"""Outline area ÷ its minimum-area rectangle: less is not a (partly hidden) rectangle."""
_ASPECT_SLACK: Final = 1.8
"""How far perspective may stretch the label's aspect ratio either way."""
_SAMPLES: Final = 12
"""Profiles measured across each side during refinement."""
_SAMPLE_AT: Final = (np.arange(_SAMPLES, dtype=np.float64) + 0.5) / _SAMPLES * 0.84 + 0.08
_MIN_STEP: Final = 24
"""Weakest light-to-dark step (over 2 pixels) taken as the label's edge."""
_MIN_SIDE_POINTS: Final = 5
"""Edge points a side needs (of ``_SAMPLES``) on its fitted line to count as found."""
_MAX_PASSES: Final = 3
"""Refinement passes from a rough start; more would mean it is chasing something else."""
_ON_LINE: Final = 1.0
"""Frame pixels an edge point may lie off its side's line and still be on it."""
_SURELY_ON_LINE: Final = 0.9
"""Fraction of the squared tolerance the points' squared distances from their line may
add up to for none of them to be off it, rounding allowed for."""
_MAX_CORNER_GAP: Final = 0.12
"""Polygon corners farther than this × the short side from the box's are not trusted."""


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
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        return "bad_frame_type"
    if frame.ndim != 3 or frame.shape[2] != 3:
        return "bad_frame_channels"
    height, width = frame.shape[:2]
    if min(height, width) < MIN_FRAME_SIDE or max(height, width) > MAX_FRAME_SIDE:
        return "bad_frame_size"
    return None


def _work_image(frame: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], float]:
    """A small single-channel copy of the frame, and its scale to frame pixels.

    Every step-th pixel of every step-th row of the green channel (which carries most of
    the luminance): the coarse search needs no more, and reading a quarter of the
    frame's rows is several times cheaper than converting and resizing all of it.
    Work pixel k is frame pixel step·k.
    """
    step = max(2, -(-frame.shape[1] // _WORK_WIDTH))
    _fetch(frame[::step])
    return np.ascontiguousarray(frame[::step, ::step, 1]), float(step)


_LINE_PIXELS: Final = 21
"""BGR pixels a 64-byte cache line holds (21.3): one read in every 21 reads every line."""


def _fetch(region: NDArray[np.uint8]) -> None:
    """Read every cache line of ``region`` (a view of a frame) once, in address order.

    A camera frame is in main memory, not in the CPU's caches. The work image copy and
    the label warp read it in their own order (a few pixels of a row, then the next
    row; along the tilted label), stalling on each line they miss. One read per line,
    row after row, keeps many lines in flight at once; the copy or warp that follows
    finds them in cache. Measured here on cold frames: the warp took about 40 µs less
    than without, the fetch included.
    """
    if region.ndim == 3:  # a copy of a few KB: the cheapest read of every line
        region[:, ::_LINE_PIXELS, 1].copy()


_SIDE_ROWS: Final = np.arange(4 * _SAMPLES)
_SIDES: Final = np.arange(4)
_WINDOW_STEPS: Final = 4
"""Steps searched for the peak of the outermost strong step: it and the ones inside it."""
_PEAK_WINDOW: Final = np.arange(_WINDOW_STEPS)
_PARABOLA: Final = np.array([[0.5, 0.0, -0.5], [1.0, -2.0, 1.0]])
"""Half the difference of a peak's neighbours, and its second difference."""
_POINT_PLAN: Final = np.stack(
    [np.ones((4, _SAMPLES)), np.tile(_SAMPLE_AT, (4, 1)), np.zeros((4, _SAMPLES))], axis=-1
)
"""Coefficients of (corner, side vector, outward normal) for each edge point, depth 0."""
_PAIR_FIRST, _PAIR_SECOND = np.triu_indices(_SAMPLES, k=1)


Quad = list[float]
"""Four corners as a flat list, x0, y0, x1, y1, …: the locating stages pass few numbers,
and plain floats cost less than small arrays do."""


def _clockwise(quad: Quad) -> Quad:
    """The same corners in clockwise order on screen (y down)."""
    x0, y0, x1, y1, x2, y2, x3, y3 = quad
    turn = (x1 - x0) * (y2 - y1) - (y1 - y0) * (x2 - x1)
    return quad if turn > 0 else [x3, y3, x2, y2, x1, y1, x0, y0]


def _coarse_quads(work: NDArray[np.uint8]) -> list[Quad] | LocateFailure:
    """Candidate clockwise corners (work pixels) of the largest light, label-shaped outline.

    The outline's simplified polygon gives the corners under perspective; when a corner
    is hidden it cuts that corner off, and the outline's minimum-area rectangle is
    closer. Both are returned when they differ, the likelier first; refinement decides.
    An outline touching the frame's edge is not a whole label.
    """
    _, binary = cv2.threshold(work, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    height, width = work.shape
    work_area = float(height * width)
    best_area = _MIN_AREA_FRACTION * work_area
    best = None
    cut_off = False
    for contour in contours:
        if len(contour) < 4:
            continue
        area = cv2.contourArea(contour)
        if area <= best_area or area > _MAX_AREA_FRACTION * work_area:
            continue
        rect = cv2.minAreaRect(contour)
        rect_w, rect_h = rect[1]
        if min(rect_w, rect_h) <= 0 or area / (rect_w * rect_h) < _MIN_FILL:
            continue
        aspect = max(rect_w, rect_h) / min(rect_w, rect_h)
        if not LABEL_ASPECT / _ASPECT_SLACK <= aspect <= LABEL_ASPECT * _ASPECT_SLACK:
            continue
        x, y, w, h = cv2.boundingRect(contour)
        if x == 0 or y == 0 or x + w == width or y + h == height:
            cut_off = cut_off or (w < width and h < height)  # edge to edge: the belt itself
            continue
        best_area = area
        best = (contour, rect)
    if best is None:
        return LocateFailure.LABEL_CUT_OFF if cut_off else LocateFailure.NO_LABEL
    contour, rect = best
    box = _clockwise(cv2.boxPoints(rect).ravel().tolist())
    hull = cv2.convexHull(contour)
    approx = cv2.approxPolyDP(hull, 0.04 * cv2.arcLength(hull, True), True)
    if len(approx) != 4:
        return [box]
    polygon = _clockwise([float(value) for value in approx.ravel().tolist()])
    limit = _MAX_CORNER_GAP * min(rect[1])
    box_corners = list(zip(box[::2], box[1::2], strict=True))
    near = all(  # every polygon corner near one of the box's
        any(math.hypot(x - bx, y - by) <= limit for bx, by in box_corners)
        for x, y in zip(polygon[::2], polygon[1::2], strict=True)
    )
    return [polygon, box] if near else [box, polygon]


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


class _ProfilePlan(NamedTuple):
    """How :func:`_refine` samples profiles across the sides and reads their steps."""

    coefficients: NDArray[np.float32]
    """Each profile pixel's coefficients of (corner, side vector, outward normal), as
    (profiles · pixels) × 3."""
    last_window_at: NDArray[np.intp]
    """Per profile, where its outermost peak window starts in the flat step table."""
    last_window: int
    """The same within the profile: its steps less a window."""
    neighbours: NDArray[np.intp]
    """3 × flat steps: each step's place before, at and after it in the table; at a
    profile's end the end step stands in for the one past it."""
    depth_start: NDArray[np.float64]
    """Per profile, what to add to a step's place in the table for its depth (pixels
    outward), midway between the step's two pixels."""


@functools.cache
def _profile_plan(reach: float) -> _ProfilePlan:
    """The plan for profiles ``reach`` pixels either side of a side."""
    offsets = np.arange(-reach, reach + 0.5, 1.0)
    plan = np.ones((_SAMPLES, len(offsets), 3))
    plan[..., 1] = _SAMPLE_AT[:, None]
    plan[..., 2] = offsets
    steps = len(offsets) - 2  # a step spans two pixels
    row_start = _SIDE_ROWS * steps
    last_window = steps - _WINDOW_STEPS
    at = np.arange(steps)
    around = np.stack([np.maximum(at - 1, 0), at, np.minimum(at + 1, steps - 1)])
    places = row_start[None, :, None] + around[:, None, :]  # 3 × profiles × steps
    return _ProfilePlan(
        plan.reshape(-1, 3).astype(np.float32),
        row_start + last_window,
        last_window,
        places.reshape(3, -1),
        offsets[1] - row_start,
    )


def _refine(frame: NDArray[np.uint8], quad: Quad, reach: float) -> tuple[Quad, float] | None:
    """Clockwise corners moved onto the label edges near ``quad``'s sides, and how far
    they moved (the most in x or y); or None.

    One pass; from a rough start (a corner cut off by an occluder) the edge may only be
    in reach along part of a side, so the caller repeats until the corners settle.

    Across each side, at ``_SAMPLES`` places, a profile of the green channel runs from
    ``reach`` pixels inside to ``reach`` outside; the edge is its outermost strong
    light-to-dark step (dark print just inside may step harder than paper to belt),
    interpolated to a fraction of a pixel. Each side's line is fitted through the edge
    points that lie on one straight line, so those on an occluder do not count. The
    arrays are small, so the work is arranged in few numpy calls.
    """
    xs, ys = quad[::2], quad[1::2]
    basis: list[float] = []  # per side: first corner, vector along it, outward normal
    shortest = math.inf
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:] + xs[:1], ys[1:] + ys[:1], strict=True):
        length = math.hypot(x1 - x0, y1 - y0)
        if length < 4 * reach:
            return None
        shortest = min(shortest, length)
        basis += (1, x0, y0, 0, x1 - x0, y1 - y0, 0, (y1 - y0) / length, (x0 - x1) / length)
    # as homogeneous (1, x, y) rows, so one product gives a point's (1, x, y)
    sides = np.array(basis, dtype=np.float32).reshape(4, 3, 3)  # clockwise: outward is left
    plan, last_window_at, last_window, around, depth_start = _profile_plan(reach)
    maps = np.matmul(plan, sides[..., 1:]).reshape(4 * _SAMPLES, -1, 2)
    # OpenCV's remap is several times faster with a constant border, and the same as
    # replicating the frame's edge when every profile lies inside the frame
    height, width = frame.shape[:2]
    inside = min(*xs, *ys) >= reach and max(xs) + reach <= width - 1
    inside = inside and max(ys) + reach <= height - 1
    border = cv2.BORDER_CONSTANT if inside else cv2.BORDER_REPLICATE
    profiles = cv2.remap(  # type: ignore[call-overload]  # no map2 for a 2-channel map1
        frame, maps, None, cv2.INTER_LINEAR, borderMode=border
    )
    green = profiles[..., 1]
    steps = np.subtract(green[:, :-2], green[:, 2:], dtype=np.int16)  # light in, dark out: > 0
    # strong: at least half the strongest step, rounded down, and _MIN_STEP; for whole
    # numbers x >= (m + 1) // 2 is 2x >= m
    doubled_threshold = np.maximum(steps.max(axis=1), 2 * _MIN_STEP - 1)
    from_outside = (steps + steps >= doubled_threshold[:, None])[:, ::-1].argmax(axis=1)
    # the outermost strong step's peak is within it and the three steps inside it
    window = last_window_at - np.minimum(from_outside, last_window)
    peak_at = window + steps.take(window[:, None] + _PEAK_WINDOW).argmax(axis=1)
    neighbours = steps.take(around[:, peak_at])  # before, at and after each peak
    slope, curve = np.matmul(_PARABOLA, neighbours)  # the parabola through them
    shift = np.maximum(np.minimum(slope / np.minimum(curve, -1e-3), 0.5), -0.5)
    coefficients = _POINT_PLAN.copy()
    coefficients[..., 2] = (peak_at + depth_start + shift).reshape(4, _SAMPLES)
    points = np.matmul(coefficients, sides)  # 4 × samples × (1, x, y)
    strong = (neighbours[1] >= _MIN_STEP).reshape(4, _SAMPLES)
    lines = _side_lines(points, strong, _ON_LINE)  # every edge point on its side's line
    if lines is None:  # some are off (an occluder, a smudge): find the straight part
        on_line = _straight_edges(points[..., 1:], strong)
        if on_line is None:
            return None
        lines = _side_lines(points, on_line, 2 * _ON_LINE)
        if lines is None:
            return None
    refined = _corners(lines)
    if refined is None:
        return None
    moved = max(map(abs, map(operator.sub, refined, quad)))
    if moved > 0.25 * shortest:
        return None
    return refined, moved


def _side_lines(
    points: NDArray[np.float64], keep: NDArray[np.bool_], tolerance: float
) -> list[tuple[float, float, float]] | None:
    """Each side's line (a, b, c: a·x + b·y + c = 0) fitted through its kept points, or
    None if a side has too few or one of them lies farther than ``tolerance`` off it.
    ``points`` are (1, x, y), 4 sides × samples × 3.

    Total least squares: the line through the points' centre along their principal
    axis, from sums of 1, x, y and their products, found for all four sides by one
    matrix product. The squares of the points' distances from that line add up to the
    smaller eigenvalue of their scatter; where it is under ``_SURELY_ON_LINE`` × the
    squared tolerance on every side, no point can be off its line and the distances
    need not be measured one by one (the margin is many times any rounding error).
    """
    terms = points * keep[..., None]  # kept points' (1, x, y); zeros for the others
    lines = []  # as (c, a, b), to match the terms
    all_close = True
    for (count, sum_x, sum_y), (_, sum_xx, sum_xy), (_, _, sum_yy) in np.matmul(
        terms.transpose(0, 2, 1), terms
    ).tolist():
        if count < _MIN_SIDE_POINTS:
            return None
        mean_x, mean_y = sum_x / count, sum_y / count
        xx, xy, yy = sum_xx - sum_x * mean_x, sum_xy - sum_x * mean_y, sum_yy - sum_y * mean_y
        angle = 0.5 * math.atan2(2 * xy, xx - yy)
        a, b = math.sin(angle), -math.cos(angle)  # normal of the direction (cos, sin)
        lines.append((-(a * mean_x + b * mean_y), a, b))
        squares = (xx + yy - math.hypot(xx - yy, 2 * xy)) / 2  # the smaller eigenvalue
        all_close = all_close and squares <= _SURELY_ON_LINE * tolerance * tolerance
    if not all_close:
        distances = np.matmul(terms, np.array(lines)[..., None])  # 4 × samples × 1
        if float(np.abs(distances).max()) > tolerance:
            return None
    return [(a, b, c) for c, a, b in lines]


def _straight_edges(
    points: NDArray[np.float64], strong: NDArray[np.bool_]
) -> NDArray[np.bool_] | None:
    """Which edge points of each side lie on that side's line (4 × samples), or None.

    The line is the one through two of the side's points that most others lie near
    (every pair is tried: a dozen points make 66 pairs), so up to half the points may
    be off the edge, on an occluder or a smudge, without bending it. A side with fewer
    than ``_MIN_SIDE_POINTS`` on a straight line is not a label's edge (texture, noise).
    """
    x, y = points[..., 0], points[..., 1]  # 4 × samples
    x0, y0 = x[:, _PAIR_FIRST, None], y[:, _PAIR_FIRST, None]  # 4 × pairs × 1
    dx, dy = x[:, _PAIR_SECOND, None] - x0, y[:, _PAIR_SECOND, None] - y0
    length = np.sqrt(dx * dx + dy * dy)
    # distance of every point from every pair's line, times the pair's length
    cross = np.abs(dx * (y[:, None, :] - y0) - dy * (x[:, None, :] - x0))
    near = (cross <= _ON_LINE * length) & strong[:, None, :]  # 4 × pairs × samples
    usable = strong[:, _PAIR_FIRST] & strong[:, _PAIR_SECOND]
    support = near.sum(axis=-1) * usable
    best = support.argmax(axis=1)
    if int(support[_SIDES, best].min()) < _MIN_SIDE_POINTS:
        return None
    chosen: NDArray[np.bool_] = near[_SIDES, best]
    return chosen


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


def _settle(frame: NDArray[np.uint8], quad: Quad, reach: float) -> Quad | None:
    """``quad`` refined until its corners settle (move under half the reach), or None.

    Not fewer passes: even after a pass that found the whole edge straight, another one
    moves the corners by up to 0.2 px, and the label model, trained on crops from
    these corners, can tell (a borderline genuine label's score crosses the threshold).
    """
    for _ in range(_MAX_PASSES):
        result = _refine(frame, quad, reach)
        if result is None:
            return None
        quad, moved = result
        if moved <= reach / 2:
            return quad
    return None  # still moving: not settling on the label's edges


def locate(frame: NDArray[np.uint8]) -> tuple[NDArray[np.float32] | None, LocateFailure | None]:
    """Corners of the label (TL, TR, BR, BL) in a BGR ``frame``, or None and why not."""
    work, scale = _work_image(frame)
    darkest, lightest, _, _ = cv2.minMaxLoc(work)
    if lightest - darkest < _MIN_CONTRAST:
        return None, LocateFailure.BLANK_FRAME
    candidates = _coarse_quads(work)
    if isinstance(candidates, LocateFailure):
        return None, candidates
    for candidate in candidates:
        quad = _settle(frame, [value * scale for value in candidate], reach=3 * scale)
        if quad is not None:
            break
    else:
        return None, LocateFailure.NO_LABEL
    quad = _canonical_order(quad)
    height, width = frame.shape[:2]
    xs, ys = quad[::2], quad[1::2]
    if min(*xs, *ys) < -scale or max(xs) > width - 1 + scale or max(ys) > height - 1 + scale:
        return None, LocateFailure.LABEL_CUT_OFF
    return np.array(quad, dtype=np.float32).reshape(4, 2), None


def locate_label(frame: NDArray[np.uint8]) -> NDArray[np.float32] | None:
    """Corners of the label in ``frame`` as a 4×2 array (TL, TR, BR, BL), or None."""
    return locate(frame)[0]


@functools.cache
def _outer_corners(width: int, height: int) -> NDArray[np.float32]:
    """The outer corners (TL, TR, BR, BL) of a ``width`` × ``height`` image."""
    return np.array(
        [[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]],
        dtype=np.float32,
    )


def warp_label(
    frame: NDArray[np.uint8],
    corners: NDArray[np.float32],
    width: int,
    height: int,
    out: NDArray[np.uint8] | None = None,
) -> NDArray[np.uint8]:
    """The label inside ``corners`` (TL, TR, BR, BL) as an upright ``width`` × ``height`` image,
    written into ``out`` (a C-contiguous ``height`` × ``width`` × 3 uint8 array) if given.

    Corners are the label's outer corners, so the result covers the label edge to edge,
    like the canonical ``LABEL_W`` × ``LABEL_H`` layout scaled to ``width`` × ``height``.
    Each output pixel is the frame pixel nearest its centre: bilinear sampling of this
    3-channel warp measured four to ten times slower here, more than a small model's
    whole invocation.
    """
    target = _outer_corners(width, height)
    corners = np.asarray(corners, dtype=np.float32)
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = corners.tolist()
    xs, ys = (x0, x1, x2, x3), (y0, y1, y2, y3)
    if all(map(math.isfinite, xs + ys)):  # the label's bounding box, a pixel around it
        rows = slice(max(0, int(min(ys))), max(0, int(max(ys)) + 2))
        _fetch(frame[rows, max(0, int(min(xs))) : max(0, int(max(xs)) + 2)])
    matrix = cv2.getPerspectiveTransform(corners, target)
    warped = cv2.warpPerspective(
        frame,
        matrix,
        (width, height),
        dst=out,
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_REPLICATE,
    )
    if out is None:
        return np.asarray(warped, dtype=np.uint8)
    if warped is not out:  # OpenCV made its own array rather than fill this one
        np.copyto(out, warped)
    return out
