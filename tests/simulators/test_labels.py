"""Synthetic labels: determinism, what each counterfeit changes, film hue, DataMatrix, pose."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import zxingcpp
from numpy.typing import NDArray
from pydantic import ValidationError

from edge_agent.vision.layout import COUNTERFEIT_KINDS, LABEL_H, LABEL_W, REGIONS, LabelKind
from simulators.labels import (
    LabelSample,
    RenderConfig,
    normalise_item_id,
    render_dataset,
    render_label,
    render_sample,
    sample_seed,
)
from simulators.labels.brands import BRANDS
from simulators.labels.counterfeit import make_defect
from simulators.labels.security import hue_shift_deg
from simulators.labels.text import FACES, put_text, text_width
from simulators.scanner import generate_items

Image = NDArray[np.uint8]
DATAMATRIX = zxingcpp.barcode_formats_from_str("DataMatrix")

EXPECTED_REGIONS = {
    LabelKind.PATCH_FLAT: {"patch"},
    LabelKind.PATCH_MISSING: {"patch"},
    LabelKind.LOGO_DISTORTED: {"logo"},
    LabelKind.MICROTEXT_BLURRED: {"microtext"},
    LabelKind.WRONG_FONT: {"brand_text", "product_text"},
    LabelKind.OFF_COLOUR: {"logo", "brand_text"},
}


def _canonical(sample: LabelSample, index: int = 0) -> Image:
    """Frame ``index`` warped back to the canonical label (as the runtime does)."""
    target = np.array([[0, 0], [LABEL_W, 0], [LABEL_W, LABEL_H], [0, LABEL_H]], np.float32) - 0.5
    warp = cv2.getPerspectiveTransform(sample.corners, target)
    return np.asarray(cv2.warpPerspective(sample.frames[index], warp, (LABEL_W, LABEL_H)))


def _region(image: Image, name: str, inset: int = 0) -> Image:
    region = REGIONS[name]
    return image[
        region.y + inset : region.y + region.h - inset,
        region.x + inset : region.x + region.w - inset,
    ]


def _region_diff(first: Image, second: Image) -> dict[str, float]:
    diff = np.abs(first.astype(np.int16) - second.astype(np.int16)).sum(axis=2)
    return {name: float(_region(diff, name).mean()) for name in REGIONS}


@pytest.mark.parametrize("kind", [LabelKind.GENUINE, LabelKind.PATCH_FLAT, LabelKind.PHOTOCOPY])
def test_same_seed_renders_byte_identical_frames(kind: LabelKind) -> None:
    first, again = render_sample(7, kind), render_sample(7, kind)
    assert first.item_id == again.item_id
    assert first.severity == again.severity
    assert len(first.frames) == 2
    for a, b in zip(first.frames, again.frames, strict=True):
        assert a.tobytes() == b.tobytes()
    assert first.corners.tobytes() == again.corners.tobytes()
    assert render_sample(8, kind).frames[0].tobytes() != first.frames[0].tobytes()


def test_frames_are_bgr_uint8_of_the_configured_size_and_frame_a_stands_alone() -> None:
    config = RenderConfig(frame_width=320, frame_height=240)
    pair = render_sample(3, LabelKind.GENUINE, config=config)
    single = render_sample(3, LabelKind.GENUINE, frames=1, config=config)
    assert [f.shape for f in pair.frames] == [(240, 320, 3)] * 2
    assert pair.frames[0].dtype == np.uint8
    assert len(single.frames) == 1
    assert single.frames[0].tobytes() == pair.frames[0].tobytes()


def test_dataset_samples_rerender_alone_and_follow_the_mix() -> None:
    samples = list(render_dataset(11, 60, frames=1))
    alone = render_sample(sample_seed(11, 41), samples[41].kind, frames=1)
    assert alone.frames[0].tobytes() == samples[41].frames[0].tobytes()
    counterfeit = sum(s.kind is not LabelKind.GENUINE for s in samples)
    assert 15 <= counterfeit <= 45
    assert all((s.severity == 0) == (s.kind is LabelKind.GENUINE) for s in samples)
    assert all(0.4 <= s.severity <= 1.0 for s in samples if s.kind is not LabelKind.GENUINE)

    only_logos = RenderConfig(counterfeit_share=1.0, kinds={LabelKind.LOGO_DISTORTED: 1})
    kinds = {s.kind for s in render_dataset(2, 8, config=only_logos, frames=1)}
    assert kinds == {LabelKind.LOGO_DISTORTED}
    all_genuine = RenderConfig(counterfeit_share=0.0)
    assert {s.kind for s in render_dataset(2, 8, config=all_genuine, frames=1)} == {
        LabelKind.GENUINE
    }


@pytest.mark.parametrize("kind", list(EXPECTED_REGIONS))
def test_each_counterfeit_changes_its_own_regions_of_the_artwork(kind: LabelKind) -> None:
    for seed in range(4):
        diff = _region_diff(render_label(seed, kind), render_label(seed, LabelKind.GENUINE))
        expected = EXPECTED_REGIONS[kind]
        for name, value in diff.items():
            if name in expected:
                assert value > 8.0, (seed, name, diff)
            else:
                assert value == 0.0, (seed, name, diff)


def test_photocopy_changes_every_region() -> None:
    diff = _region_diff(render_label(5, LabelKind.PHOTOCOPY), render_label(5, LabelKind.GENUINE))
    assert min(diff.values()) > 8.0, diff


@pytest.mark.parametrize("kind", list(EXPECTED_REGIONS))
def test_counterfeit_defects_survive_capture(kind: LabelKind) -> None:
    """Same seed, same pose: in the frame the fake differs most where its defect is."""
    for seed in range(3):
        fake = _canonical(render_sample(seed, kind, frames=1))
        real = _canonical(render_sample(seed, LabelKind.GENUINE, frames=1))
        diff = _region_diff(fake, real)
        expected = EXPECTED_REGIONS[kind]
        worst_other = max(v for k, v in diff.items() if k not in expected)
        assert max(diff[k] for k in expected) > 3 * worst_other + 10, (seed, diff)


def test_genuine_film_shifts_hue_between_angles_and_flat_print_does_not() -> None:
    for seed in range(12):
        real = render_sample(seed, LabelKind.GENUINE)
        flat = render_sample(seed, LabelKind.PATCH_FLAT)
        real_patches = [_region(_canonical(real, i), "patch", inset=4) for i in (0, 1)]
        flat_patches = [_region(_canonical(flat, i), "patch", inset=4) for i in (0, 1)]
        assert hue_shift_deg(*real_patches) >= 40.0, seed
        assert hue_shift_deg(*flat_patches) <= 5.0, seed


def test_two_frames_differ_only_around_the_patch() -> None:
    sample = render_sample(4, LabelKind.GENUINE)
    changed = np.abs(sample.frames[0].astype(np.int16) - sample.frames[1]).max(axis=2) > 0
    ys, xs = np.nonzero(changed)
    target = np.array([[0, 0], [LABEL_W, 0], [LABEL_W, LABEL_H], [0, LABEL_H]], np.float32)
    to_frame = cv2.getPerspectiveTransform(target, sample.corners)
    patch = REGIONS["patch"]
    outline = np.array([[[patch.x, patch.y], [patch.x + patch.w, patch.y + patch.h]]], np.float32)
    box = cv2.perspectiveTransform(outline, to_frame)[0]
    assert xs.size > 500
    margin = 40  # blur, JPEG blocks, perspective of the box corners
    assert xs.min() >= box[:, 0].min() - margin
    assert xs.max() <= box[:, 0].max() + margin
    assert ys.min() >= box[:, 1].min() - margin
    assert ys.max() <= box[:, 1].max() + margin


def _decoded(frame: Image) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(frame, formats=DATAMATRIX)]


def test_datamatrix_decodes_to_the_item_id_in_every_frame() -> None:
    failures = []
    for seed in range(50):
        sample = render_sample(seed, LabelKind.GENUINE)
        assert sample.item_id.startswith("(01)")
        for index, frame in enumerate(sample.frames):
            if _decoded(frame) != [sample.item_id]:
                failures.append((seed, index))
    assert failures == []


def test_raw_element_strings_are_encoded_and_read_back_bracketed() -> None:
    for seed, raw in enumerate(generate_items(20, seed=5)):
        sample = render_sample(seed, LabelKind.GENUINE, item_id=raw, frames=1)
        assert sample.item_id == normalise_item_id(raw)
        assert _decoded(sample.frames[0]) == [sample.item_id], seed


def test_corners_lie_in_the_frame_on_the_label_outline() -> None:
    for seed in range(20):
        sample = render_sample(seed, LabelKind.GENUINE, frames=1)
        frame = cv2.cvtColor(sample.frames[0], cv2.COLOR_BGR2GRAY).astype(np.float64)
        height, width = frame.shape
        corners = sample.corners.astype(np.float64)
        assert corners.shape == (4, 2)
        assert (corners >= 0).all()
        assert (corners[:, 0] < width).all()
        assert (corners[:, 1] < height).all()
        top_left, top_right, bottom_right, bottom_left = corners
        assert top_left[0] < top_right[0]
        assert top_left[1] < bottom_left[1]
        centre = corners.mean(axis=0)
        # Points along each edge away from where an occluder may sit.
        for start, end, at in [
            (top_left, top_right, 0.1),
            (top_right, bottom_right, 0.85),
            (bottom_left, bottom_right, 0.1),
            (top_left, bottom_left, 0.5),
        ]:
            point = start + (end - start) * at
            inward = (centre - point) / np.linalg.norm(centre - point)
            inside = point + 4 * inward
            outside = point - 4 * inward
            brightness = frame[round(inside[1]), round(inside[0])]
            assert brightness > frame[round(outside[1]), round(outside[0])] + 40, seed


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ValidationError, match="low <= high"):
        RenderConfig(severity=(0.9, 0.2))
    with pytest.raises(ValidationError, match="counterfeit kinds only"):
        RenderConfig(kinds={LabelKind.GENUINE: 1.0})
    with pytest.raises(ValidationError, match="at least one positive"):
        RenderConfig(kinds={LabelKind.PHOTOCOPY: 0.0})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        RenderConfig.model_validate({"frame_widht": 320})
    with pytest.raises(ValidationError, match="jpeg_quality"):
        RenderConfig(jpeg_quality=(95, 70))
    with pytest.raises(ValidationError, match="greater than or equal to 160"):
        RenderConfig(frame_width=100)


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="not a GS1 element string"):
        render_sample(1, LabelKind.GENUINE, item_id="hello")
    with pytest.raises(ValueError, match="frames must be 1 or 2"):
        render_sample(1, LabelKind.GENUINE, frames=3)
    with pytest.raises(ValueError, match="seed must not be negative"):
        render_sample(-1, LabelKind.GENUINE)
    with pytest.raises(ValueError, match="'fake'"):
        render_sample(1, "fake")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", COUNTERFEIT_KINDS)
def test_every_kind_renders_with_its_severity(kind: LabelKind) -> None:
    sample = render_sample(21, kind)
    assert sample.kind is kind
    assert 0.4 <= sample.severity <= 1.0
    assert len(sample.frames) == 2


def test_large_frames_get_fine_artwork_that_still_decodes() -> None:
    config = RenderConfig(frame_width=1920, frame_height=1080)
    for kind in (LabelKind.GENUINE, LabelKind.PHOTOCOPY):
        sample = render_sample(5, kind, config=config, frames=1)
        assert sample.frames[0].shape == (1080, 1920, 3)
        assert _decoded(sample.frames[0]) == [sample.item_id]


def _ink(text: str, org: tuple[float, float], face: str = "futural", cap: float = 40.0) -> Image:
    canvas = np.zeros((100, 300), np.uint8)
    put_text(canvas, text, org, face, cap, 255, 1)
    return canvas


def test_text_ink_spans_the_cap_height_and_ends_within_its_width() -> None:
    ink = _ink("HIH", (10.0, 70.0))
    rows, cols = np.nonzero(ink > 127)
    assert abs(rows.min() - 30) <= 1  # cap line: baseline 70 - cap height 40
    assert abs(rows.max() - 70) <= 1
    right = 10.0 + text_width("HIH", "futural", 40.0)
    assert right - 12 <= cols.max() <= right


def test_fractional_origins_move_text_by_a_fraction_of_a_pixel() -> None:
    columns = np.arange(300, dtype=np.float64)

    def centre(x: float) -> float:
        weights = _ink("I", (x, 70.0)).sum(axis=0).astype(np.float64)
        return float((weights * columns).sum() / weights.sum())

    assert centre(20.25) - centre(20.0) == pytest.approx(0.25, abs=0.04)


def test_tracking_adds_its_pixels_between_letters_only() -> None:
    plain = text_width("KESTREL", "timesrb", 20.0)
    assert text_width("KESTREL", "timesrb", 20.0, tracking=3.0) == pytest.approx(plain + 18.0)
    assert put_text(np.zeros((40, 300), np.uint8), "KESTREL", (0, 30), "timesrb", 20.0, 255) == (
        pytest.approx(plain)
    )
    assert text_width("", "timesrb", 20.0, tracking=3.0) == 0.0


def test_faces_draw_different_letters_and_missing_letters_as_a_question_mark() -> None:
    drawn = {face: _ink("Rag", (5.5, 70.0), face).tobytes() for face in FACES}
    assert len(set(drawn.values())) == len(FACES)
    assert _ink("\u00e9\u2603", (5.0, 70.0)).tobytes() == _ink("??", (5.0, 70.0)).tobytes()


def test_text_rejects_unknown_faces_and_sizes() -> None:
    with pytest.raises(ValueError, match="unknown Hershey face 'arial'"):
        text_width("A", "arial", 10.0)
    with pytest.raises(ValueError, match="cap height must be positive"):
        put_text(np.zeros((10, 10), np.uint8), "A", (0, 9), "futural", 0.0, 255)


def test_wrong_font_counterfeits_set_names_in_another_known_face() -> None:
    rng = np.random.default_rng(5)
    for brand in BRANDS:
        for _ in range(10):
            style = make_defect(LabelKind.WRONG_FONT, brand, 0.4, rng).style
            assert style.brand_font in FACES
            assert style.product_font in FACES
            assert style.brand_font != brand.brand_font
            assert style.product_font != brand.product_font
            assert {style.brand_font, brand.brand_font} != {"futural", "futuram"}
