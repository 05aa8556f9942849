"""The film patch's hue and its shift between two lighting angles."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge_agent.vision.colour_shift import hue_shift, patch_hue
from edge_agent.vision.layout import LabelKind
from edge_agent.vision.preprocess import locate_label, warp_label
from simulators.labels import render_sample


def _label_with_patch_hue(
    hue_deg: float | None, size: tuple[int, int] = (160, 96)
) -> NDArray[np.uint8]:
    """A plain light label whose patch is one saturated hue (None: grey)."""
    width, height = size
    label = np.full((height, width, 3), 235, np.uint8)
    x0, y0 = round(12 * width / 320), round(100 * height / 192)
    x1, y1 = round(108 * width / 320), round(180 * height / 192)
    if hue_deg is None:
        label[y0:y1, x0:x1] = 150
    else:
        hsv = np.array([[[round(hue_deg / 2) % 180, 220, 200]]], np.uint8)
        label[y0:y1, x0:x1] = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return label


def _warped_pair(seed: int, kind: LabelKind) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    sample = render_sample(seed, kind, frames=2)
    labels = []
    for frame in sample.frames:
        corners = locate_label(frame)
        assert corners is not None
        labels.append(warp_label(frame, corners, 160, 96))
    return labels[0], labels[1]


@pytest.mark.parametrize("hue", [10.0, 120.0, 300.0])
def test_patch_hue_is_the_patch_colour(hue: float) -> None:
    measured = patch_hue(_label_with_patch_hue(hue))
    assert measured is not None
    assert abs((measured - hue + 180) % 360 - 180) < 4


def test_hue_shift_wraps_around_red() -> None:
    shift = hue_shift(_label_with_patch_hue(350.0), _label_with_patch_hue(20.0))
    assert shift == pytest.approx(30.0, abs=4)


def test_identical_frames_have_no_hue_shift() -> None:
    first, _ = _warped_pair(1, LabelKind.GENUINE)
    assert hue_shift(first, first.copy()) == pytest.approx(0.0, abs=1e-6)


def test_a_grey_patch_has_no_hue() -> None:
    assert patch_hue(_label_with_patch_hue(None)) is None
    assert hue_shift(_label_with_patch_hue(None), _label_with_patch_hue(90.0)) is None


@pytest.mark.parametrize("seed", range(4))
def test_genuine_film_shifts_and_a_flat_print_does_not(seed: int) -> None:
    genuine = hue_shift(*_warped_pair(seed, LabelKind.GENUINE))
    flat = hue_shift(*_warped_pair(seed, LabelKind.PATCH_FLAT))
    assert genuine is not None
    assert genuine > 45
    assert flat is not None
    assert flat < 5


def test_a_missing_patch_has_no_hue_to_shift() -> None:
    assert hue_shift(*_warped_pair(2, LabelKind.PATCH_MISSING)) is None
