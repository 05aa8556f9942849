"""The camera simulator's rendered-label source: frames of items passing a gate."""

from __future__ import annotations

import numpy as np
import pytest
import zxingcpp

from edge_agent.vision.layout import LabelKind
from simulators.camera import SyntheticCamera, label_frames
from simulators.labels import RenderConfig, normalise_item_id, render_sample, sample_seed
from simulators.scanner import generate_items

DATAMATRIX = zxingcpp.barcode_formats_from_str("DataMatrix")


def test_label_frames_show_each_item_under_both_lights_in_turn() -> None:
    items = generate_items(3, seed=1)
    config = RenderConfig(frame_width=480, frame_height=360)
    camera = SyntheticCamera(label_frames(items, seed=4, config=config))
    frames = list(camera.frames(7))
    assert all(f.shape == (360, 480, 3) and f.dtype == np.uint8 for f in frames)
    decoded = [[r.text for r in zxingcpp.read_barcodes(f, formats=DATAMATRIX)] for f in frames]
    expected = [normalise_item_id(items[i]) for i in (0, 0, 1, 1, 2, 2, 0)]  # the belt loops
    assert decoded == [[e] for e in expected]
    assert not np.array_equal(frames[0], frames[1])  # angle A, then angle B
    assert np.array_equal(frames[6], frames[0])


def test_label_frames_render_the_requested_kinds_reproducibly() -> None:
    items = generate_items(2, seed=2)
    kinds = [LabelKind.GENUINE, LabelKind.PATCH_MISSING]
    render = label_frames(items, seed=9, kinds=kinds, frames_per_item=1)
    again = render_sample(sample_seed(9, 1), LabelKind.PATCH_MISSING, item_id=items[1], frames=1)
    assert np.array_equal(render(1), again.frames[0])


def test_label_frames_reject_bad_arguments_up_front() -> None:
    with pytest.raises(ValueError, match="at least one item"):
        label_frames([])
    with pytest.raises(ValueError, match="1 kinds for 2 items"):
        label_frames(generate_items(2), kinds=[LabelKind.GENUINE])
    with pytest.raises(ValueError, match="frames_per_item"):
        label_frames(generate_items(1), frames_per_item=3)
    with pytest.raises(ValueError, match="not a GS1 element string"):
        label_frames(["not an item"])
