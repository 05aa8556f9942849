"""Finding the label in a frame and warping it upright: accuracy, orientation, refusals."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge_agent.vision import preprocess
from edge_agent.vision.dataset import JITTER_WORK_PIXELS
from edge_agent.vision.layout import COUNTERFEIT_KINDS, LABEL_H, LABEL_W, LabelKind
from edge_agent.vision.preprocess import (
    LocateFailure,
    check_frame,
    decode_jpeg,
    image_size,
    locate,
    locate_label,
    locate_quad,
    warp_label,
)
from simulators.labels import RenderConfig, render_sample


@pytest.fixture(autouse=True, params=["compiled", "opencv"])
def pixel_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on the compiled locate and warp and on OpenCV's alone."""
    if request.param == "opencv":
        monkeypatch.setattr(preprocess, "_native", None)
    elif preprocess._native is None:
        pytest.fail("edge_agent.vision._labelcore is not built: `pip install -e .` builds it")
    return str(request.param)


CANONICAL = np.array(
    [[-0.5, -0.5], [LABEL_W - 0.5, -0.5], [LABEL_W - 0.5, LABEL_H - 0.5], [-0.5, LABEL_H - 0.5]],
    dtype=np.float32,
)


def _belt(seed: int, size: tuple[int, int] = (480, 640)) -> NDArray[np.uint8]:
    """A dark, textured belt."""
    rng = np.random.default_rng(seed)
    belt = rng.integers(30, 90, (*size, 3), dtype=np.uint8)
    return np.asarray(cv2.GaussianBlur(belt, (7, 7), 0), dtype=np.uint8)


def _label_art(seed: int) -> NDArray[np.uint8]:
    """A light label with dark and coloured content, in canonical coordinates."""
    rng = np.random.default_rng(seed)
    art = np.full((LABEL_H, LABEL_W, 3), 235, np.uint8)
    cv2.rectangle(art, (12, 12), (107, 83), (40, 40, 200), -1)
    cv2.rectangle(art, (12, 100), (107, 179), (200, 120, 30), -1)
    cv2.putText(art, "BRAND", (122, 45), cv2.FONT_HERSHEY_SIMPLEX, 1, (20, 20, 20), 2)
    modules = (rng.integers(0, 2, (16, 16)) * 200 + 20).astype(np.uint8)
    art[104:180, 232:308] = cv2.resize(modules, (76, 76), interpolation=cv2.INTER_NEAREST)[
        ..., None
    ]
    return art


def _place(
    frame: NDArray[np.uint8], art: NDArray[np.uint8], corners: NDArray[np.float32]
) -> NDArray[np.uint8]:
    """``art`` drawn into ``frame`` with its outer corners at ``corners`` (anti-aliased)."""
    s = 4
    height, width = frame.shape[:2]
    matrix = cv2.getPerspectiveTransform(CANONICAL, (corners + 0.5) * s - 0.5)
    big = cv2.warpPerspective(art, matrix, (width * s, height * s), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(
        np.full(art.shape[:2], 255, np.uint8), matrix, (width * s, height * s)
    )
    label = cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    alpha = cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA)[..., None] / 255.0
    return np.asarray(frame * (1 - alpha) + label * alpha, dtype=np.uint8)


def _pose(angle_deg: float, scale: float, centre: tuple[float, float]) -> NDArray[np.float32]:
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [
        LABEL_W * scale / 2,
        LABEL_H * scale / 2,
    ]
    return np.asarray(half @ rotation.T + centre, dtype=np.float32)


def _worst_located_error(frame: NDArray[np.uint8]) -> float:
    """The most a rendered label's located corners may be off: the outline's corners are
    whole pixels of the work image (4 frame pixels here), so up to two of them."""
    return 2.0 * preprocess.work_step(frame)


@pytest.mark.parametrize("kind", [LabelKind.GENUINE, *COUNTERFEIT_KINDS])
def test_rendered_labels_are_located_to_within_two_work_pixels(kind: LabelKind) -> None:
    for seed in range(6):
        sample = render_sample(seed, kind, frames=1)
        corners = locate_label(sample.frames[0])
        assert corners is not None, f"seed {seed}"
        assert corners.shape == (4, 2)
        assert corners.dtype == np.float32
        error = np.abs(corners - sample.corners).max()
        assert error < _worst_located_error(sample.frames[0]), f"seed {seed}"


def test_rendered_labels_are_located_to_about_a_pixel() -> None:
    """The corners are the work image's outline corners moved half a work pixel out to
    the edge: about a frame pixel off per coordinate (median; 1.2 on 300 labels, without
    the step out 2.6), and the label model is trained on warps from corners jittered by
    more than that (``JITTER_WORK_PIXELS``), so it does not tell such placements apart."""
    errors = []
    for seed in range(12):
        sample = render_sample(seed, LabelKind.GENUINE, frames=1)
        corners = locate_label(sample.frames[0])
        assert corners is not None, f"seed {seed}"
        errors += np.abs(corners - sample.corners).ravel().tolist()
    assert float(np.median(errors)) < 2.0
    assert max(errors) < JITTER_WORK_PIXELS * preprocess.work_step(sample.frames[0]) + 2.0


def test_locate_looks_only_at_the_work_images_pixels() -> None:
    """Locating reads only every work-step-th pixel of every work-step-th row (the
    frame's pixels between them may be anything): a handful of calls on a small image,
    no look at the full frame."""
    sample = render_sample(2, LabelKind.GENUINE, frames=1)
    frame = sample.frames[0]
    step = preprocess.work_step(frame)
    scrambled = np.random.default_rng(0).integers(0, 256, frame.shape, dtype=np.uint8)
    scrambled[::step, ::step] = frame[::step, ::step]
    assert locate_quad(scrambled) == locate_quad(frame)
    assert locate_quad(frame)[0] is not None


def test_a_bite_out_of_a_side_is_bridged_by_the_outlines_hull() -> None:
    truth = _pose(15.0, 1.0, (320, 240))
    frame = _place(_belt(8), _label_art(8), truth)
    x, y = ((truth[0] + truth[1]) / 2).round().astype(int)
    cv2.circle(frame, (int(x), int(y)), 40, (15, 15, 15), -1)  # a quarter of the top bitten off
    corners = locate_label(frame)
    assert corners is not None
    assert np.abs(corners - truth).max() < 2.0


def test_locate_quad_gives_the_corners_of_locate_as_plain_floats() -> None:
    frame = render_sample(4, LabelKind.GENUINE, frames=1).frames[0]
    quad, failure = locate_quad(frame)
    corners, _ = locate(frame)
    assert failure is None
    assert corners is not None
    assert quad == corners.ravel().tolist()
    assert all(type(value) is float for value in quad)
    assert locate_quad(np.zeros((480, 640, 3), np.uint8)) == (None, LocateFailure.BLANK_FRAME)


def test_hardest_rendered_poses_rotation_perspective_occlusion_are_located() -> None:
    """At the renderer's extremes (30°, perspective 0.1, an occluder on every label, each
    over a side's middle) every label is found, its corners as close as on ordinary
    poses: the outline's hull bridges an occluder's dent, and its four-sided polygon
    follows perspective (median 2.7 px, worst 5.1 on these 40)."""
    config = RenderConfig(rotation_deg=30.0, perspective=0.1, occlusion_probability=1.0)
    errors = []
    for seed in range(200, 240):
        sample = render_sample(seed, LabelKind.GENUINE, frames=1, config=config)
        corners = locate_label(sample.frames[0])
        assert corners is not None, f"seed {seed}"
        errors.append(float(np.abs(corners - sample.corners).max()))
    assert float(np.median(errors)) < 4.0
    assert max(errors) < _worst_located_error(sample.frames[0])


@pytest.mark.parametrize("angle", [-75.0, 80.0, 89.0])
def test_corners_are_ordered_with_the_long_side_on_top(angle: float) -> None:
    truth = _pose(angle, 1.0, (320, 240))
    frame = _place(_belt(1), _label_art(1), truth)
    corners = locate_label(frame)
    assert corners is not None
    top, right = corners[1] - corners[0], corners[2] - corners[1]
    assert np.hypot(*top) > np.hypot(*right)  # long side first, as in the canonical label
    assert corners[0, 1] + corners[1, 1] < corners[2, 1] + corners[3, 1]  # top above bottom


def test_a_corner_hidden_by_a_dark_object_gives_a_label_with_that_corner_cut() -> None:
    """The outline's polygon cuts a hidden corner off, along the object's edge: the other
    three are where they were, the hidden one as far off as the object reaches (the
    label is warped askew and held by the model, see test_checker). Finding such a
    corner would take a look at the frame beyond the work image, which a clear label
    does not need."""
    truth = _pose(12.0, 1.0, (320, 240))
    frame = _place(_belt(2), _label_art(2), truth)
    tip = truth[1].round().astype(int)
    cv2.circle(frame, (int(tip[0]), int(tip[1])), 22, (15, 15, 15), -1)
    corners = locate_label(frame)
    assert corners is not None
    off = np.abs(corners - truth).max(axis=1)
    assert (np.delete(off, 1) < 3.0).all()
    assert 3.0 <= off[1] < 22 + 3.0


def test_warp_returns_the_label_upright_at_the_requested_size() -> None:
    art = _label_art(3)
    truth = _pose(-20.0, 1.2, (330, 250))
    frame = _place(_belt(3), art, truth)
    corners = locate_label(frame)
    assert corners is not None
    warped = warp_label(frame, corners, 160, 96)
    assert warped.shape == (96, 160, 3)
    assert warped.dtype == np.uint8
    expected = cv2.resize(art, (160, 96), interpolation=cv2.INTER_AREA).astype(np.int16)
    assert float(np.abs(warped.astype(np.int16) - expected).mean()) < 12.0


def test_warp_into_a_given_array_fills_it_with_the_same_image() -> None:
    frame = _place(_belt(3), _label_art(3), _pose(15.0, 1.1, (320, 240)))
    corners = locate_label(frame)
    assert corners is not None
    out = np.zeros((96, 160, 3), np.uint8)
    assert warp_label(frame, corners, 160, 96, out) is out
    assert np.array_equal(out, warp_label(frame, corners, 160, 96))


def test_warp_of_the_flat_corner_list_is_the_warp_of_the_corner_array() -> None:
    frame = _place(_belt(9), _label_art(9), _pose(-8.0, 1.1, (320, 240)))
    corners = locate_label(frame)
    assert corners is not None
    flat = warp_label(frame, corners.ravel().tolist(), 160, 96)
    assert np.array_equal(flat, warp_label(frame, corners, 160, 96))


@pytest.mark.parametrize("angle", [0.0, 17.0, -33.0])
def test_warp_takes_each_pixel_where_opencvs_perspective_map_puts_it(angle: float) -> None:
    """The label-to-frame map is worked out in closed form; OpenCV's own (its 8 × 8
    solve, inverted) agrees but for rounding, which may move a rare pixel."""
    frame = _place(_belt(10), _label_art(10), _pose(angle, 1.2, (320, 240)))
    corners = _pose(angle, 1.2, (320, 240)) + np.float32(0.37)
    target = np.array([[-0.5, -0.5], [159.5, -0.5], [159.5, 95.5], [-0.5, 95.5]], np.float32)
    expected = cv2.warpPerspective(
        frame,
        cv2.getPerspectiveTransform(corners, target),
        (160, 96),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_REPLICATE,
    )
    differing = np.any(warp_label(frame, corners, 160, 96) != expected, axis=-1)
    assert int(differing.sum()) <= 5


@pytest.mark.parametrize(
    "corners",
    [
        [[-40.0, -30.0], [700.0, -30.0], [700.0, 520.0], [-40.0, 520.0]],  # past every edge
        [[600.0, 440.0], [630.0, 440.0], [630.0, 470.0], [600.0, 470.0]],  # in a corner
        [[np.nan, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]],
        [[5.0, 5.0], [5.0, 5.0], [5.0, 5.0], [5.0, 5.0]],  # all in one point
        [[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0]],  # on one line
    ],
    ids=["beyond-frame", "corner", "nan", "one-point", "one-line"],
)
def test_warp_of_any_corners_gives_an_image_of_the_requested_size(
    corners: list[list[float]],
) -> None:
    frame = _belt(3)
    warped = warp_label(frame, np.array(corners, np.float32), 160, 96)
    assert warped.shape == (96, 160, 3)


@pytest.mark.parametrize(
    ("frame", "failure"),
    [
        (np.zeros((480, 640, 3), np.uint8), LocateFailure.BLANK_FRAME),
        (np.full((480, 640, 3), 255, np.uint8), LocateFailure.BLANK_FRAME),
        (_belt(4), LocateFailure.NO_LABEL),
        (
            np.random.default_rng(5).integers(0, 256, (480, 640, 3), dtype=np.uint8),
            LocateFailure.NO_LABEL,
        ),
    ],
    ids=["black", "white", "empty-belt", "noise"],
)
def test_frames_without_a_label_say_why(frame: NDArray[np.uint8], failure: LocateFailure) -> None:
    assert locate(frame) == (None, failure)


def test_a_label_running_off_the_frame_is_cut_off_not_located() -> None:
    frame = _place(_belt(6), _label_art(6), _pose(5.0, 1.0, (600, 240)))
    assert locate(frame) == (None, LocateFailure.LABEL_CUT_OFF)


def test_check_frame_names_what_is_wrong() -> None:
    assert check_frame(np.zeros((480, 640, 3), np.uint8)) is None
    assert check_frame(np.zeros((480, 640), np.uint8)) == "bad_frame_channels"
    assert check_frame(np.zeros((480, 640, 4), np.uint8)) == "bad_frame_channels"
    assert check_frame(np.zeros((480, 640, 3), np.float32)) == "bad_frame_type"
    assert check_frame(b"not an array") == "bad_frame_type"
    assert check_frame(np.zeros((40, 640, 3), np.uint8)) == "bad_frame_size"
    assert check_frame(np.zeros((480, 5000, 3), np.uint8)) == "bad_frame_size"


def test_decode_jpeg_reads_a_jpeg_and_refuses_garbage() -> None:
    ok, encoded = cv2.imencode(".jpg", _belt(7))
    assert ok
    image = decode_jpeg(encoded.tobytes())
    assert image is not None
    assert image.shape == (480, 640, 3)
    assert decode_jpeg(b"") is None
    assert decode_jpeg(b"\xff\xd8\xff garbage") is None
    truncated = decode_jpeg(encoded.tobytes()[:200])  # libjpeg may salvage a part
    assert truncated is None or truncated.shape == (480, 640, 3)


@pytest.mark.parametrize("place", range(4), ids=["T", "R", "B", "L"])
@pytest.mark.parametrize("shade", [15, 245], ids=["dark", "light"])
def test_an_object_over_a_side_leaves_the_corners_right(place: int, shade: int) -> None:
    """A dark object's dent is bridged by the outline's hull; a light one merging with the
    label bulges less than the polygon's tolerance, which leaves it out."""
    truth = _pose(15.0, 1.0, (320, 240))
    frame = _place(_belt(8), _label_art(8), truth)
    x, y = ((truth[place] + truth[(place + 1) % 4]) / 2).round().astype(int)
    cv2.circle(frame, (int(x), int(y)), 30, (shade, shade, shade), -1)
    corners = locate_label(frame)
    assert corners is not None
    assert np.abs(corners - truth).max() < 2.0


@pytest.mark.parametrize("place", range(4), ids=["TL", "TR", "BR", "BL"])
@pytest.mark.parametrize("shade", [15, 245], ids=["dark", "light"])
def test_an_object_over_a_corner_moves_only_that_corner(place: int, shade: int) -> None:
    """The polygon follows the object round the hidden corner (cut off by a dark one,
    drawn out by a light one): that corner is off by up to the object's reach (30 px),
    the others stay within the usual error (the sides they share with it may tilt a
    little). Never a crash; the askew label is the model's to hold."""
    truth = _pose(15.0, 1.0, (320, 240))
    frame = _place(_belt(8), _label_art(8), truth)
    x, y = truth[place].round().astype(int)
    cv2.circle(frame, (int(x), int(y)), 30, (shade, shade, shade), -1)
    corners = locate_label(frame)
    assert corners is not None
    off = np.abs(corners - truth).max(axis=1)
    assert (np.delete(off, place) < _worst_located_error(frame)).all()
    assert off[place] < 30 + 3.0


def _declaring(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a baseline JPEG) with its frame header claiming ``width`` × ``height``."""
    at = data.index(b"\xff\xc0")
    size = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return data[: at + 5] + size + data[at + 9 :]


def test_a_small_jpeg_declaring_a_huge_frame_is_refused_without_decoding() -> None:
    ok, encoded = cv2.imencode(".jpg", np.full((200, 200, 3), 128, np.uint8))
    assert ok
    bomb = _declaring(encoded.tobytes(), 20000, 20000)  # 1.2 GB decoded, from 1.3 KB
    assert len(bomb) < 4096
    assert decode_jpeg(bomb) is None
    assert decode_jpeg(_declaring(encoded.tobytes(), 300, 200)) is not None


@pytest.mark.parametrize(
    ("ext", "params"),
    [(".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", [])],
)
def test_image_size_reads_the_header_of_jpeg_and_png(ext: str, params: list[int]) -> None:
    ok, encoded = cv2.imencode(ext, np.zeros((123, 457, 3), np.uint8), params)
    assert ok
    assert image_size(encoded.tobytes()) == (457, 123)
    image = decode_jpeg(encoded.tobytes())
    assert image is not None
    assert image.shape == (123, 457, 3)


def test_image_size_of_other_data_is_none() -> None:
    ok, bmp = cv2.imencode(".bmp", np.zeros((10, 10, 3), np.uint8))
    assert ok
    for data in (b"", b"\xff\xd8", b"\xff\xd8\xff\xd9", b"\xff\xd8\x00\x00", bmp.tobytes()):
        assert image_size(data) is None
        assert decode_jpeg(data) is None


def test_only_a_convex_quadrilateral_counts_as_a_label() -> None:
    square = [0.0, 0.0, 10.0, 0.0, 10.0, 6.0, 0.0, 6.0]
    assert preprocess._convex(square)
    assert preprocess._convex(square[6:] + square[:6])  # any starting corner
    assert preprocess._convex([0.0, 0.0, 0.0, 6.0, 10.0, 6.0, 10.0, 0.0])  # other way round
    assert not preprocess._convex([0.0, 0.0, 10.0, 6.0, 10.0, 0.0, 0.0, 6.0])  # bow tie
    assert not preprocess._convex([0.0, 0.0, 10.0, 0.0, 3.0, 2.0, 0.0, 6.0])  # dented
    assert not preprocess._convex([0.0, 0.0, 5.0, 0.0, 10.0, 0.0, 0.0, 6.0])  # three in line


def test_an_output_of_another_size_is_refused() -> None:
    """Both paths: the compiled warp would fill an array of any size, OpenCV would make
    its own; neither may quietly write a label of the wrong size."""
    frame = np.zeros((480, 640, 3), np.uint8)
    corners = [100.0, 100.0, 300.0, 100.0, 300.0, 220.0, 100.0, 220.0]
    with pytest.raises(ValueError, match="out must be 96 × 160 × 3"):
        warp_label(frame, corners, 160, 96, np.zeros((96, 161, 3), np.uint8))
