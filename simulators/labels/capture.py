"""A camera looking at a label on a belt: pose, background, light, blur, noise, JPEG.

:func:`sample_capture` draws one :class:`Capture` (everything the frames of one sample
share: the label's pose, the belt, an occluder, light, blur, sensor noise and JPEG
quality); :func:`capture_frames` photographs the label once per lighting angle under it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.vision.layout import LABEL_H, LABEL_W
from simulators.labels.config import FloatRange, RenderConfig

__all__ = ["Capture", "Occluder", "capture_frames", "label_width_px", "sample_capture"]

Image = NDArray[np.uint8]
Bgr = tuple[int, int, int]

_EDGE_MARGIN: Final = 4.0
"""Frame pixels kept free between the label's corners and the frame border."""
_NOISE_PAD: Final = 48
_MCU: Final = 16
"""JPEG minimum coded unit with 4:2:0 chroma subsampling (OpenCV's default)."""
_OCCLUDER_INKS: Final[tuple[Bgr, ...]] = (
    (120, 150, 205),  # skin
    (45, 42, 40),  # dark glove
    (170, 110, 45),  # blue glove
    (60, 120, 170),  # brown packing tape
)
"""Occluders are darker than the label paper, so its outline stays findable."""


@dataclass(frozen=True, slots=True)
class Occluder:
    """An object over the label's edge: a polygon in frame pixels and its colour."""

    polygon: NDArray[np.int32]
    colour: Bgr


@dataclass(frozen=True, slots=True)
class Capture:
    """What the frames of one sample share (only the lighting angle differs)."""

    corners: NDArray[np.float32]
    """Label corners TL, TR, BR, BL in frame pixels (pixel centres at integers)."""
    background: Image
    gain: Image
    """Per-pixel, per-channel illumination × white-balance gain, 128 = 1 (frame-sized)."""
    blur_sigma: float
    motion_kernel: NDArray[np.float32] | None
    occluder: Occluder | None
    noise_level: int
    """Sensor noise sigma in grey levels (whole levels: the noise comes from fixed banks)."""
    jpeg_quality: int


def _uniform(rng: np.random.Generator, bounds: FloatRange) -> float:
    """A draw from ``bounds``; always one draw, so other settings keep their values."""
    return float(rng.uniform(bounds[0], bounds[1]))


def _pose(config: RenderConfig, rng: np.random.Generator) -> NDArray[np.float32]:
    width, height = config.frame_width, config.frame_height
    label_w = _uniform(rng, config.label_width) * width
    label_h = label_w * LABEL_H / LABEL_W
    half = (
        np.array(
            [[-label_w, -label_h], [label_w, -label_h], [label_w, label_h], [-label_w, label_h]]
        )
        / 2.0
    )
    theta = math.radians(rng.uniform(-config.rotation_deg, config.rotation_deg))
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    quad = half @ rotation.T
    quad += rng.uniform(-1.0, 1.0, (4, 2)) * config.perspective * label_w
    extent = quad.max(axis=0) - quad.min(axis=0)
    room = np.array([width, height], np.float64) - 2 * _EDGE_MARGIN - 1
    quad *= min(1.0, float(np.min(room / extent)))  # shrink only if it cannot fit
    low = _EDGE_MARGIN - quad.min(axis=0)
    high = np.array([width, height]) - 1 - _EDGE_MARGIN - quad.max(axis=0)
    quad += low + rng.uniform(0.0, 1.0, 2) * np.maximum(high - low, 0.0)
    return np.asarray(quad, np.float32)


def _background(config: RenderConfig, rng: np.random.Generator) -> Image:
    width, height = config.frame_width, config.frame_height
    if rng.random() < 0.5:  # grey conveyor belt
        level = rng.uniform(35, 105)
        base = np.array([level, level, level]) + rng.uniform(-6, 6, 3)
    else:  # brown carton
        base = np.array([70.0, 105.0, 140.0]) * rng.uniform(0.55, 1.0)
    coarse = np.clip(rng.normal(0.0, 7.0, (6, 8, 1)) + base, 0, 255).astype(np.uint8)
    return np.asarray(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR))


def _gain(config: RenderConfig, rng: np.random.Generator) -> Image:
    level = _uniform(rng, config.brightness)
    balance = 1.0 + rng.uniform(-config.white_balance, config.white_balance, 3)
    direction = rng.uniform(0, 2 * math.pi)
    slope = rng.uniform(0, config.illumination_gradient) / 2
    corners = np.empty((2, 2, 3), np.float32)
    for row in range(2):
        for col in range(2):
            along = (col - 0.5) * math.cos(direction) + (row - 0.5) * math.sin(direction)
            corners[row, col] = level * balance * (1.0 + slope * along * 2) * 128.0
    size = (config.frame_width, config.frame_height)
    small = np.asarray(np.clip(np.round(corners), 0, 255), np.uint8)
    return np.asarray(cv2.resize(small, size, interpolation=cv2.INTER_LINEAR), np.uint8)


def _motion_kernel(length: float, rng: np.random.Generator) -> NDArray[np.float32] | None:
    if length < 1.0:
        return None
    size = 2 * math.ceil(length / 2) + 1
    angle = rng.uniform(0, math.pi)
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    canvas = np.zeros((size * 8, size * 8), np.uint8)
    centre = size * 4
    start = (round(centre - dx * 8), round(centre - dy * 8))
    end = (round(centre + dx * 8), round(centre + dy * 8))
    cv2.line(canvas, start, end, 255, 8, cv2.LINE_AA)
    kernel = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.asarray(kernel / kernel.sum(), np.float32)


def _occluder(corners: NDArray[np.float32], rng: np.random.Generator) -> Occluder:
    """An ellipse over the top, right or bottom edge, clear of the patch and DataMatrix."""
    edge = int(rng.integers(0, 3))
    along = rng.uniform(14, 34)
    if edge == 0:  # top, over the margin above the brand name
        inward = rng.uniform(8, 14)
        centre, axes = (rng.uniform(120 + along, 310 - along), 0.0), (along, inward)
    elif edge == 1:  # right, above the DataMatrix
        inward = rng.uniform(8, 14)
        centre, axes = (float(LABEL_W), rng.uniform(along, 98 - along)), (inward, along)
    else:  # bottom, under the details text
        inward = rng.uniform(10, 24)
        centre, axes = (rng.uniform(110 + along, 230 - along), float(LABEL_H)), (along, inward)
    points = (
        np.asarray(
            cv2.ellipse2Poly(
                (round(centre[0] * 8), round(centre[1] * 8)),
                (round(axes[0] * 8), round(axes[1] * 8)),
                round(rng.uniform(-15, 15)),
                0,
                360,
                10,
            ),
            np.float32,
        )
        / 8.0
    )
    canonical = np.array([[0, 0], [LABEL_W, 0], [LABEL_W, LABEL_H], [0, LABEL_H]], np.float32)
    to_frame = cv2.getPerspectiveTransform(canonical, corners)
    in_frame = cv2.perspectiveTransform(points[None], to_frame)[0]
    colour = _OCCLUDER_INKS[int(rng.integers(0, len(_OCCLUDER_INKS)))]
    return Occluder(np.round(in_frame).astype(np.int32), colour)


def sample_capture(config: RenderConfig, rng: np.random.Generator) -> Capture:
    """Draw the pose, scene, light and blur shared by the frames of one sample.

    Each aspect has its own child stream of ``rng``, so changing one setting (say the
    blur range) leaves the others (pose, light…) of a seed as they were.
    """
    pose, scene, light, optics, occlusion, sensor = rng.spawn(6)
    corners = _pose(config, pose)
    background = _background(config, scene)
    gain = _gain(config, light)
    blur_sigma = _uniform(optics, config.blur_sigma)
    motion = _motion_kernel(_uniform(optics, config.motion_blur), optics)
    occluded = occlusion.random() < config.occlusion_probability
    occluder = _occluder(corners, occlusion) if occluded else None
    noise_level = round(_uniform(sensor, config.noise_sigma))
    quality = int(sensor.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    return Capture(corners, background, gain, blur_sigma, motion, occluder, noise_level, quality)


@functools.cache
def _noise_bank(width: int, height: int, level: int) -> tuple[Image, Image]:
    """Fixed Gaussian noise of sigma ``level``, a little larger than a frame, split into its
    positive and negative parts (so adding it stays in fast saturating uint8 arithmetic)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([0x5EED, level])))
    shape = (height + _NOISE_PAD, width + _NOISE_PAD, 3)
    noise = np.round(rng.standard_normal(shape, dtype=np.float32) * level)
    positive = np.asarray(np.clip(noise, 0, 255), np.uint8)
    negative = np.asarray(np.clip(-noise, 0, 255), np.uint8)
    positive.setflags(write=False)
    negative.setflags(write=False)
    return positive, negative


def _box(points: NDArray[np.float32], margin: int, width: int, height: int) -> tuple[int, ...]:
    x0, y0 = np.floor(points.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + margin + 1
    return max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))


def _optics(scene: Image, capture: Capture) -> Image:
    """Focus and motion blur."""
    if capture.blur_sigma > 0.05:
        scene = np.asarray(cv2.GaussianBlur(scene, (0, 0), capture.blur_sigma))
    if capture.motion_kernel is not None:
        scene = np.asarray(cv2.filter2D(scene, -1, capture.motion_kernel))
    return scene


def _warp_into(scene: Image, label: Image, capture: Capture, origin: tuple[int, int]) -> None:
    """Warp ``label`` onto ``scene`` (in place), a crop of the frame starting at ``origin``.

    The label's outer edge lands on the corners with partial (anti-aliased) coverage: it
    is warped with an alpha channel over a transparent border and blended, which every
    OpenCV version does alike (``BORDER_TRANSPARENT`` edges differ between 4.x and 5;
    see :func:`_warp_stable` for the interpolation).
    The transform is built in float64 from the same corners for every crop, so a crop
    gets the pixels the whole frame would (see :func:`_update`).
    """
    lh, lw = label.shape[:2]
    source = np.array([[-0.5, -0.5], [lw - 0.5, -0.5], [lw - 0.5, lh - 0.5], [-0.5, lh - 0.5]])
    to_frame = _homography(source, capture.corners.astype(np.float64))
    shift = np.array([[1.0, 0.0, -origin[0]], [0.0, 1.0, -origin[1]], [0.0, 0.0, 1.0]])
    size = (scene.shape[1], scene.shape[0])
    opaque = np.asarray(cv2.cvtColor(label, cv2.COLOR_BGR2BGRA), np.uint8)
    warped = _warp_stable(opaque, shift @ to_frame, size)
    colour = cv2.cvtColor(warped, cv2.COLOR_BGRA2BGR)  # premultiplied by coverage
    uncovered = cv2.cvtColor(cv2.bitwise_not(cv2.extractChannel(warped, 3)), cv2.COLOR_GRAY2BGR)
    scene[...] = cv2.add(colour, cv2.multiply(scene, uncovered, scale=1.0 / 255.0))


def _warp_stable(image: Image, matrix: NDArray[np.float64], size: tuple[int, int]) -> Image:
    """``cv2.warpPerspective(image, matrix, size)`` (bilinear, black border), computed the
    same way in OpenCV 4 and 5.

    OpenCV 5 interpolates float coordinates differently from 4.x (up to 4 grey levels
    apart). Here the source coordinates are computed in numpy and rounded to OpenCV's
    1/32-pixel fixed-point maps by ``cv2.convertMaps``; ``cv2.remap`` on fixed-point maps
    is identical in both (and equal to 4.x ``warpPerspective``).
    """
    width, height = size
    inverse = np.linalg.inv(matrix)
    xs = np.arange(width, dtype=np.float64)[None, :]
    ys = np.arange(height, dtype=np.float64)[:, None]
    rows = [
        (inverse[r, 0] * xs).astype(np.float32)
        + (inverse[r, 1] * ys + inverse[r, 2]).astype(np.float32)
        for r in range(3)
    ]
    scale = np.float32(1.0) / rows[2]
    map_xy, map_frac = cv2.convertMaps(rows[0] * scale, rows[1] * scale, cv2.CV_16SC2)
    return np.asarray(
        cv2.remap(image, map_xy, map_frac, cv2.INTER_LINEAR, None, cv2.BORDER_CONSTANT, 0)
    )


def _homography(source: NDArray[np.float64], target: NDArray[np.float64]) -> NDArray[np.float64]:
    """The projective map of four ``source`` points onto ``target``, in float64."""
    rows = []
    for (x, y), (u, v) in zip(source, target, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    solution = np.linalg.solve(np.array(rows, np.float64), target.reshape(-1))
    return np.append(solution, 1.0).reshape(3, 3)


def _light(
    scene: Image, capture: Capture, noise: tuple[int, int, int, int], at: tuple[int, int]
) -> Image:
    """Illumination and sensor noise of ``scene``, a crop of the frame starting at ``at``."""
    height, width = scene.shape[:2]
    x, y = at
    lit = cv2.multiply(scene, capture.gain[y : y + height, x : x + width], scale=1.0 / 128.0)
    if capture.noise_level > 0:
        frame_h, frame_w = capture.background.shape[:2]
        positive, negative = _noise_bank(frame_w, frame_h, capture.noise_level)
        py, px, ny, nx = noise
        lit = cv2.add(lit, positive[py + y : py + y + height, px + x : px + x + width])
        lit = cv2.subtract(lit, negative[ny + y : ny + y + height, nx + x : nx + x + width])
    return np.asarray(lit)


def _jpeg(image: Image, quality: int) -> Image:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG frame")
    return np.asarray(cv2.imdecode(data, cv2.IMREAD_COLOR), dtype=np.uint8)


def capture_frames(
    labels: Sequence[Image],
    capture: Capture,
    rng: np.random.Generator,
    changed: NDArray[np.float32] | None = None,
) -> tuple[Image, ...]:
    """Photograph each of ``labels`` (canonical size, one per lighting angle) under
    ``capture``. The frames share the sensor noise drawn from ``rng``.

    ``changed`` (4 × 2, canonical label coordinates) bounds where the labels after the first differ
    from it (the film patch); only that part of their frames is re-rendered and
    re-compressed (JPEG blocks are independent: the same result up to rounding).
    """
    noise = cast(tuple[int, int, int, int], tuple(int(v) for v in rng.integers(0, _NOISE_PAD, 4)))
    scene, raw, origin = _scene(labels[0], capture)
    first = _jpeg(_light(scene, capture, noise, (0, 0)), capture.jpeg_quality)
    shots = [first]
    for label in labels[1:]:
        if label is labels[0]:
            shots.append(first.copy())
        elif changed is None:
            again = _scene(label, capture)[0]
            shots.append(_jpeg(_light(again, capture, noise, (0, 0)), capture.jpeg_quality))
        else:
            box, part = _redraw(raw, origin, label, capture, changed)
            shots.append(_update(first, scene, box, part, capture, noise))
    return tuple(shots)


def label_width_px(capture: Capture) -> float:
    """How wide the label appears in the frame (its longer horizontal edge), pixels."""
    top, bottom = capture.corners[1] - capture.corners[0], capture.corners[2] - capture.corners[3]
    return float(max(np.linalg.norm(top), np.linalg.norm(bottom)))


def _scene(label: Image, capture: Capture) -> tuple[Image, Image, tuple[int, int]]:
    """The frame before light and noise; also the unblurred crop around the label."""
    height, width = capture.background.shape[:2]
    outline = capture.corners
    if capture.occluder is not None:
        outline = np.vstack([outline, capture.occluder.polygon.astype(np.float32)])
    x0, y0, x1, y1 = _box(outline, 8, width, height)
    raw = capture.background[y0:y1, x0:x1].copy()
    _warp_into(raw, label, capture, (x0, y0))
    if capture.occluder is not None:
        polygon = capture.occluder.polygon - np.array([x0, y0], np.int32)
        cv2.fillPoly(raw, [polygon], capture.occluder.colour, cv2.LINE_AA)
    scene = capture.background.copy()
    scene[y0:y1, x0:x1] = _optics(raw, capture)
    return scene, raw, (x0, y0)


def _redraw(
    raw: Image,
    origin: tuple[int, int],
    label: Image,
    capture: Capture,
    changed: NDArray[np.float32],
) -> tuple[tuple[int, int, int, int], Image]:
    """The ``changed`` part of the scene redrawn from ``label``: its box in the frame
    (x0, y0, x1, y1) and its pixels before light and noise."""
    canonical = np.array([[0, 0], [LABEL_W, 0], [LABEL_W, LABEL_H], [0, LABEL_H]], np.float32)
    to_frame = cv2.getPerspectiveTransform(canonical, capture.corners)
    area = cv2.perspectiveTransform(changed[None], to_frame)[0] - np.array(origin, np.float32)
    kernel = 0 if capture.motion_kernel is None else capture.motion_kernel.shape[0]
    pad = 3 + math.ceil(3 * capture.blur_sigma) + kernel
    rh, rw = raw.shape[:2]
    x0, y0, x1, y1 = _box(area, 2 * pad, rw, rh)
    ox, oy = origin
    # From the bare background: warping over a warped label would blend its outline twice.
    sub = capture.background[oy + y0 : oy + y1, ox + x0 : ox + x1].copy()
    _warp_into(sub, label, capture, (ox + x0, oy + y0))
    if capture.occluder is not None:
        polygon = capture.occluder.polygon - np.array([ox + x0, oy + y0], np.int32)
        cv2.fillPoly(sub, [polygon], capture.occluder.colour, cv2.LINE_AA)
    blurred = _optics(sub, capture)
    # Keep only pixels whose blur footprint lies inside ``sub`` (all of it at raw's edges).
    ix0, iy0 = (x0 + pad if x0 > 0 else x0), (y0 + pad if y0 > 0 else y0)
    ix1, iy1 = (x1 - pad if x1 < rw else x1), (y1 - pad if y1 < rh else y1)
    part = blurred[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    return (ox + ix0, oy + iy0, ox + ix1, oy + iy1), part


def _update(
    first: Image,
    scene: Image,
    box: tuple[int, int, int, int],
    part: Image,
    capture: Capture,
    noise: tuple[int, int, int, int],
) -> Image:
    """``first`` (a finished frame of ``scene``) with ``part`` at ``box`` photographed in.

    Only the JPEG blocks around ``box`` are encoded again: a crop aligned to the 16-pixel
    MCU grid with one MCU of margin compresses inside as the whole frame would.
    """
    height, width = scene.shape[:2]
    x0, y0, x1, y1 = box
    cx0, cy0 = max(0, (x0 // _MCU - 1) * _MCU), max(0, (y0 // _MCU - 1) * _MCU)
    cx1, cy1 = min(width, (-(-x1 // _MCU) + 1) * _MCU), min(height, (-(-y1 // _MCU) + 1) * _MCU)
    crop = scene[cy0:cy1, cx0:cx1].copy()
    crop[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = part
    shot = _jpeg(_light(crop, capture, noise, (cx0, cy0)), capture.jpeg_quality)
    kx0, ky0 = (cx0 + _MCU if cx0 > 0 else 0), (cy0 + _MCU if cy0 > 0 else 0)
    kx1, ky1 = (cx1 - _MCU if cx1 < width else width), (cy1 - _MCU if cy1 < height else height)
    out = first.copy()
    out[ky0:ky1, kx0:kx1] = shot[ky0 - cy0 : ky1 - cy0, kx0 - cx0 : kx1 - cx0]
    return out
