"""Training: threshold choice, held-out figures, folder data, and the optional TF stack."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge_agent.vision import dataset
from edge_agent.vision.dataset import (
    JITTER_COPIES,
    JITTER_WORK_PIXELS,
    DatasetError,
    SyntheticSpec,
    load_folder,
    prepare_jittered,
    render_synthetic,
)
from edge_agent.vision.layout import LabelKind
from edge_agent.vision.model_card import ModelCard, card_paths
from edge_agent.vision.preprocess import locate_label, work_step
from edge_agent.vision.training import (
    INPUT_HEIGHT,
    INPUT_WIDTH,
    TrainingUnavailableError,
    held_out_metrics,
    pick_threshold,
    train,
)
from simulators.labels import render_sample

HAVE_TF = importlib.util.find_spec("tensorflow") is not None


def test_train_without_tensorflow_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` fail
    with pytest.raises(TrainingUnavailableError, match=r"pip install 'provgate\[train\]'"):
        train(SyntheticSpec(samples=10), tmp_path / "m.tflite", epochs=1)
    assert not (tmp_path / "m.tflite").exists()


def test_threshold_sits_in_the_middle_of_a_clean_gap() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    genuine = np.array([False, False, False, True, True, True])
    assert pick_threshold(scores, genuine) == pytest.approx(0.5)


def test_threshold_favours_rejecting_a_genuine_label_over_accepting_a_fake() -> None:
    # One fake scores 0.6, above one genuine label at 0.55: accepting both or rejecting
    # both costs one error either way, but a fake accepted weighs more.
    scores = np.array([0.1, 0.2, 0.6, 0.55, 0.8, 0.9])
    genuine = np.array([False, False, False, True, True, True])
    threshold = pick_threshold(scores, genuine)
    assert 0.6 < threshold <= 0.8


def test_held_out_metrics_count_each_error_kind() -> None:
    scores = np.array([0.9, 0.2, 0.1, 0.8, 0.3, 0.7])
    genuine = np.array([True, True, False, False, False, True])
    kinds = ("genuine", "genuine", "patch_flat", "off_colour", "off_colour", "genuine")
    metrics = held_out_metrics(scores, genuine, kinds, threshold=0.5)
    assert metrics.samples == 6
    assert metrics.accuracy == pytest.approx(4 / 6)
    assert metrics.genuine_rejected_rate == pytest.approx(1 / 3)
    assert metrics.counterfeit_accepted_rate == pytest.approx(1 / 3)
    assert metrics.per_kind_recall == {
        "genuine": pytest.approx(2 / 3),
        "off_colour": 0.5,
        "patch_flat": 1.0,
    }


def _write_folder(root: Path, per_class: int) -> None:
    """genuine/ and counterfeit/<kind>/ photos, plus one file that is not an image."""
    fakes = (LabelKind.PATCH_MISSING, LabelKind.OFF_COLOUR)
    for i in range(per_class):
        for kind, sub in ((LabelKind.GENUINE, "genuine"), (fakes[i % 2], "counterfeit")):
            folder = root / sub / ("" if kind is LabelKind.GENUINE else kind.value)
            folder.mkdir(parents=True, exist_ok=True)
            frame = render_sample(10 + i, kind, frames=1).frames[0]
            cv2.imwrite(str(folder / f"{i}.jpg"), frame)
    (root / "genuine" / "broken.png").write_bytes(b"not a png")


def test_folder_data_is_warped_to_the_model_input_with_kinds_from_subfolders(
    tmp_path: Path,
) -> None:
    _write_folder(tmp_path, per_class=4)
    data = load_folder(tmp_path, INPUT_HEIGHT, INPUT_WIDTH)
    assert data.images.shape == (8, INPUT_HEIGHT, INPUT_WIDTH, 3)
    assert data.frames == 9
    assert data.unreadable_files == 1
    assert int(data.genuine.sum()) == 4
    assert sorted(set(data.kinds)) == ["genuine", "off_colour", "patch_missing"]


def test_a_folder_without_counterfeit_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "genuine").mkdir()
    with pytest.raises(DatasetError, match="counterfeit/"):
        load_folder(tmp_path, INPUT_HEIGHT, INPUT_WIDTH)
    (tmp_path / "counterfeit").mkdir()
    with pytest.raises(DatasetError, match="both"):
        load_folder(tmp_path, INPUT_HEIGHT, INPUT_WIDTH)


def test_synthetic_data_is_warped_and_remembers_its_render_seeds() -> None:
    data = render_synthetic(SyntheticSpec(samples=12, seed=5), INPUT_HEIGHT, INPUT_WIDTH)
    assert data.frames == 12 == len(data) + data.skipped_no_label
    assert data.images.shape[1:] == (INPUT_HEIGHT, INPUT_WIDTH, 3)
    assert data.seeds is not None
    assert data.seeds.overlaps(5, 1)
    assert all(k in {k.value for k in LabelKind} for k in data.kinds)
    assert list(data.genuine) == [k == "genuine" for k in data.kinds]
    assert "render_dataset(seed=5, n=12)" in data.description


def test_jittered_copies_are_warps_from_moved_corners_drawn_from_the_seed() -> None:
    """Training sees each label also from corners moved as far as the gate's coarse
    locate may move them, the same copies for the same seed."""
    spec = SyntheticSpec(samples=6, seed=5)
    data = render_synthetic(spec, INPUT_HEIGHT, INPUT_WIDTH, jitter_seed=11)
    again = render_synthetic(spec, INPUT_HEIGHT, INPUT_WIDTH, jitter_seed=11)
    other = render_synthetic(spec, INPUT_HEIGHT, INPUT_WIDTH, jitter_seed=12)
    plain = render_synthetic(spec, INPUT_HEIGHT, INPUT_WIDTH)
    assert plain.jittered is None
    assert data.jittered is not None
    assert again.jittered is not None
    assert data.jittered.shape == (len(data), JITTER_COPIES, INPUT_HEIGHT, INPUT_WIDTH, 3)
    assert np.array_equal(data.images, plain.images)  # the located warp is the gate's own
    assert np.array_equal(data.jittered, again.jittered)
    assert other.jittered is not None
    assert not np.array_equal(data.jittered, other.jittered)
    moved = np.abs(data.jittered.astype(np.int16) - data.images[:, None]).mean(axis=(2, 3, 4))
    assert (moved > 1).all()  # every copy moved
    # but still the label, a few pixels off: nearer its own warp than any other label's
    apart = np.abs(data.jittered[:, :, None].astype(np.int16) - data.images[None, None])
    to_each = apart.mean(axis=(3, 4, 5))  # copy of label i (i, k) against label j's warp
    for i in range(len(data)):
        others = np.delete(to_each[i], i, axis=1)
        assert (moved[i] < others.min(axis=1)).all(), f"label {i}"
    assert f"{JITTER_COPIES} copies" in data.description


def test_jitter_moves_each_corner_by_at_most_its_reach() -> None:
    frame = render_sample(3, LabelKind.GENUINE, frames=1).frames[0]
    corners = locate_label(frame)
    assert corners is not None
    reach = JITTER_WORK_PIXELS * work_step(frame)
    seen = []

    def record(frame_: object, quad: NDArray[np.float32], *args: object) -> NDArray[np.uint8]:
        seen.append(np.asarray(quad, np.float32).reshape(4, 2))
        return np.zeros((INPUT_HEIGHT, INPUT_WIDTH, 3), np.uint8)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dataset, "warp_label", record)
        prepared = prepare_jittered(frame, INPUT_HEIGHT, INPUT_WIDTH, np.random.default_rng(0))
    assert prepared is not None
    assert len(seen) == 1 + JITTER_COPIES
    offsets = np.abs(np.stack(seen[1:]) - seen[0])
    assert offsets.max() <= reach + 1e-3
    assert offsets.max() > reach / 2


@pytest.mark.timeout(600)
@pytest.mark.skipif(
    not HAVE_TF, reason="needs TensorFlow (the optional 'train' extra, absent in CI)"
)
def test_training_on_a_folder_writes_an_int8_model_and_its_card(tmp_path: Path) -> None:
    _write_folder(tmp_path / "data", per_class=24)
    progress: list[str] = []
    out = tmp_path / "out" / "mine.tflite"
    card = train(
        tmp_path / "data", out, epochs=2, seed=3, progress=lambda m, _f: progress.append(m)
    )
    assert out.stat().st_size == card.model_bytes <= 300_000
    assert ModelCard.load(card_paths(out)[0]) == card
    assert card.training_data.source == "folder"
    assert card.training_data.genuine + card.training_data.counterfeit == 48
    assert (card.input.height, card.input.width, card.input.zero_point) == (96, 160, -128)
    assert 0 < card.held_out.samples < 48
    assert any(m.startswith("epoch 1") for m in progress)


@pytest.mark.parametrize("genuine", [True, False])
def test_no_threshold_is_picked_from_held_out_labels_of_one_class(genuine: bool) -> None:
    # all genuine used to give 0.0: a card that passes every label
    scores = np.array([0.1, 0.6, 0.9])
    with pytest.raises(ValueError, match="genuine and counterfeit"):
        pick_threshold(scores, np.full(3, genuine))


def test_folder_images_the_gate_would_refuse_are_counted_unreadable(tmp_path: Path) -> None:
    _write_folder(tmp_path, per_class=2)
    frame = render_sample(30, LabelKind.GENUINE, frames=1).frames[0]
    cv2.imwrite(str(tmp_path / "genuine" / "tiny.png"), frame[:64, :64])  # under 96 px
    ok, encoded = cv2.imencode(".jpg", frame)
    assert ok
    data = encoded.tobytes()
    at = data.index(b"\xff\xc0")  # the frame header, declaring 20000 × 20000 pixels
    bomb = data[: at + 5] + (20000).to_bytes(2, "big") * 2 + data[at + 9 :]
    (tmp_path / "genuine" / "bomb.jpg").write_bytes(bomb)
    loaded = load_folder(tmp_path, INPUT_HEIGHT, INPUT_WIDTH)
    assert loaded.frames == 7
    assert loaded.unreadable_files == 3  # broken.png, tiny.png, bomb.jpg
    assert len(loaded.images) == 4
