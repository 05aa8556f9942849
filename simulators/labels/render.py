"""Rendered label samples: :func:`render_sample` and :func:`render_dataset`.

Everything is drawn from ``numpy.random.Generator(PCG64)`` streams derived from the seed
(never a global RNG): one for the artwork (brand, item, details, film batch), one for the
defect, one for the capture, one for the sensor noise (shared by both frames). So the
same seed and arguments give byte-identical frames, a genuine label and a counterfeit of
the same seed share brand, item and pose, and frame A of a two-frame sample is the
one-frame sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
from biip import ParseError
from biip.gs1_messages import GS1Message
from numpy.typing import NDArray

from edge_agent.vision.layout import LABEL_W, REGIONS, LabelKind
from simulators.labels.artwork import PAPER, SCALE, compose_label, region_slice
from simulators.labels.brands import BRANDS, random_item_id
from simulators.labels.capture import capture_frames, label_width_px, sample_capture
from simulators.labels.config import RenderConfig
from simulators.labels.counterfeit import Defect, make_defect, photocopy
from simulators.labels.security import film_patch, flat_patch, missing_patch

__all__ = [
    "LabelSample",
    "normalise_item_id",
    "render_dataset",
    "render_label",
    "render_sample",
    "sample_seed",
]

Image = NDArray[np.uint8]

_ARTWORK, _DEFECT, _CAPTURE, _NOISE, _KIND = range(5)
_FILM_JITTER: Final = 8.0
_SHIFT_JITTER: Final = 10.0
_DEFAULT_CONFIG: Final = RenderConfig()
_PATCH = REGIONS["patch"]
_PATCH_OUTLINE: Final = np.array(
    [
        [_PATCH.x, _PATCH.y],
        [_PATCH.x + _PATCH.w, _PATCH.y],
        [_PATCH.x + _PATCH.w, _PATCH.y + _PATCH.h],
        [_PATCH.x, _PATCH.y + _PATCH.h],
    ],
    np.float32,
)


def _downsample(art: Image, keep: bool) -> Image:
    """``SCALE`` × artwork as is (``keep``), or at canonical scale by exact area averaging
    (crisp, and a quarter of the pixels to warp)."""
    if keep:
        return art
    size = (art.shape[1] // SCALE, art.shape[0] // SCALE)
    return np.asarray(cv2.resize(art, size, interpolation=cv2.INTER_AREA))


@dataclass(frozen=True, slots=True, eq=False)
class LabelSample:
    """One rendered label as the gate camera sees it."""

    item_id: str
    """GS1 item ID in the DataMatrix, bracketed form ``(01)…(21)…`` (what zxing-cpp reads)."""
    kind: LabelKind
    severity: float
    """Strength of the counterfeit's defect, 0–1 (0 for a genuine label)."""
    frames: tuple[Image, ...]
    """1 or 2 BGR uint8 frames of the same pose: lighting angle A, then B."""
    corners: NDArray[np.float32]
    """4 × 2 true label corners in the frames: TL, TR, BR, BL of the upright label."""


def _stream(seed: int, part: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, part])))


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of :func:`render_dataset` ``(seed, …)``."""
    if seed < 0 or index < 0:
        raise ValueError("seed and index must not be negative")
    return int(np.random.SeedSequence([seed, index, 0x1ABE1]).generate_state(1, np.uint64)[0])


def normalise_item_id(item_id: str) -> str:
    """``item_id`` (bracketed ``(01)…`` form or a raw element string with GS separators)
    in the bracketed form; ValueError if it is not a GS1 item with a GTIN."""
    try:
        if item_id.startswith("("):
            message = GS1Message.parse_hri(item_id)
        else:
            message = GS1Message.parse(item_id)
    except (ParseError, ValueError, IndexError, KeyError, TypeError) as exc:
        raise ValueError(f"item_id {item_id[:60]!r} is not a GS1 element string: {exc}") from exc
    if message.element_strings.get(ai="01") is None:
        raise ValueError(f"item_id {item_id[:60]!r} has no GTIN (01)")
    return str(message.as_hri())


def _details(rng: np.random.Generator) -> tuple[str, ...]:
    lot = f"L{int(rng.integers(0, 10000)):04d}{'ABCDEFGHJK'[int(rng.integers(0, 10))]}"
    year, month = int(rng.integers(2026, 2031)), int(rng.integers(1, 13))
    made = ("Made in EU", "Made in CH", "Made in UK", "Made in NO")[int(rng.integers(0, 4))]
    return (f"LOT {lot}", f"EXP {month:02d}/{year}", made, f"REF {int(rng.integers(0, 10**6)):06d}")


def _patches(
    defect: Defect, severity: float, film_hue: float, film_shift: float, frames: int
) -> list[Image]:
    rows, cols = region_slice("patch")
    height, width = rows.stop - rows.start, cols.stop - cols.start
    if defect.patch == "missing":
        return [missing_patch(width, height, PAPER, severity)] * frames
    if defect.photocopy:  # a copy freezes the film as it looked under the copier's light
        return [film_patch(width, height, SCALE, film_hue, angle_b=False)] * frames
    if defect.patch == "flat":
        return [flat_patch(width, height, SCALE, defect.flat_hue, severity)] * frames
    return [
        film_patch(width, height, SCALE, film_hue + film_shift * index, angle_b=index == 1)
        for index in range(frames)
    ]


def _check(seed: int, frames: int) -> None:
    if frames not in (1, 2):
        raise ValueError(f"frames must be 1 or 2, got {frames}")
    if seed < 0:
        raise ValueError("seed must not be negative")


def _artwork(
    seed: int,
    kind: LabelKind,
    item_id: str | None,
    frames: int,
    config: RenderConfig,
    fine: bool = False,
) -> tuple[str, float, list[Image]]:
    """Item ID, severity and the label for each lighting angle: at canonical size, or at
    ``SCALE`` × when ``fine`` (for labels that appear larger than 1.5 × canonical)."""
    art = _stream(seed, _ARTWORK)
    brand = BRANDS[int(art.integers(0, len(BRANDS)))]
    generated = random_item_id(brand, art)
    hri = normalise_item_id(item_id) if item_id is not None else generated
    details = _details(art)
    film_hue = brand.film_hue + art.uniform(-_FILM_JITTER, _FILM_JITTER)
    film_shift = brand.film_shift + art.uniform(-_SHIFT_JITTER, _SHIFT_JITTER)

    defect_rng = _stream(seed, _DEFECT)
    severity = 0.0
    if kind is not LabelKind.GENUINE:
        severity = float(defect_rng.uniform(config.severity[0], config.severity[1]))
    defect = make_defect(kind, brand, severity, defect_rng)
    patches = _patches(defect, severity, film_hue, film_shift, frames)
    first = compose_label(brand, defect.style, details, hri, patches[0])
    labels = [_downsample(first, fine)]
    if defect.photocopy:
        copy = photocopy(_downsample(first, False), defect.photocopy, defect_rng)
        if fine:  # a copy is soft anyway: drawn at canonical size, then enlarged
            copy = np.asarray(cv2.resize(copy, first.shape[1::-1], interpolation=cv2.INTER_LINEAR))
        labels = [copy] * frames
    elif frames == 2:
        if patches[1] is patches[0]:
            labels.append(labels[0])
        else:  # only the patch differs (the region lies on the 2-pixel grid of SCALE)
            second = labels[0].copy()
            rows, cols = region_slice("patch", SCALE if fine else 1)
            second[rows, cols] = _downsample(patches[1], fine)
            labels.append(second)
    return hri, severity, labels


def render_label(
    seed: int,
    kind: LabelKind,
    *,
    item_id: str | None = None,
    angle_b: bool = False,
    config: RenderConfig | None = None,
) -> Image:
    """The label artwork of ``render_sample(seed, kind, …)`` before capture: a
    ``LABEL_W`` × ``LABEL_H`` BGR image in canonical coordinates (lighting angle A or B)."""
    _check(seed, 2)
    frames = 2 if angle_b else 1
    labels = _artwork(seed, LabelKind(kind), item_id, frames, config or _DEFAULT_CONFIG)[2]
    return labels[-1]


def render_sample(
    seed: int,
    kind: LabelKind,
    *,
    item_id: str | None = None,
    frames: int = 2,
    config: RenderConfig | None = None,
) -> LabelSample:
    """Render one label of ``kind`` photographed ``frames`` times (angle A, then B).

    ``item_id`` is encoded in the DataMatrix (a fresh serial of the sample's brand if
    None); it may be bracketed ``(01)…`` or a raw element string, and comes back bracketed.
    """
    _check(seed, frames)
    kind = LabelKind(kind)
    config = config or _DEFAULT_CONFIG
    capture = sample_capture(config, _stream(seed, _CAPTURE))
    fine = label_width_px(capture) > 1.5 * LABEL_W
    hri, severity, labels = _artwork(seed, kind, item_id, frames, config, fine)
    shots = capture_frames(labels, capture, _stream(seed, _NOISE), changed=_PATCH_OUTLINE)
    corners = capture.corners.copy()
    corners.setflags(write=False)
    return LabelSample(hri, kind, severity, shots, corners)


def _pick_kind(config: RenderConfig, rng: np.random.Generator) -> LabelKind:
    if rng.random() >= config.counterfeit_share:
        return LabelKind.GENUINE
    kinds = list(config.kinds)
    weights = np.array([config.kinds[k] for k in kinds], np.float64)
    return kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]


def render_dataset(
    seed: int, n: int, *, config: RenderConfig | None = None, frames: int = 2
) -> Iterator[LabelSample]:
    """``n`` samples; sample ``i`` is ``render_sample(sample_seed(seed, i), its kind, …)``.

    The kind is drawn from ``config.counterfeit_share`` and ``config.kinds`` with a
    stream of the sample's own seed, so any sample can be re-rendered alone.
    """
    if n < 0:
        raise ValueError("n must not be negative")
    config = config or _DEFAULT_CONFIG
    for index in range(n):
        own = sample_seed(seed, index)
        kind = _pick_kind(config, _stream(own, _KIND))
        yield render_sample(own, kind, frames=frames, config=config)
