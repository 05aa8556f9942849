"""Find the label in a camera frame and warp it upright into canonical label coordinates.

Locating must cost a small fraction of one model invocation, so the search runs on a
small single-channel copy of the frame: the light label is thresholded (Otsu) against
the darker belt and the largest label-like outline gives a rough quadrilateral. Each
side's line is then fitted to the outline's own pixels along it, which average the
coarse grid to about half a frame pixel (up to three on a 640-pixel frame) without
another look at the frame; the label model is trained on warps from corners jittered
by that much, so it needs no finer. Only where something in front bends the outline
are the sides measured on the full-resolution frame, across each side at a dozen
places, and fitted as robust lines, so the corners still come out right with a stretch
of edge hidden. The warp samples the full-resolution frame directly.

Corners are in frame pixel coordinates with pixel centres at integers: a label whose
outer edge runs along the left edge of pixel column 100 has x = 99.5 there. Labels are
taken to be within ±90° of upright (the gate's belt keeps them so); the top edge is
the long edge higher in the frame.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import struct
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final, NamedTuple

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
    "locate_quad",
    "warp_label",
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
_FIT_MARGIN: Final = 0.1
"""Outline pixels this share of a side from either end (a corner's rounding, a cut
corner) are left out of the side's line."""
_FIT_BAND: Final = 1.5
"""Work pixels across a candidate side within which outline pixels make its first line."""
_FIT_TOLERANCE: Final = 0.7
"""The second fit keeps the outline pixels within this many work pixels of the first."""
_OUTER_ROWS, _OUTER_COLUMNS = np.divmod(np.arange(9), 3)
_FIRST_LIMITS: Final = np.array([0.5 - _FIT_MARGIN] * 4 + [_FIT_BAND] * 4)
"""How far from 0 a point's place along each side less a half, then its depth across
each side, may be for the first fit."""
_EDGE_OFFSET: Final = 0.5
"""Work pixels from the outline's pixels out to the label's edge (measured on rendered
labels against their true corners: 0.3 and 0.7 are both worse)."""
_MIN_SUPPORT: Final = 0.7
"""Share of a side's middle whose outline must follow its fitted line."""


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
    if not isinstance(frame, np.ndarray) or frame.dtype != _UINT8:
        return "bad_frame_type"
    if frame.ndim != 3 or frame.shape[2] != 3:
        return "bad_frame_channels"
    height, width = frame.shape[:2]
    if min(height, width) < MIN_FRAME_SIDE or max(height, width) > MAX_FRAME_SIDE:
        return "bad_frame_size"
    return None


def work_step(frame: NDArray[np.uint8]) -> int:
    """Frame pixels per pixel of the grid the label is located on (4 for 640 across):
    located corners are off by a fraction of it (see :func:`locate_quad`)."""
    return max(2, -(-int(frame.shape[1]) // _WORK_WIDTH))


def _work_image(frame: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], float]:
    """A small single-channel copy of the frame, and its scale to frame pixels.

    Every step-th pixel of every step-th row of the green channel (which carries most of
    the luminance): the coarse search needs no more, and reading a quarter of the
    frame's rows is several times cheaper than converting and resizing all of it.
    Work pixel k is frame pixel step·k.
    """
    step = work_step(frame)
    _fetch(frame[::step])
    return frame[::step, ::step, 1].copy(), float(step)


_LINE_PIXELS: Final = 21
"""BGR pixels a 64-byte cache line holds (21.3): one read in every 21 reads every line."""


def _fetch(region: NDArray[np.uint8]) -> None:
    """Read every cache line of ``region`` (a view of a frame) once, in address order.

    A camera frame is in main memory, not in the CPU's caches. The work image copy
    reads a few bytes of a row, then the next, stalling on each line it misses. One
    read per line, row after row, keeps many lines in flight at once; the copy that
    follows finds them in cache, and so do the refinement's profiles that cross those
    rows; :func:`warp_label` fetches the label's box the same way before it warps. (Fetching
    the bands the profiles cross measured no gain.)
    """
    if region.ndim == 3:  # a copy of a few KB: the cheapest read of every line
        region[:, ::_LINE_PIXELS, 1].copy()


def _fetch_around(frame: NDArray[np.uint8], xs: Quad, ys: Quad, margin: float) -> None:
    """:func:`_fetch` the part of ``frame`` within ``margin`` pixels of the box around the
    points (``xs``, ``ys``); nothing if one of them is not finite."""
    if all(map(math.isfinite, xs + ys)):
        rows = slice(max(0, int(min(ys) - margin)), max(0, int(max(ys) + margin) + 2))
        _fetch(frame[rows, max(0, int(min(xs) - margin)) : max(0, int(max(xs) + margin) + 2)])


_SIDES: Final = np.arange(4)
_WINDOW_STEPS: Final = 4
"""Steps searched for the peak of the outermost strong step: it and the ones inside it."""
_PARABOLA: Final = np.array([[0.5, 0.0, -0.5], [1.0, -2.0, 1.0]])
"""Half the difference of a peak's neighbours, and its second difference."""
_PAIR_FIRST, _PAIR_SECOND = np.triu_indices(_SAMPLES, k=1)
_T: Final = _SAMPLE_AT.tolist()
"""Each profile's place along its side (0 to 1), as plain floats."""
_SUM_T: Final = sum(_T)
_SUM_TT: Final = sum(t * t for t in _T)


_FLOAT32: Final = struct.Struct("8f")
"""Packs four corners as float32: unpacked again, the float32 nearest each."""
Outline = NDArray[np.integer[Any] | np.floating[Any]]
"""A contour as OpenCV gives it: N × 1 × 2 pixel coordinates (int32)."""
Quad = list[float]
"""Four corners as a flat list, x0, y0, x1, y1, …: the locating stages pass few numbers,
and plain floats cost less than small arrays do."""


def _clockwise(quad: Quad) -> Quad:
    """The same corners in clockwise order on screen (y down)."""
    x0, y0, x1, y1, x2, y2, x3, y3 = quad
    turn = (x1 - x0) * (y2 - y1) - (y1 - y0) * (x2 - x1)
    return quad if turn > 0 else [x3, y3, x2, y2, x1, y1, x0, y0]


def _coarse_quads(work: NDArray[np.uint8]) -> tuple[list[Quad], Outline] | LocateFailure:
    """Candidate clockwise corners (work pixels) of the largest light, label-shaped
    outline, and the outline (every boundary pixel, N × 1 × 2).

    The outline's simplified polygon gives the corners under perspective; when a corner
    is hidden it cuts that corner off, and the outline's minimum-area rectangle is
    closer. Both are returned when they differ, the likelier first; refinement decides.
    An outline touching the frame's edge is not a whole label.
    """
    _, binary = cv2.threshold(work, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
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
    contour, ((centre_x, centre_y), (rect_w, rect_h), angle) = best
    box = _box_corners(centre_x, centre_y, rect_w, rect_h, angle)
    hull = cv2.convexHull(contour)
    approx = cv2.approxPolyDP(hull, 0.04 * cv2.arcLength(hull, True), True)
    if len(approx) != 4:
        return [box], contour
    polygon: Quad = _clockwise(approx.ravel().tolist())  # whole work pixels
    limit = _MAX_CORNER_GAP * min(rect_w, rect_h)
    box_corners = list(zip(box[::2], box[1::2], strict=True))
    near = all(  # every polygon corner near one of the box's
        min(map(math.dist, itertools.repeat(corner, 4), box_corners)) <= limit
        for corner in zip(polygon[::2], polygon[1::2], strict=True)
    )
    return ([polygon, box] if near else [box, polygon]), contour


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


class _ProfilePlan(NamedTuple):
    """How :func:`_refine` samples profiles across the sides and reads their steps."""

    coefficients: NDArray[np.float32]
    """Each profile pixel's coefficients of its side's (corner, side vector, outward
    normal), as (samples · pixels) × 3, alike for the four sides: one matrix product
    places every pixel. Each profile runs outward to inward. (A plan for all four
    sides in one matrix measured slower: its size in the caches costs more than the
    product it saves.)"""
    windows: NDArray[np.intp]
    """Per profile, where its first ``_WINDOW_STEPS`` steps are in the flat step table."""
    last_window: int
    """Where a profile's innermost window starts: its steps less a window."""
    row_starts: NDArray[np.intp]
    """Per profile, where its steps start in the flat step table (4 · samples × 1)."""
    around: NDArray[np.intp]
    """For a peak at each step of a profile, where it and its neighbours before and after
    are in the profile (steps × 3); at either end the end step stands in for the one past
    it."""
    outer_depth: float
    """Depth (pixels outward) of a profile's outermost step, midway between the step's two
    pixels; step k lies k pixels further in."""


@functools.cache
def _profile_plan(reach: float) -> _ProfilePlan:
    """The plan for profiles ``reach`` pixels either side of a side."""
    offsets = np.arange(reach, -reach - 0.5, -1.0)
    side = np.ones((_SAMPLES, len(offsets), 3))
    side[..., 1] = _SAMPLE_AT[:, None]
    side[..., 2] = offsets
    steps = len(offsets) - 2  # a step spans two pixels
    row_starts = np.arange(4 * _SAMPLES)[:, None] * steps
    at = np.arange(steps)
    around = np.stack([np.maximum(at - 1, 0), at, np.minimum(at + 1, steps - 1)], axis=-1)
    return _ProfilePlan(
        side.reshape(-1, 3).astype(np.float32),
        row_starts + np.arange(_WINDOW_STEPS),
        steps - _WINDOW_STEPS,
        row_starts,
        around,
        float(offsets[1]),
    )


def _refine(frame: NDArray[np.uint8], quad: Quad, reach: float) -> tuple[Quad, float] | None:
    """Clockwise corners moved onto the label edges near ``quad``'s sides, and how far
    they moved (the most in x or y); or None.

    One pass; from a rough start (a corner cut off by an occluder) the edge may only be
    in reach along part of a side, so the caller repeats until the corners settle.

    Across each side, at ``_SAMPLES`` places, a profile of the green channel runs from
    ``reach`` pixels outside to ``reach`` inside; the edge is the peak of its outermost
    strong light-to-dark step (dark print just inside may step harder than paper to
    belt), interpolated to a fraction of a pixel. Each side's line is fitted
    through the edge points that lie on one straight line, so those on an occluder do
    not count. Every numpy call costs microseconds once the model has run (its work
    evicts theirs from the caches), so the work is arranged in few of them.
    """
    xs, ys = quad[::2], quad[1::2]
    basis: list[float] = []  # per side: first corner, vector along it, outward normal
    sides: list[tuple[float, float, float, float, float, float, float]] = []
    shortest = math.inf
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:] + xs[:1], ys[1:] + ys[:1], strict=True):
        length = math.hypot(x1 - x0, y1 - y0)
        if length < 4 * reach:
            return None
        shortest = min(shortest, length)
        nx, ny = (y1 - y0) / length, (x0 - x1) / length  # clockwise: outward is left
        basis += (x0, y0, x1 - x0, y1 - y0, nx, ny)
        sides.append((x0, y0, x1 - x0, y1 - y0, nx, ny, length))
    plan, windows, last_window, row_starts, around, outer_depth = _profile_plan(reach)
    maps = np.matmul(plan, np.array(basis, dtype=np.float32).reshape(4, 3, 2))
    # OpenCV's remap is several times faster with a constant border, and the same as
    # replicating the frame's edge when every profile lies inside the frame
    height, width = frame.shape[:2]
    inside = min(*xs, *ys) >= reach and max(xs) + reach <= width - 1
    inside = inside and max(ys) + reach <= height - 1
    border = cv2.BORDER_CONSTANT if inside else cv2.BORDER_REPLICATE
    profiles = cv2.remap(  # type: ignore[call-overload]  # no map2 for a 2-channel map1
        frame, maps.reshape(4 * _SAMPLES, -1, 2), None, cv2.INTER_LINEAR, borderMode=border
    )
    # the green channel's steps over two pixels: dark out, light in is > 0
    steps = np.subtract(profiles[:, 2:, 1], profiles[:, :-2, 1], dtype=np.int16)
    strongest = steps.max(axis=1)
    # strong: at least half the strongest step, rounded down, and _MIN_STEP; for whole
    # numbers x >= (m + 1) // 2 is 2x >= m
    doubled_threshold = np.maximum(strongest, 2 * _MIN_STEP - 1)
    outermost = (steps + steps >= doubled_threshold[:, None]).argmax(axis=1)
    start = np.minimum(outermost, last_window)  # the window: it and the steps inside it
    peak = start + steps.take(windows + start[:, None]).argmax(axis=1)
    # to a fraction of a pixel: the top of the parabola through the peak's neighbours
    slope, curve = np.matmul(_PARABOLA, steps.take(row_starts + around[peak]).T)
    shift = np.maximum(np.minimum(slope / np.minimum(curve, -1e-3), 0.5), -0.5)
    depths = outer_depth - peak - shift
    # a profile with a strong step has its peak there, and one without has none
    strong = strongest >= _MIN_STEP
    fits = _fit_sides(depths, strong, _ON_LINE)  # every edge point on its side's line
    if fits is None:  # some are off (an occluder, a smudge): find the straight part
        lengths = np.array([side[6] for side in sides])[:, None]
        depths = depths.reshape(4, _SAMPLES)
        on_line = _straight_edges(_SAMPLE_AT * lengths, depths, strong.reshape(4, _SAMPLES))
        if on_line is None:
            return None
        fits = _fit_sides(depths, on_line, 2 * _ON_LINE)
        if fits is None:
            return None
    lines = []
    for (x0, y0, dx, dy, nx, ny, _), (offset, tilt) in zip(sides, fits, strict=True):
        # the edge is at depth offset + tilt · t at t along the side
        ax, ay = dx + tilt * nx, dy + tilt * ny
        norm = math.hypot(ax, ay)
        a, b = ay / norm, -ax / norm
        lines.append((a, b, -(a * (x0 + offset * nx) + b * (y0 + offset * ny))))
    refined = _corners(lines)
    if refined is None:
        return None
    moved = max(map(abs, map(operator.sub, refined, quad)))
    if moved > 0.25 * shortest:
        return None
    return refined, moved


def _fit_sides(
    depths: NDArray[np.float64], keep: NDArray[np.bool_], tolerance: float
) -> list[tuple[float, float]] | None:
    """Each side's edge as depth = offset + tilt · t (t along the side, 0 to 1), fitted
    through its kept points by least squares; or None if a side has too few or one of
    them lies farther than ``tolerance`` off it. ``depths`` and ``keep`` hold 4 × samples
    values, side after side.

    The depths are measured across the side, so the least-squares line in (t, depth) is
    the edge's (distances off it are measured across the side too). Four dozen numbers:
    Python's own sums cost less than numpy's calls. The squared distances of the points
    from their line add up to what the sums leave unexplained; where that is under
    ``_SURELY_ON_LINE`` × the squared tolerance no point can be off its line, and the
    distances need not be measured one by one.
    """
    fits = []
    limit = _SURELY_ON_LINE * tolerance * tolerance
    all_depths, all_keep = depths.ravel().tolist(), keep.ravel().tolist()
    for first in range(0, 4 * _SAMPLES, _SAMPLES):
        side_depths = all_depths[first : first + _SAMPLES]
        side_keep = all_keep[first : first + _SAMPLES]
        if all(side_keep):
            along, across, count, sum_t, sum_tt = _T, side_depths, _SAMPLES, _SUM_T, _SUM_TT
        else:
            along = list(itertools.compress(_T, side_keep))
            across = list(itertools.compress(side_depths, side_keep))
            count = len(along)
            if count < _MIN_SIDE_POINTS:
                return None
            sum_t, sum_tt = sum(along), sum(map(operator.mul, along, along))
        sum_d = sum(across)
        sum_td = sum(map(operator.mul, along, across))
        sum_dd = sum(map(operator.mul, across, across))
        det = count * sum_tt - sum_t * sum_t
        offset = (sum_tt * sum_d - sum_t * sum_td) / det
        tilt = (count * sum_td - sum_t * sum_d) / det
        if sum_dd - offset * sum_d - tilt * sum_td > limit and any(
            abs(depth - offset - tilt * t) > tolerance
            for t, depth in zip(along, across, strict=True)
        ):
            return None
        fits.append((offset, tilt))
    return fits


def _straight_edges(
    along: NDArray[np.float64], depths: NDArray[np.float64], strong: NDArray[np.bool_]
) -> NDArray[np.bool_] | None:
    """Which edge points of each side lie on that side's line (4 × samples), or None.
    A point is ``along`` its side and ``depths`` across it, pixels.

    The line is the one through two of the side's points that most others lie near
    (every pair is tried: a dozen points make 66 pairs), so up to half the points may
    be off the edge, on an occluder or a smudge, without bending it. A side with fewer
    than ``_MIN_SIDE_POINTS`` on a straight line is not a label's edge (texture, noise).
    """
    x, y = along, depths  # 4 × samples
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


def _fit_outline(outline: Outline, candidates: list[Quad]) -> Quad | None:
    """Clockwise corners (work pixels) of the label's edges fitted to its outline, from
    the first candidate whose four sides the outline follows; or None.

    Each side's line is fitted by least squares to the outline pixels along its middle
    (``_FIT_MARGIN`` off either end) and within ``_FIT_BAND`` of it, then again to those
    near that line (``_FIT_TOLERANCE``), in the side's own coordinates (depth across it
    against place along it). The outline's pixels are the label's outermost light ones,
    so the edge lies ``_EDGE_OFFSET`` further out. A side counts when at least
    ``_MIN_SUPPORT`` of its middle follows its line: where an occluder or a smudge bends
    the outline, the caller measures the edges on the frame instead. Some 300 boundary
    pixels average the work image's coarse grid to half a frame pixel (median; up to
    3 px where an edge runs along the grid), without a look at the frame.

    Place and depth are affine in a point's (x, y, 1), so each pass is one matrix
    product for every point's distance from every side's line and one for the kept
    points' second moments, from which a few Python sums give each side's fit: about
    twenty numpy calls in all, where each costs 10–15 µs once the model has run
    (profiles measured on the frame took some 40 a pass).
    """
    points = np.ones((len(outline), 3))
    points[:, :2] = outline.reshape(-1, 2)
    # per point x·x, x·y, x, y·x, y·y, y, x, y, 1: summed over kept points by a product
    outer = (points[:, _OUTER_ROWS] * points[:, _OUTER_COLUMNS]).reshape(-1, 9)
    for candidate in candidates:
        sides = _sides(candidate)
        if sides is None:
            continue
        # place along each side minus a half (its middle lies within 0.5 - margin of
        # 0), then depth across it (the first pass keeps points within the band)
        first = np.array([side.centred for side in sides] + [side.depth for side in sides])
        within = np.abs(points @ first.T) <= _FIRST_LIMITS
        middle = within[:, :4]
        moments = (np.logical_and(middle, within[:, 4:]).T @ outer).tolist()
        fits = _fit_moments(moments, sides)
        if fits is None:
            continue
        lines = np.array([side.off_line(o, t) for side, (o, t) in zip(sides, fits, strict=True)])
        near = np.abs(points @ lines.T) <= _FIT_TOLERANCE
        moments = (np.logical_and(middle, near).T @ outer).tolist()
        fits = _fit_moments(moments, sides)
        if fits is None or any(
            kept[8] < _MIN_SUPPORT * side.pixels for kept, side in zip(moments, sides, strict=True)
        ):
            continue
        edges = [
            side.off_line(offset + _EDGE_OFFSET, tilt)
            for side, (offset, tilt) in zip(sides, fits, strict=True)
        ]
        corners = _corners([_unit_line(line) for line in edges])
        if corners is not None:
            return corners
    return None


Coefficients = list[float]
"""An affine function of a point, a·x + b·y + c, as [a, b, c]."""


class _Side(NamedTuple):
    """One side of a candidate quadrilateral, as affine functions of a point."""

    place: Coefficients
    """Place along the side: 0 at its first corner, 1 at its second."""
    centred: Coefficients
    """``place`` minus a half."""
    depth: Coefficients
    """Distance across the side, outward positive."""
    pixels: float
    """Outline pixels along the side's middle, were it all there (8-connected: one
    per step along its longer axis)."""

    def off_line(self, offset: float, tilt: float) -> Coefficients:
        """Depth off the line at depth ``offset`` + ``tilt`` · place."""
        (pa, pb, pc), (da, db, dc) = self.place, self.depth
        return [da - tilt * pa, db - tilt * pb, dc - tilt * pc - offset]


def _sides(quad: Quad) -> list[_Side] | None:
    """The four sides of clockwise ``quad``; None if one is shorter than 4 work pixels."""
    xs, ys = quad[::2], quad[1::2]
    sides = []
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:] + xs[:1], ys[1:] + ys[:1], strict=True):
        dx, dy = x1 - x0, y1 - y0
        squared = dx * dx + dy * dy
        if squared < 16:
            return None
        length = math.sqrt(squared)
        nx, ny = dy / length, -dx / length  # clockwise on screen: outward is left
        place = [dx / squared, dy / squared, -(x0 * dx + y0 * dy) / squared]
        sides.append(
            _Side(
                place,
                [place[0], place[1], place[2] - 0.5],
                [nx, ny, -(x0 * nx + y0 * ny)],
                (1 - 2 * _FIT_MARGIN) * max(abs(dx), abs(dy)),
            )
        )
    return sides


def _fit_moments(
    moments: list[list[float]], sides: list[_Side]
) -> list[tuple[float, float]] | None:
    """Each side's least-squares line depth = offset + tilt · place through its kept
    points, given their second moments (x·x, x·y, x, y·x, y·y, y, x, y, count); None if
    a side has too few points to fit."""
    fits = []
    for m, side in zip(moments, sides, strict=True):
        count = m[8]
        if count < _MIN_SIDE_POINTS:
            return None
        (ta, tb, tc), (da, db, dc) = side.place, side.depth
        # moments times the place coefficients: Σ t·x, Σ t·y, Σ t
        tx, ty, t1 = (
            m[0] * ta + m[1] * tb + m[2] * tc,
            m[3] * ta + m[4] * tb + m[5] * tc,
            m[6] * ta + m[7] * tb + m[8] * tc,
        )
        sum_t = t1
        sum_d = m[6] * da + m[7] * db + m[8] * dc
        sum_tt = tx * ta + ty * tb + t1 * tc
        sum_td = tx * da + ty * db + t1 * dc
        det = count * sum_tt - sum_t * sum_t
        if det <= 1e-9 * count * count:
            return None
        fits.append(
            ((sum_tt * sum_d - sum_t * sum_td) / det, (count * sum_td - sum_t * sum_d) / det)
        )
    return fits


def _unit_line(line: Coefficients) -> tuple[float, float, float]:
    """``line`` (a·x + b·y + c = 0) scaled so that (a, b) is a unit vector."""
    a, b, c = line
    norm = math.hypot(a, b)
    return a / norm, b / norm, c / norm


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

    The careful path, for outlines an occluder bends (:func:`_fit_outline` declines
    them): a pass that found the whole edge straight may still move the corners by
    0.2 px, so they are refined until they stop moving.
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
    quad, failure = locate_quad(frame)
    if quad is None:
        return None, failure
    return np.array(quad, dtype=np.float32).reshape(4, 2), None


def locate_quad(frame: NDArray[np.uint8]) -> tuple[Quad | None, LocateFailure | None]:
    """:func:`locate`'s corners as a flat list of floats (x0, y0, x1, …: TL, TR, BR, BL),
    rounded to float32 like its array; or None and why not. What :func:`warp_label` takes
    without converting.

    From the outline fit, the corners are off by about half a frame pixel (median) and
    up to about 3 at 640 pixels across (:func:`work_step` 4), where an edge runs along
    the work image's grid; the label model is trained on warps from corners jittered
    that far (:mod:`edge_agent.vision.dataset`)."""
    work, scale = _work_image(frame)
    found = _coarse_quads(work)
    if isinstance(found, LocateFailure):
        return None, _blank_or(work, found)
    candidates, outline = found
    quad = _fit_outline(outline, candidates)
    if quad is not None:
        quad = [value * scale for value in quad]
    else:  # an occluder or a smudge bends the outline: measure the edges on the frame
        reach = 3 * scale
        for candidate in candidates:
            quad = _settle(frame, [value * scale for value in candidate], reach)
            if quad is not None:
                break
        else:
            return None, _blank_or(work, LocateFailure.NO_LABEL)
    quad = _canonical_order(quad)
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
) -> NDArray[np.uint8]:
    """The label inside ``corners`` (TL, TR, BR, BL: a 4 × 2 array, or a flat sequence
    x0, y0, x1, … as :func:`locate_quad` gives) as an upright ``width`` × ``height`` image,
    written into ``out`` (a C-contiguous ``height`` × ``width`` × 3 uint8 array) if given.

    Corners are the label's outer corners, so the result covers the label edge to edge,
    like the canonical ``LABEL_W`` × ``LABEL_H`` layout scaled to ``width`` × ``height``.
    Each output pixel is the frame pixel nearest its centre: bilinear sampling of this
    3-channel warp measured four to ten times slower here, more than a small model's
    whole invocation. A label inside the frame is warped with a constant border, which
    OpenCV does faster and which is then never read.
    """
    quad = corners.ravel().tolist() if isinstance(corners, np.ndarray) else list(corners)
    xs, ys = quad[::2], quad[1::2]
    _fetch_around(frame, xs, ys, 0)
    frame_height, frame_width = frame.shape[:2]
    finite = all(map(math.isfinite, quad))
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
