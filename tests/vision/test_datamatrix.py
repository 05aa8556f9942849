"""Reading the label's GS1 DataMatrix out of the camera frame."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.vision.datamatrix import datamatrix_image, read_item_id
from edge_agent.vision.layout import COUNTERFEIT_KINDS, LabelKind
from edge_agent.vision.preprocess import locate_label
from simulators.labels import RenderConfig, render_sample


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
    assert image.shape == (176, 176)
    border = np.concatenate([image[:6].ravel(), image[-6:].ravel(), image[:, :6].ravel()])
    assert float(border.mean()) > float(image[20:-20, 20:-20].mean())  # light quiet zone


def test_no_code_where_the_label_has_none() -> None:
    frame = np.full((480, 640, 3), 60, np.uint8)
    frame[100:300, 100:440] = 230
    corners = np.array([[99.5, 99.5], [439.5, 99.5], [439.5, 299.5], [99.5, 299.5]], np.float32)
    assert read_item_id(frame, corners) is None
