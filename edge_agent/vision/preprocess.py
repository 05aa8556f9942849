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

import math
from enum import StrEnum
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.vision.layout import LABEL_ASPECT

__all__ = [
    "MAX_FRAME_SIDE",
    "MIN_FRAME_SIDE",
    "LocateFailure",
    "check_frame",
    "decode_jpeg",
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
_MIN_STEP: Final = 24.0
"""Weakest light-to-dark step (over 2 pixels) taken as the label's edge."""
_MIN_SIDE_POINTS: Final = 5
"""Edge points a side needs (of ``_SAMPLES``) on its fitted line to count as found."""
_MAX_PASSES: Final = 3
"""Refinement passes from a rough start; more would mean it is chasing something else."""
_ON_LINE: Final = 1.0
"""Frame pixels an edge point may lie off its side's line and still be on it."""
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


def decode_jpeg(data: bytes) -> NDArray[np.uint8] | None:
    """The BGR image in JPEG (or other OpenCV-readable) ``data``, or None if it is not one."""
    if not data or len(data) > MAX_IMAGE_BYTES:
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
    return np.ascontiguousarray(frame[::step, ::step, 1]), float(step)


_NEXT: Final = np.array([1, 2, 3, 0])
_OUTWARD: Final = np.array([1.0, -1.0])
_SIDE_ROWS: Final = np.arange(4 * _SAMPLES)
_SIDES: Final = np.arange(4)
_PEAK_WINDOW: Final = np.arange(3, -1, -1)
_PAIR_FIRST, _PAIR_SECOND = np.triu_indices(_SAMPLES, k=1)


def _clockwise(quad: NDArray[np.float64]) -> NDArray[np.float64]:
    """The same corners in clockwise order on screen (y down)."""
    (x0, y0), (x1, y1), (x2, y2) = quad[:3].tolist()
    turn = (x1 - x0) * (y2 - y1) - (y1 - y0) * (x2 - x1)
    return quad if turn > 0 else np.ascontiguousarray(quad[::-1])


def _coarse_quads(work: NDArray[np.uint8]) -> list[NDArray[np.float64]] | LocateFailure:
    """Candidate clockwise corners (work pixels) of the largest light, label-shaped outline.

    The outline's simplified polygon gives the corners under perspective; when a corner
    is hidden it cuts that corner off, and the outline's minimum-area rectangle is
    closer. Both are returned when they differ, the likelier first; refinement decides.
    An outline touching the frame's edge is not a whole label.
    """
    _, binary = cv2.threshold(work, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    work_area = float(work.shape[0] * work.shape[1])
    best_area = _MIN_AREA_FRACTION * work_area
    best = None
    cut_off = False
    height, width = work.shape
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
    box = np.asarray(cv2.boxPoints(rect), dtype=np.float64)
    hull = cv2.convexHull(contour)
    approx = cv2.approxPolyDP(hull, 0.04 * cv2.arcLength(hull, True), True)
    box = _clockwise(box)
    if len(approx) != 4:
        return [box]
    polygon = _clockwise(approx.reshape(4, 2).astype(np.float64))
    gaps = np.hypot(*(polygon[:, None, :] - box[None, :, :]).transpose(2, 0, 1)).min(axis=1)
    if float(gaps.max()) <= _MAX_CORNER_GAP * min(rect[1]):
        return [polygon, box]
    return [box, polygon]


def _corners(lines: list[tuple[float, float, float]]) -> NDArray[np.float64] | None:
    """Where side i-1 meets side i, for each i; None if two neighbours are parallel."""
    corners = []
    for side in range(4):
        a1, b1, c1 = lines[side - 1]
        a2, b2, c2 = lines[side]
        det = a1 * b2 - a2 * b1
        if abs(det) < 1e-9:
            return None
        corners.append(((b1 * c2 - b2 * c1) / det, (a2 * c1 - a1 * c2) / det))
    return np.array(corners, dtype=np.float64)


def _refine(
    frame: NDArray[np.uint8], quad: NDArray[np.float64], reach: float
) -> NDArray[np.float64] | None:
    """Clockwise corners moved onto the label edges near ``quad``'s sides, or None.

    One pass; from a rough start (a corner cut off by an occluder) the edge may only be
    in reach along part of a side, so the caller repeats until the corners settle.

    Across each side, at ``_SAMPLES`` places, a profile of the green channel runs from
    ``reach`` pixels inside to ``reach`` outside; the edge is its outermost strong
    light-to-dark step (dark print just inside may step harder than paper to belt),
    interpolated to a fraction of a pixel. Each side's line is fitted through the edge
    points that lie on one straight line, so those on an occluder do not count.
    """
    along = quad[_NEXT] - quad
    lengths = np.hypot(along[:, 0], along[:, 1])
    if float(lengths.min()) < 4 * reach:
        return None
    outward = along[:, ::-1] * _OUTWARD / lengths[:, None]  # clockwise: left of travel
    offsets = np.arange(-reach, reach + 0.5, 1.0)
    bases = quad[:, None, :] + _SAMPLE_AT[None, :, None] * along[:, None, :]  # 4 × S × 2
    shape = (4 * _SAMPLES, len(offsets))
    map_x = (bases[..., 0, None] + offsets * outward[:, 0, None, None]).reshape(shape)
    map_y = (bases[..., 1, None] + offsets * outward[:, 1, None, None]).reshape(shape)
    profiles = np.asarray(
        cv2.remap(
            frame,
            map_x.astype(np.float32),
            map_y.astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
    )[..., 1].astype(np.float32)
    steps = profiles[:, :-2] - profiles[:, 2:]  # light inside, dark outside: positive
    strong_enough = steps >= np.maximum(steps.max(axis=1, keepdims=True) * 0.5, _MIN_STEP)
    outermost = steps.shape[1] - 1 - strong_enough[:, ::-1].argmax(axis=1)
    window = np.maximum(outermost[:, None] - _PEAK_WINDOW, 0)  # that step's peak is within
    best = window[_SIDE_ROWS, np.take_along_axis(steps, window, axis=1).argmax(axis=1)]
    peak = steps[_SIDE_ROWS, best]
    before = steps[_SIDE_ROWS, np.maximum(best - 1, 0)]
    after = steps[_SIDE_ROWS, np.minimum(best + 1, steps.shape[1] - 1)]
    shift = 0.5 * (before - after) / np.minimum(before - 2 * peak + after, -1e-3)
    shift = np.maximum(np.minimum(shift, 0.5), -0.5)
    depth = (best + shift + (offsets[0] + 1)).reshape(4, _SAMPLES, 1)
    points = (bases + depth * outward[:, None, :]).astype(np.float32)
    strong = (peak >= _MIN_STEP).reshape(4, _SAMPLES)
    lines = _side_lines(points, strong, _ON_LINE)  # every edge point on its side's line
    if lines is None:  # some are off (an occluder, a smudge): find the straight part
        on_line = _straight_edges(points, strong)
        if on_line is None:
            return None
        lines = _side_lines(points, on_line, 2 * _ON_LINE)
        if lines is None:
            return None
    refined = _corners(lines)
    if refined is None or float(np.abs(refined - quad).max()) > 0.25 * float(lengths.min()):
        return None
    return refined


def _side_lines(
    points: NDArray[np.float32], keep: NDArray[np.bool_], tolerance: float
) -> list[tuple[float, float, float]] | None:
    """Each side's line (a, b, c: a·x + b·y + c = 0) fitted through its kept points, or
    None if a side has too few or one of them lies farther than ``tolerance`` off it.

    Total least squares for the four sides at once: the line through the points' centre
    along their principal axis.
    """
    weight = keep.astype(np.float64)
    count = weight.sum(axis=1)
    if float(count.min()) < _MIN_SIDE_POINTS:
        return None
    x, y = points[..., 0].astype(np.float64), points[..., 1].astype(np.float64)
    mean_x, mean_y = (weight * x).sum(axis=1) / count, (weight * y).sum(axis=1) / count
    dx, dy = (x - mean_x[:, None]) * weight, (y - mean_y[:, None]) * weight
    angle = 0.5 * np.arctan2(2 * (dx * dy).sum(axis=1), (dx * dx - dy * dy).sum(axis=1))
    a, b = np.sin(angle), -np.cos(angle)  # normal of the direction (cos, sin)
    c = -(a * mean_x + b * mean_y)
    if float(np.abs(a[:, None] * dx + b[:, None] * dy).max()) > tolerance:
        return None
    return list(zip(a.tolist(), b.tolist(), c.tolist(), strict=True))


def _straight_edges(
    points: NDArray[np.float32], strong: NDArray[np.bool_]
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


def _canonical_order(quad: NDArray[np.float64]) -> NDArray[np.float64]:
    """Clockwise corners re-ordered TL, TR, BR, BL: long sides horizontal, top side higher."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = quad.tolist()
    first = math.hypot(x1 - x0, y1 - y0) + math.hypot(x3 - x2, y3 - y2)
    second = math.hypot(x2 - x1, y2 - y1) + math.hypot(x0 - x3, y0 - y3)
    start = 0 if first >= second else 1
    ys = (y0, y1, y2, y3)
    if ys[start] + ys[start + 1] > ys[start + 2] + ys[(start + 3) % 4]:
        start += 2
    return quad[[(start + i) % 4 for i in range(4)]]


def _settle(
    frame: NDArray[np.uint8], quad: NDArray[np.float64], reach: float
) -> NDArray[np.float64] | None:
    """``quad`` refined until its corners settle (move under half the reach), or None."""
    for _ in range(_MAX_PASSES):
        refined = _refine(frame, quad, reach)
        if refined is None:
            return None
        moved = float(np.abs(refined - quad).max())
        quad = refined
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
        quad = _settle(frame, candidate * scale, reach=3 * scale)
        if quad is not None:
            break
    else:
        return None, LocateFailure.NO_LABEL
    quad = _canonical_order(quad)
    height, width = frame.shape[:2]
    low, high = quad.min(axis=0), quad.max(axis=0)
    if low.min() < -scale or high[0] > width - 1 + scale or high[1] > height - 1 + scale:
        return None, LocateFailure.LABEL_CUT_OFF
    return quad.astype(np.float32), None


def locate_label(frame: NDArray[np.uint8]) -> NDArray[np.float32] | None:
    """Corners of the label in ``frame`` as a 4×2 array (TL, TR, BR, BL), or None."""
    return locate(frame)[0]


def warp_label(
    frame: NDArray[np.uint8], corners: NDArray[np.float32], width: int, height: int
) -> NDArray[np.uint8]:
    """The label inside ``corners`` (TL, TR, BR, BL) as an upright ``width`` × ``height`` image.

    Corners are the label's outer corners, so the result covers the label edge to edge,
    like the canonical ``LABEL_W`` × ``LABEL_H`` layout scaled to ``width`` × ``height``.
    Each output pixel is the frame pixel nearest its centre: bilinear sampling of this
    3-channel warp measured four to ten times slower here, more than a small model's
    whole invocation.
    """
    target = np.array(
        [[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]],
        dtype=np.float32,
    )
    matrix = cv2.getPerspectiveTransform(np.asarray(corners, dtype=np.float32), target)
    warped = cv2.warpPerspective(
        frame, matrix, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(warped, dtype=np.uint8)
