"""Synthetic labels render the same under every OpenCV version (4.11 legacy env and 5).

The goldens in ``golden/`` were rendered once under the main environment; the legacy
environment (``make pytest-legacy``) must reproduce them, or a model trained on one
environment's renders would misjudge the other's. Regenerate them (after an intended
change to the artwork) with ``.venv/bin/python -m tests.vision.test_label_render_stability``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge_agent.vision.layout import LabelKind
from simulators.labels import RenderConfig, render_label, render_sample

Image = NDArray[np.uint8]

GOLDEN: Final = Path(__file__).parent / "golden"
LABELS: Final = (
    (0, LabelKind.GENUINE, False),  # SOLENNE
    (1, LabelKind.GENUINE, True),  # NORDVIK, lighting angle B
    (4, LabelKind.GENUINE, False),  # KESTREL
    (11, LabelKind.GENUINE, False),  # AURELIA
    (2, LabelKind.WRONG_FONT, False),
    (3, LabelKind.WRONG_FONT, False),
    (1, LabelKind.MICROTEXT_BLURRED, False),
    (5, LabelKind.PHOTOCOPY, False),
)
FRAME_SEED: Final = 3
FRAME_CONFIG: Final = RenderConfig(frame_width=256, frame_height=192)


def _label_name(seed: int, kind: LabelKind, angle_b: bool) -> str:
    return f"label_{seed}_{kind.value}{'_b' if angle_b else ''}.png"


def _frames() -> tuple[Image, ...]:
    return render_sample(FRAME_SEED, LabelKind.GENUINE, config=FRAME_CONFIG).frames


def _golden(name: str) -> Image:
    image = cv2.imread(str(GOLDEN / name), cv2.IMREAD_COLOR)
    assert image is not None, f"missing golden {name}: regenerate (see module docstring)"
    return np.asarray(image, np.uint8)


def _abs_diff(first: Image, second: Image) -> NDArray[np.int16]:
    assert first.shape == second.shape
    return np.abs(first.astype(np.int16) - second.astype(np.int16))


@pytest.mark.parametrize(("seed", "kind", "angle_b"), LABELS)
def test_canonical_label_artwork_matches_the_golden_render(
    seed: int, kind: LabelKind, angle_b: bool
) -> None:
    diff = _abs_diff(
        render_label(seed, kind, angle_b=angle_b), _golden(_label_name(seed, kind, angle_b))
    )
    # Text drawn by cv2.putText differed by 24-62 grey levels over the text regions.
    assert diff.max() <= 2
    assert diff.mean() < 0.01


@pytest.mark.parametrize("index", [0, 1])
def test_captured_frames_match_the_golden_render(index: int) -> None:
    """Warp, blur, light, noise and JPEG included; frame B re-renders only the patch."""
    diff = _abs_diff(_frames()[index], _golden(f"frame_{FRAME_SEED}_genuine_{index}.png"))
    # cv2.warpPerspective's bilinear interpolation (4.11 vs 5) differed by 0.2-0.4 mean.
    assert diff.mean() < 0.1
    assert np.mean(diff > 8) < 0.001


def _regenerate() -> None:
    GOLDEN.mkdir(exist_ok=True)
    smallest = [cv2.IMWRITE_PNG_COMPRESSION, 9]
    for seed, kind, angle_b in LABELS:
        label = render_label(seed, kind, angle_b=angle_b)
        cv2.imwrite(str(GOLDEN / _label_name(seed, kind, angle_b)), label, smallest)
    for index, frame in enumerate(_frames()):
        name = f"frame_{FRAME_SEED}_genuine_{index}.png"
        cv2.imwrite(str(GOLDEN / name), frame, smallest)


if __name__ == "__main__":
    _regenerate()
