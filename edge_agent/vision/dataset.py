"""Labelled label images for training and evaluation, prepared exactly as the gate sees them.

Every frame, photographed or rendered, goes through the runtime's own preprocessing
(:func:`edge_agent.vision.preprocess.locate_label` and :func:`warp_label`), so the model
trains on what the gate will feed it. Frames where no label is found are counted and
left out. Two sources: an image folder with ``genuine/`` and ``counterfeit/`` subfolders
(a photo of a counterfeit in ``counterfeit/<kind>/`` is counted under that kind), or
labels rendered fresh by :func:`simulators.labels.render_dataset` (:class:`SyntheticSpec`).

Each frame is also warped from a few copies of its located corners moved at random
(:data:`JITTER_COPIES`, up to :data:`JITTER_WORK_PIXELS` of the locating grid), which
training picks from. The gate's locate takes the corners of the label's outline on a
frame subsampled to about 160 pixels across, so they are off by about one frame pixel
per coordinate typically and up to seven on a 640-pixel frame; a model trained on
those corners alone may tell two such placements of one label apart. Trained on the
spread, it need not, and locating may stay that cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from edge_agent.vision.layout import LabelKind
from edge_agent.vision.model_card import RenderSeeds
from edge_agent.vision.preprocess import (
    MAX_IMAGE_BYTES,
    check_frame,
    decode_jpeg,
    locate_label,
    warp_label,
    work_step,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "JITTER_COPIES",
    "JITTER_WORK_PIXELS",
    "DatasetError",
    "LabelSet",
    "Progress",
    "SyntheticSpec",
    "load_folder",
    "prepare_frame",
    "render_synthetic",
]

Progress = Callable[[str, float], None]
"""Progress report: what is happening, and the fraction done (0–1) of that stage."""

IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png"})
_COUNTERFEIT: Final = "counterfeit"
_REPORT_EVERY: Final = 200
JITTER_COPIES: Final = 2
"""Jittered warps of each frame beside the one from its located corners."""
JITTER_WORK_PIXELS: Final = 1.5
"""Each corner coordinate moves by up to this many pixels of the locating grid (the
frame subsampled to about 160 pixels across): ±6 frame pixels on a 640-pixel frame,
about the spread of the gate's own located corners about the true ones (per coordinate:
median 1.2, 99th percentile 4.5, worst 7.3 frame pixels on 300 rendered labels)."""


class DatasetError(ValueError):
    """The training data cannot be used (missing folders, no usable images)."""


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """Labels to render for training: ``render_dataset(seed, samples)``, frame A of each."""

    samples: int
    seed: int = 1_000_000
    counterfeit_share: float = 0.5

    @property
    def seeds(self) -> RenderSeeds:
        """The render seeds these labels use."""
        return RenderSeeds(seed=self.seed, count=self.samples)


@dataclass(frozen=True, slots=True)
class LabelSet:
    """Warped label images (N × H × W × 3 BGR uint8), whether each is genuine, its kind."""

    images: NDArray[np.uint8]
    genuine: NDArray[np.bool_]
    kinds: tuple[str, ...]
    frames: int
    skipped_no_label: int
    unreadable_files: int
    description: str
    seeds: RenderSeeds | None = None
    jittered: NDArray[np.uint8] | None = None
    """Per image, :data:`JITTER_COPIES` warps from moved corners (N × copies × H × W × 3)."""

    def __len__(self) -> int:
        return len(self.kinds)


def prepare_frame(frame: NDArray[np.uint8], height: int, width: int) -> NDArray[np.uint8] | None:
    """The label in ``frame`` warped upright to ``width`` × ``height``, or None if not found."""
    corners = locate_label(frame)
    if corners is None:
        return None
    return warp_label(frame, corners, width, height)


def prepare_jittered(
    frame: NDArray[np.uint8],
    height: int,
    width: int,
    rng: np.random.Generator,
    copies: int = JITTER_COPIES,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]] | None:
    """The label in ``frame`` warped from its located corners, and ``copies`` warps from
    those corners each moved by up to :data:`JITTER_WORK_PIXELS` of the locating grid
    (uniformly, every coordinate on its own); None if no label is found."""
    corners = locate_label(frame)
    if corners is None:
        return None
    reach = JITTER_WORK_PIXELS * work_step(frame)
    moved = corners + rng.uniform(-reach, reach, (copies, 4, 2)).astype(np.float32)
    located = warp_label(frame, corners, width, height)
    return located, np.stack([warp_label(frame, quad, width, height) for quad in moved])


def _collect(
    items: Iterable[tuple[NDArray[np.uint8] | None, bool, str]],
    total: int,
    height: int,
    width: int,
    stage: str,
    progress: Progress | None,
    *,
    description: str,
    none_found: str,
    seeds: RenderSeeds | None = None,
    jitter_seed: int | None = None,
) -> LabelSet:
    """The labels found in ``items`` (frame or None if unreadable, genuine?, kind), with
    jittered copies if ``jitter_seed`` is given (their corners drawn from it);
    DatasetError ``none_found`` when there is not one."""
    rng = None if jitter_seed is None else np.random.default_rng(jitter_seed)
    images: list[NDArray[np.uint8]] = []
    jittered: list[NDArray[np.uint8]] = []
    genuine: list[bool] = []
    kinds: list[str] = []
    frames = skipped = unreadable = 0
    for frame, is_genuine, kind in items:
        frames += 1
        if frame is None:
            unreadable += 1
        elif (prepared := _prepare(frame, height, width, rng)) is None:
            skipped += 1
        else:
            images.append(prepared[0])
            genuine.append(is_genuine)
            kinds.append(kind)
            if prepared[1] is not None:
                jittered.append(prepared[1])
        if progress is not None and (frames % _REPORT_EVERY == 0 or frames == total):
            progress(stage, frames / max(total, 1))
    if not images:
        raise DatasetError(none_found)
    return LabelSet(
        images=_stack(images, height, width),
        genuine=np.array(genuine, dtype=np.bool_),
        kinds=tuple(kinds),
        frames=frames,
        skipped_no_label=skipped,
        unreadable_files=unreadable,
        description=description,
        seeds=seeds,
        jittered=np.stack(jittered) if jittered else None,
    )


def _prepare(
    frame: NDArray[np.uint8], height: int, width: int, rng: np.random.Generator | None
) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None] | None:
    """The located label, and its jittered copies if ``rng`` is given; None if no label."""
    if rng is not None:
        return prepare_jittered(frame, height, width, rng)
    label = prepare_frame(frame, height, width)
    return None if label is None else (label, None)


def _stack(images: list[NDArray[np.uint8]], height: int, width: int) -> NDArray[np.uint8]:
    if not images:
        return np.zeros((0, height, width, 3), dtype=np.uint8)
    return np.stack(images).astype(np.uint8, copy=False)


def _folder_files(root: Path) -> list[tuple[Path, bool, str]]:
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory")
    files: list[tuple[Path, bool, str]] = []
    for sub, is_genuine in ((LabelKind.GENUINE.value, True), (_COUNTERFEIT, False)):
        folder = root / sub
        if not folder.is_dir():
            raise DatasetError(f"{root} needs a {sub}/ subfolder of images")
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            nested = path.relative_to(folder).parts
            kind = sub if is_genuine or len(nested) == 1 else nested[0]
            files.append((path, is_genuine, kind))
    if not any(g for _, g, _ in files) or all(g for _, g, _ in files):
        raise DatasetError(f"{root} needs images in both genuine/ and counterfeit/")
    return files


def _read_frame(path: Path) -> NDArray[np.uint8] | None:
    """The frame in an image file as the gate would take it (decoded, then validated:
    no decompression bomb, no size the gate refuses), or None."""
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    frame = decode_jpeg(data)
    return None if frame is None or check_frame(frame) is not None else frame


def _read_images(
    files: list[tuple[Path, bool, str]],
) -> Iterator[tuple[NDArray[np.uint8] | None, bool, str]]:
    for path, is_genuine, kind in files:
        yield _read_frame(path), is_genuine, kind


def load_folder(
    root: Path,
    height: int,
    width: int,
    progress: Progress | None = None,
    *,
    jitter_seed: int | None = None,
) -> LabelSet:
    """Every image under ``root/genuine`` and ``root/counterfeit``, located and warped;
    with jittered copies drawn from ``jitter_seed`` if given."""
    files = _folder_files(root)
    return _collect(
        _read_images(files),
        len(files),
        height,
        width,
        "reading images",
        progress,
        description=f"Photographs from {root.name}/ (genuine/ and counterfeit/ subfolders)."
        + _jitter_note(jitter_seed),
        none_found=f"no label found in any image under {root}",
        jitter_seed=jitter_seed,
    )


def render_synthetic(
    spec: SyntheticSpec,
    height: int,
    width: int,
    progress: Progress | None = None,
    *,
    jitter_seed: int | None = None,
) -> LabelSet:
    """``spec.samples`` freshly rendered camera frames, located and warped; with jittered
    copies drawn from ``jitter_seed`` if given."""
    from simulators.labels import RenderConfig, render_dataset

    if spec.samples < 1:
        raise DatasetError("synthetic data needs at least one sample")
    config = RenderConfig(counterfeit_share=spec.counterfeit_share)
    rendered = (
        (s.frames[0], s.kind is LabelKind.GENUINE, s.kind.value)
        for s in render_dataset(spec.seed, spec.samples, config=config, frames=1)
    )
    return _collect(
        rendered,
        spec.samples,
        height,
        width,
        "rendering labels",
        progress,
        description=(
            f"Synthetic labels rendered by simulators.labels: render_dataset(seed={spec.seed}, "
            f"n={spec.samples}), {spec.counterfeit_share:.0%} counterfeit over all counterfeit "
            "kinds, default capture variation, frame A (first lighting angle) of each."
            + _jitter_note(jitter_seed)
        ),
        none_found="no label found in any rendered frame",
        seeds=spec.seeds,
        jitter_seed=jitter_seed,
    )


def _jitter_note(jitter_seed: int | None) -> str:
    """What the data description says about jittered copies."""
    if jitter_seed is None:
        return ""
    return (
        f" Each label warped from its located corners and from {JITTER_COPIES} copies of "
        f"them moved by up to {JITTER_WORK_PIXELS} locating-grid pixels (jitter seed "
        f"{jitter_seed}); training draws one of the three each epoch."
    )
