"""The label check end to end: verdicts, reasons, and no-verdict results instead of crashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge_agent.vision.checker import LabelChecker, VisionResult
from edge_agent.vision.config import DEFAULT_THRESHOLD, VisionConfig
from edge_agent.vision.layout import COUNTERFEIT_KINDS, LabelKind
from edge_agent.vision.preprocess import locate_label, warp_label
from edge_agent.vision.runtime import ModelLoadError, load_interpreter
from gatewire.messages import VisionVerdict
from simulators.labels import render_sample
from tests.vision.vision_model import model_under_test


def _checker(**settings: object) -> LabelChecker:
    fields: dict[str, object] = {"model_path": model_under_test(), **settings}
    return LabelChecker(VisionConfig.model_validate(fields))


@pytest.fixture(scope="module")
def checker() -> LabelChecker:
    return _checker()


def _jpeg(frame: NDArray[np.uint8]) -> bytes:
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


def _assert_unreadable(result: VisionResult, reason: str) -> None:
    assert result.verdict is VisionVerdict.UNREADABLE
    assert result.reasons == (reason,)
    assert result.score is None
    assert "total" in result.timings


def test_a_rendered_label_gets_a_verdict_score_and_item_id(checker: LabelChecker) -> None:
    sample = render_sample(11, LabelKind.GENUINE, frames=1)
    result = checker.check(sample.frames)
    assert result.verdict in (VisionVerdict.GENUINE, VisionVerdict.SUSPECT)
    assert result.score is not None
    assert 0.0 <= result.score <= 1.0
    assert (result.verdict is VisionVerdict.SUSPECT) == (result.score < checker.threshold)
    assert result.item_id == sample.item_id
    assert result.hue_shift_deg is None
    assert {"locate", "warp", "infer", "datamatrix", "total"} <= set(result.timings)


def test_the_score_is_the_models_score_for_the_warped_label(checker: LabelChecker) -> None:
    """One frame is warped straight into the model's input; it must score as the image."""
    frame = render_sample(6, LabelKind.GENUINE, frames=1).frames[0]
    corners = locate_label(frame)
    assert corners is not None
    model = checker.model
    expected = model.classify(warp_label(frame, corners, model.width, model.height))
    assert checker.check([frame]).score == expected


def test_jpeg_bytes_are_decoded_and_checked(checker: LabelChecker) -> None:
    sample = render_sample(12, LabelKind.GENUINE, frames=1)
    result = checker.check([_jpeg(sample.frames[0])])
    assert result.verdict is not VisionVerdict.UNREADABLE
    assert result.item_id == sample.item_id


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([np.zeros((480, 640, 3), np.uint8)], "blank_frame"),
        ([np.full((480, 640, 3), 70, np.uint8)], "blank_frame"),
        (
            [np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)],
            "no_label",
        ),
        ([b"\xff\xd8\xff\xe0 definitely not a jpeg"], "corrupt_image"),
        ([b""], "corrupt_image"),
        ([np.zeros((480, 640), np.uint8)], "bad_frame_channels"),
        ([np.zeros((480, 640, 3), np.float32)], "bad_frame_type"),
        ([np.zeros((32, 640, 3), np.uint8)], "bad_frame_size"),
        ([np.zeros((480, 8000, 3), np.uint8)], "bad_frame_size"),
        ([], "bad_frame_count"),
        ([np.zeros((480, 640, 3), np.uint8)] * 3, "bad_frame_count"),
    ],
    ids=[
        "black",
        "flat-grey",
        "noise",
        "corrupt-jpeg",
        "empty-bytes",
        "grayscale",
        "float",
        "too-small",
        "too-wide",
        "no-frames",
        "three-frames",
    ],
)
def test_unusable_input_is_unreadable_with_the_reason(
    checker: LabelChecker, frames: list[NDArray[np.uint8] | bytes], reason: str
) -> None:
    _assert_unreadable(checker.check(frames), reason)


def test_a_bare_frame_instead_of_a_list_is_refused(checker: LabelChecker) -> None:
    frame = render_sample(1, LabelKind.GENUINE, frames=1).frames[0]
    _assert_unreadable(checker.check(frame), "bad_frame_count")  # type: ignore[arg-type]


def test_a_tuple_of_frames_is_checked_like_a_list(checker: LabelChecker) -> None:
    frame = render_sample(6, LabelKind.GENUINE, frames=1).frames[0]
    as_tuple, as_list = checker.check((frame,)), checker.check([frame])
    assert as_tuple.verdict is as_list.verdict is not VisionVerdict.UNREADABLE
    assert as_tuple.score == as_list.score


def test_a_strided_view_of_a_frame_is_checked_like_the_frame(checker: LabelChecker) -> None:
    sample = render_sample(13, LabelKind.GENUINE, frames=1)
    rgb = np.ascontiguousarray(sample.frames[0][..., ::-1])
    result = checker.check([rgb[..., ::-1]])  # a BGR view with negative channel stride
    assert result.verdict is not VisionVerdict.UNREADABLE
    assert result.item_id == sample.item_id


def test_a_truncated_jpeg_never_raises(checker: LabelChecker) -> None:
    data = _jpeg(render_sample(2, LabelKind.GENUINE, frames=1).frames[0])
    result = checker.check([data[: len(data) // 3]])
    assert isinstance(result.verdict, VisionVerdict)


def test_a_failing_model_gives_no_verdict(
    checker: LabelChecker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise RuntimeError("tensor allocation failed")

    monkeypatch.setattr(checker.model.interpreter, "invoke", broken)
    result = checker.check(render_sample(3, LabelKind.GENUINE, frames=1).frames)
    _assert_unreadable(result, "model_error")


def test_an_unexpected_bug_gives_no_verdict_not_an_exception(
    checker: LabelChecker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def buggy() -> None:
        raise KeyError("bug")

    monkeypatch.setattr(checker.model.interpreter, "invoke", buggy)
    result = checker.check(render_sample(3, LabelKind.GENUINE, frames=1).frames)
    _assert_unreadable(result, "internal_error")


def test_scores_below_the_threshold_are_suspect_for_the_model() -> None:
    frames = render_sample(4, LabelKind.GENUINE, frames=1).frames
    strict = _checker(threshold=1.0, decode_datamatrix=False).check(frames)
    assert strict.score is not None
    if strict.score < 1.0:
        assert strict.verdict is VisionVerdict.SUSPECT
        assert strict.reasons == ("label_model",)
    lenient = _checker(threshold=0.0, decode_datamatrix=False).check(frames)
    assert lenient.verdict is VisionVerdict.GENUINE
    assert lenient.reasons == ()
    assert "datamatrix" not in lenient.timings


@pytest.mark.parametrize("shade", [15, 245], ids=["dark", "light"])
def test_an_object_over_a_corner_never_lets_a_counterfeit_pass(
    checker: LabelChecker, shade: int
) -> None:
    """Locating cuts a hidden corner off or draws it out (see test_preprocess), so the
    label is warped askew: a counterfeit so warped must still be held, never accepted."""
    for index, kind in enumerate(COUNTERFEIT_KINDS):
        sample = render_sample(40 + index, kind, frames=1)
        for corner in sample.corners:
            frame = sample.frames[0].copy()
            x, y = corner.round().astype(int)
            cv2.circle(frame, (int(x), int(y)), 30, (shade, shade, shade), -1)
            result = checker.check([frame])
            assert result.verdict is not VisionVerdict.GENUINE, f"{kind} at {corner}"


def test_two_frames_catch_a_flat_printed_patch() -> None:
    two = _checker(threshold=0.0, two_frame=True)
    flat = two.check(render_sample(5, LabelKind.PATCH_FLAT, frames=2).frames)
    assert flat.verdict is VisionVerdict.SUSPECT
    assert flat.reasons == ("colour_shift_flat",)
    assert flat.hue_shift_deg is not None
    assert flat.hue_shift_deg < two.config.min_hue_shift_deg
    genuine = two.check(render_sample(5, LabelKind.GENUINE, frames=2).frames)
    assert genuine.verdict is VisionVerdict.GENUINE
    assert genuine.hue_shift_deg is not None
    assert genuine.hue_shift_deg > 45
    missing = two.check(render_sample(5, LabelKind.PATCH_MISSING, frames=2).frames)
    assert missing.reasons == ("colour_shift_missing",)


def test_two_frames_without_the_gate_option_leave_it_to_the_model() -> None:
    one = _checker(threshold=0.0)
    result = one.check(render_sample(5, LabelKind.PATCH_FLAT, frames=2).frames)
    assert result.verdict is VisionVerdict.GENUINE
    assert result.hue_shift_deg is None


def test_two_frames_as_jpeg_with_one_unreadable_is_unreadable() -> None:
    two = _checker(threshold=0.0, two_frame=True)
    frames = render_sample(6, LabelKind.GENUINE, frames=2).frames
    _assert_unreadable(two.check([_jpeg(frames[0]), b"garbage"]), "corrupt_image")


def test_threshold_comes_from_the_model_card(tmp_path: Path) -> None:
    model = tmp_path / "label_check.tflite"
    model.write_bytes(model_under_test().read_bytes())
    assert VisionConfig(model_path=model).resolved_threshold() == DEFAULT_THRESHOLD
    card = tmp_path / "label_check.card.json"
    card.write_text(json.dumps({"threshold": 0.73}))
    assert VisionConfig(model_path=model).resolved_threshold() == 0.73
    assert VisionConfig(model_path=model, threshold=0.2).resolved_threshold() == 0.2
    checker = LabelChecker(VisionConfig(model_path=model), model=load_interpreter(model))
    assert checker.threshold == 0.73
    card.write_text(json.dumps({"threshold": 7}))
    with pytest.raises(ModelLoadError, match="threshold"):
        VisionConfig(model_path=model).resolved_threshold()
    card.write_text("{not json")
    with pytest.raises(ModelLoadError, match="card"):
        VisionConfig(model_path=model).resolved_threshold()


def test_config_forbids_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValueError, match="extra"):
        VisionConfig.model_validate({"modle_path": "x.tflite"})
    with pytest.raises(ValueError, match="threshold"):
        VisionConfig(threshold=1.5)
    with pytest.raises(ValueError, match="runtime"):
        VisionConfig.model_validate({"runtime": "onnx"})
    for name, info in VisionConfig.model_fields.items():
        assert info.title, name
        assert info.description, name


def test_load_builds_a_checker_on_the_named_runtime() -> None:
    loaded = LabelChecker.load(model_under_test(), runtime="auto", two_frame=True)
    assert loaded.runtime_name in ("ai_edge_litert", "tflite_runtime")
    assert loaded.config.two_frame


def test_an_iterator_of_frames_is_refused_as_a_frame_count(checker: LabelChecker) -> None:
    frame = render_sample(1, LabelKind.GENUINE, frames=1).frames[0]
    _assert_unreadable(checker.check(iter([frame])), "bad_frame_count")  # type: ignore[arg-type]
    _assert_unreadable(checker.check(bytearray(b"\xff\xd8")), "bad_frame_count")  # type: ignore[arg-type]


def test_the_card_training_writes_is_found_for_a_model_of_any_name(tmp_path: Path) -> None:
    model = tmp_path / "my_labels.model"
    model.write_bytes(model_under_test().read_bytes())
    (tmp_path / "my_labels.card.json").write_text(json.dumps({"threshold": 0.81}))
    assert VisionConfig(model_path=model).resolved_threshold() == 0.81


def test_a_configured_card_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    config = VisionConfig(model_path=model_under_test(), card_path=tmp_path / "absent.json")
    with pytest.raises(ModelLoadError, match="does not exist"):
        config.resolved_threshold()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"name": "label_check"}', "no threshold"),
        ('{"threshold": null}', "no threshold"),
        ('{"threshold": NaN}', "not above 0"),
        ('{"threshold": -0.1}', "not above 0"),
        ('{"threshold": 0}', "not above 0"),  # every label would pass
        ('{"threshold": true}', "not above 0"),
        ('{"threshold": "0.5"}', "not above 0"),
        ('{"threshold": 1' + "0" * 400 + "}", "not above 0"),  # no float holds it
        ("[0.5]", "no threshold"),
    ],
)
def test_a_card_without_a_usable_threshold_is_a_load_error(
    tmp_path: Path, text: str, match: str
) -> None:
    card = tmp_path / "card.json"
    card.write_text(text)
    config = VisionConfig(model_path=model_under_test(), card_path=card)
    with pytest.raises(ModelLoadError, match=match):
        config.resolved_threshold()


def test_a_card_made_for_another_model_is_a_load_error(tmp_path: Path) -> None:
    model = tmp_path / "label_check.tflite"
    model.write_bytes(model_under_test().read_bytes())
    card = tmp_path / "label_check.card.json"
    card.write_text(json.dumps({"threshold": 0.6, "model_sha256": "0" * 64}))
    with pytest.raises(ModelLoadError, match="another model"):
        VisionConfig(model_path=model).resolved_threshold()
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    card.write_text(json.dumps({"threshold": 0.6, "model_sha256": digest}))
    assert VisionConfig(model_path=model).resolved_threshold() == 0.6
