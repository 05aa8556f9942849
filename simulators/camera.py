"""Synthetic camera frames, and helpers that store them as image folders or video files.

A frame source is any callable ``(seq) -> BGR uint8 image``; the vision work plugs in
realistic rendered labels, tests plug in whatever they need. The default,
:func:`placeholder_label`, draws a label moving along a belt with the frame number in
text and as a machine-readable code (:func:`read_seq_code`), so a test can tell which
frame it got after JPEG compression. :class:`simulators.mjpeg_server.MjpegServer` serves
any such source as a network camera.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.vision.layout import LabelKind
from hardware.camera.config import SourceKind
from hardware.camera.sources import FrameSource, ReadResult, ReadStatus
from simulators.labels import (
    LabelSample,
    RenderConfig,
    normalise_item_id,
    render_dataset,
    render_sample,
)
from simulators.labels.render import sample_seed

__all__ = [
    "SEQ_CODE_BITS",
    "FrameRenderer",
    "SyntheticCamera",
    "SyntheticFrameSource",
    "dataset_frames",
    "draw_seq_code",
    "label_frames",
    "placeholder_label",
    "read_seq_code",
    "write_image_folder",
    "write_video_file",
]

FrameRenderer = Callable[[int], NDArray[np.uint8]]
"""Makes frame ``seq`` (from 0): a BGR uint8 image of height × width × 3."""

SEQ_CODE_BITS: Final = 16
_BELT_BGR: Final = (70, 70, 70)
_LABEL_COLOURS: Final = ((40, 40, 200), (200, 120, 30), (40, 160, 40), (30, 160, 220))


def _code_cell(width: int) -> int:
    return max(8, width // (SEQ_CODE_BITS + 4))


def draw_seq_code(image: NDArray[np.uint8], seq: int) -> None:
    """Draw ``seq`` (mod 2**16) as a row of black and white squares along the top edge."""
    cell = _code_cell(image.shape[1])
    if cell * SEQ_CODE_BITS > image.shape[1] or cell > image.shape[0]:
        raise ValueError("image too small for a sequence code")
    for bit in range(SEQ_CODE_BITS):
        value = 255 if (seq >> (SEQ_CODE_BITS - 1 - bit)) & 1 else 0
        image[:cell, bit * cell : (bit + 1) * cell] = value


def read_seq_code(image: NDArray[np.uint8]) -> int:
    """The number :func:`draw_seq_code` drew (survives JPEG compression and resizing)."""
    cell = _code_cell(image.shape[1])
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    seq = 0
    for bit in range(SEQ_CODE_BITS):
        x, y = bit * cell + cell // 2, cell // 2
        patch = gray[y - 1 : y + 2, x - 1 : x + 2]
        seq = (seq << 1) | int(float(patch.mean()) > 127)
    return seq


def placeholder_label(width: int = 640, height: int = 480) -> FrameRenderer:
    """A stand-in label: a coloured rectangle with its frame number, moving along a belt."""
    if width < 160 or height < 120:
        raise ValueError("placeholder frames need at least 160 × 120 pixels")
    label_w, label_h = width // 3, height // 3
    travel = width - label_w

    def render(seq: int) -> NDArray[np.uint8]:
        image = np.full((height, width, 3), _BELT_BGR, dtype=np.uint8)
        x = (seq * 8) % max(1, travel)
        y = (height - label_h) // 2
        colour = _LABEL_COLOURS[(seq // max(1, travel // 8)) % len(_LABEL_COLOURS)]
        cv2.rectangle(image, (x, y), (x + label_w, y + label_h), (235, 235, 235), -1)
        cv2.rectangle(image, (x, y), (x + label_w, y + label_h // 3), colour, -1)
        scale = label_w / 220
        cv2.putText(
            image,
            f"ITEM {seq:05d}",
            (x + label_w // 12, y + label_h * 3 // 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (20, 20, 20),
            max(1, round(scale * 2)),
            cv2.LINE_AA,
        )
        draw_seq_code(image, seq)
        return image

    return render


def label_frames(
    item_ids: Sequence[str],
    seed: int = 0,
    *,
    kinds: Sequence[LabelKind] | None = None,
    frames_per_item: int = 2,
    config: RenderConfig | None = None,
) -> FrameRenderer:
    """Rendered labels of items passing a gate, ``frames_per_item`` frames each.

    Frame ``seq`` shows item ``(seq // frames_per_item) % len(item_ids)`` (the belt loops);
    with two frames per item they are lighting angle A then B. Item ``i`` is
    ``render_sample(sample_seed(seed, i), kinds[i], item_id=item_ids[i], …)`` (all genuine
    without ``kinds``), so a test can re-render what the gate saw.
    """
    if not item_ids:
        raise ValueError("label_frames needs at least one item ID")
    if kinds is not None and len(kinds) != len(item_ids):
        raise ValueError(f"{len(kinds)} kinds for {len(item_ids)} items")
    if frames_per_item not in (1, 2):
        raise ValueError(f"frames_per_item must be 1 or 2, got {frames_per_item}")
    ids = [normalise_item_id(item) for item in item_ids]  # bad IDs fail here, not mid-run
    kind_of = [LabelKind(k) for k in kinds] if kinds is not None else None

    @functools.lru_cache(maxsize=2)
    def sample(index: int) -> LabelSample:
        kind = kind_of[index] if kind_of is not None else LabelKind.GENUINE
        own = sample_seed(seed, index)
        return render_sample(own, kind, item_id=ids[index], frames=frames_per_item, config=config)

    def render(seq: int) -> NDArray[np.uint8]:
        item, shot = divmod(seq, frames_per_item)
        return sample(item % len(ids)).frames[shot]

    return render


class _DatasetStream:
    """Samples of ``render_dataset(seed, …)`` in order, the current one kept."""

    def __init__(self, seed: int, config: RenderConfig | None) -> None:
        self.seed, self.config = seed, config
        self._restart()

    def _restart(self) -> None:
        self._samples = render_dataset(self.seed, 1 << 62, config=self.config)
        self._index = -1
        self._sample: LabelSample | None = None

    def sample(self, index: int) -> LabelSample:
        if index < self._index:
            self._restart()
        while self._index < index or self._sample is None:
            self._sample, self._index = next(self._samples), self._index + 1
        return self._sample


def dataset_frames(seed: int = 0, *, config: RenderConfig | None = None) -> FrameRenderer:
    """An endless stream of rendered labels, genuine and counterfeit in ``config``'s mix:
    frames ``2i`` and ``2i + 1`` are sample ``i`` of ``render_dataset(seed, …)`` under
    lighting angles A and B. Frames are asked for in order (a camera's clock); asking for
    an earlier item again renders the stream from its start."""
    stream = _DatasetStream(seed, config)

    def render(seq: int) -> NDArray[np.uint8]:
        item, shot = divmod(seq, 2)
        return stream.sample(item).frames[shot]

    return render


class SyntheticCamera:
    """Numbered frames from a pluggable renderer (default: :func:`placeholder_label`)."""

    def __init__(
        self, render: FrameRenderer | None = None, *, width: int = 640, height: int = 480
    ) -> None:
        self.render = render or placeholder_label(width, height)

    def frame(self, seq: int) -> NDArray[np.uint8]:
        """Frame number ``seq``, checked to be a BGR uint8 image."""
        image = self.render(seq)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"renderer must return BGR uint8 images, got {image.shape}")
        return image

    def frames(self, count: int, start: int = 0) -> Iterator[NDArray[np.uint8]]:
        """Frames ``start`` … ``start + count - 1``."""
        for seq in range(start, start + count):
            yield self.frame(seq)


class SyntheticFrameSource(FrameSource):
    """Rendered frames handed to :class:`~hardware.camera.driver.OpenCvCamera` in process.

    Pass ``lambda config: SyntheticFrameSource(render, fps=...)`` as the camera's
    ``open_source``: no JPEG, HTTP or decoding, so many simulated gates fit on one core.
    With ``count`` the source is finite like a file (paced by the camera, ends or loops);
    without it, it is live like a camera and paces itself at ``fps``.
    """

    def __init__(self, render: FrameRenderer, *, fps: float = 30.0, count: int | None = None):
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.kind = SourceKind.STREAM if count is None else SourceKind.FILE
        self.description = "synthetic"
        self.native_fps = fps
        self._render = render
        self._count = count
        self._seq = 0
        self._due: float | None = None

    def read(self) -> ReadResult:
        if self._count is not None and self._seq >= self._count:
            return ReadResult(ReadStatus.END)
        if self._count is None:
            now = time.monotonic()
            self._due = now if self._due is None or self._due < now else self._due
            time.sleep(self._due - now)
            self._due += 1.0 / float(self.native_fps or 1.0)
        image = self._render(self._seq)
        self._seq += 1
        return ReadResult(ReadStatus.FRAME, image, f"synthetic#{self._seq - 1}")

    def close(self) -> None:
        self._seq = 0


def write_image_folder(
    folder: str | Path,
    images: Iterable[NDArray[np.uint8]],
    *,
    suffix: str = ".png",
    prefix: str = "frame_",
) -> list[Path]:
    """Write ``images`` as ``prefix00000.suffix``, … in ``folder`` (created); their paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        path = out / f"{prefix}{index:05d}{suffix}"
        ok, data = cv2.imencode(suffix, image)
        if not ok:
            raise ValueError(f"OpenCV cannot encode {suffix} images")
        path.write_bytes(data.tobytes())
        paths.append(path)
    return paths


def write_video_file(
    path: str | Path,
    images: Iterable[NDArray[np.uint8]],
    fps: float,
    *,
    fourcc: str = "MJPG",
) -> int:
    """Write ``images`` (all of one size) to a video file (MJPG in .avi by default).

    Returns the number of frames written. MJPG in AVI is written and read by OpenCV's
    own code on every platform, with no codec to install.
    """
    writer: cv2.VideoWriter | None = None
    count = 0
    try:
        for image in images:
            if writer is None:
                size = (int(image.shape[1]), int(image.shape[0]))
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, size)
                if not writer.isOpened():
                    raise ValueError(f"OpenCV cannot write {fourcc} to {path}")
            writer.write(image)
            count += 1
    finally:
        if writer is not None:
            writer.release()
    return count
