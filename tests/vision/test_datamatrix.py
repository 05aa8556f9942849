"""Reading the label's GS1 DataMatrix out of the camera frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import zxingcpp

from edge_agent.vision.datamatrix import _frame_region, datamatrix_image, read_item_id
from edge_agent.vision.layout import COUNTERFEIT_KINDS, LABEL_H, LABEL_W, LabelKind
from edge_agent.vision.preprocess import locate_label
from simulators.labels import RenderConfig, render_sample

LABEL = np.array(
    [[-0.5, -0.5], [LABEL_W - 0.5, -0.5], [LABEL_W - 0.5, LABEL_H - 0.5], [-0.5, LABEL_H - 0.5]],
    dtype=np.float32,
)


@pytest.mark.parametrize("kind", [LabelKind.GENUINE, *COUNTERFEIT_KINDS])
def test_item_id_is_read_from_a_rendered_frame(kind: LabelKind) -> None:
    for seed in range(3):
        sample = render_sample(seed, kind, frames=1)
        corners = locate_label(sample.frames[0])
        assert corners is not None
        assert read_item_id(sample.frames[0], corners) == sample.item_id


def test_a_chosen_item_id_comes_back_in_bracketed_form() -> None:
    sample = render_sample(7, LabelKind.GENUINE, item_id="(01)09501101530003(21)ABC123", frames=1)
    corners = locate_label(sample.frames[0])
    assert corners is not None
    assert read_item_id(sample.frames[0], corners) == "(01)09501101530003(21)ABC123"


def test_rotated_and_tilted_labels_still_read() -> None:
    config = RenderConfig(rotation_deg=30.0, perspective=0.06)
    read = 0
    for seed in range(10):
        sample = render_sample(50 + seed, LabelKind.GENUINE, frames=1, config=config)
        corners = locate_label(sample.frames[0])
        assert corners is not None
        read += read_item_id(sample.frames[0], corners) == sample.item_id
    assert read >= 9


def test_the_region_is_warped_upright_with_a_quiet_zone() -> None:
    sample = render_sample(3, LabelKind.GENUINE, frames=1)
    corners = locate_label(sample.frames[0])
    assert corners is not None
    image = datamatrix_image(sample.frames[0], corners)
    assert image.ndim == 2
    assert image.shape == (110, 110)  # 1.25 pixels per canonical label pixel
    border = np.concatenate([image[:6].ravel(), image[-6:].ravel(), image[:, :6].ravel()])
    assert float(border.mean()) > float(image[20:-20, 20:-20].mean())  # light quiet zone


def test_no_code_where_the_label_has_none() -> None:
    frame = np.full((480, 640, 3), 60, np.uint8)
    frame[100:300, 100:440] = 230
    corners = np.array([[99.5, 99.5], [439.5, 99.5], [439.5, 299.5], [99.5, 299.5]], np.float32)
    assert read_item_id(frame, corners) is None


def test_corners_off_the_frame_or_not_finite_read_nothing_and_do_not_raise() -> None:
    sample = render_sample(4, LabelKind.GENUINE, frames=1)
    far = np.array([[5000, 5000], [6000, 5000], [6000, 5600], [5000, 5600]], np.float32)
    nan = np.full((4, 2), np.nan, np.float32)
    for corners in (far, nan, np.zeros((4, 2), np.float32)):
        assert read_item_id(sample.frames[0], corners) is None
        assert datamatrix_image(sample.frames[0], corners).shape == (110, 110)


def test_a_code_the_quick_global_threshold_misses_is_read_from_the_warped_region() -> None:
    """A shadow edge down the middle of the symbol defeats one global threshold; the
    fallback (the region warped upright, thresholded locally) still reads it. (Not every
    such shadow can be read: with the located corners, coarse by a few pixels, seed 7's
    reads neither way, and seed 8's not even from the true corners; seed 9's does.)"""
    sample = render_sample(9, LabelKind.GENUINE, frames=1)
    corners = locate_label(sample.frames[0])
    assert corners is not None
    canonical = np.array([[[270.0, 142.0]]], np.float32)  # the symbol's centre
    middle = cv2.perspectiveTransform(canonical, cv2.getPerspectiveTransform(LABEL, corners))
    shaded = sample.frames[0].copy()
    shaded[:, int(middle[0, 0, 0]) :] //= 2
    region = _frame_region(shaded, corners)
    assert region is not None
    assert zxingcpp.read_barcodes(region[0], binarizer=zxingcpp.Binarizer.GlobalHistogram) == []
    assert read_item_id(shaded, corners) == sample.item_id
