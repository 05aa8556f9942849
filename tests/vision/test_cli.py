"""`provgate vision eval|check|train` as an operator runs them."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from edge_agent.vision.layout import COUNTERFEIT_KINDS, LabelKind
from provgate_cli.main import app
from simulators.labels import render_sample
from tests.vision.vision_model import model_under_test

runner = CliRunner()


def _runtime() -> str:
    return os.environ.get("PROVGATE_TFLITE_RUNTIME") or "ai_edge_litert"


def test_eval_on_fresh_seeds_meets_every_target_of_the_label_check() -> None:
    # The acceptance check of the shipped model, on the runtime this environment has
    # (make test runs it under ai-edge-litert and again under tflite-runtime 2.14).
    result = runner.invoke(
        app,
        [
            "vision", "eval", "--samples", "400", "--seed", "11", "--json", "--check-targets",
            "--model", str(model_under_test()),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == 400
    assert report["runtime"] == _runtime()
    assert report["meets_targets"] is True, report["target_failures"]
    assert set(report["per_kind_recall"]) == {k.value for k in LabelKind}
    assert report["per_kind_total"][LabelKind.GENUINE] > 150
    assert report["median_ms"] > 0


def test_eval_prints_a_readable_report_with_the_targets() -> None:
    result = runner.invoke(app, ["vision", "eval", "-n", "16", "--seed", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "16 labels (seed 3, 1 frame(s) each)" in result.stdout
    assert "counterfeit accepted" in result.stdout
    assert "(target ≥ 97%)" in result.stdout
    assert "time per frame" in result.stdout


def test_eval_refuses_an_unknown_runtime_and_a_missing_model(tmp_path: Path) -> None:
    result = runner.invoke(app, ["vision", "eval", "-n", "4", "--runtime", "onnx"])
    assert result.exit_code == 2
    assert "--runtime must be one of auto, ai_edge_litert, tflite_runtime" in result.output
    result = runner.invoke(app, ["vision", "eval", "-n", "4", "--model", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def _photo(path: Path, kind: LabelKind, frame: int = 0) -> Path:
    sample = render_sample(5, kind, frames=2)
    ok, data = cv2.imencode(".jpg", sample.frames[frame], [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    path.write_bytes(data.tobytes())
    return path


def test_check_calls_a_genuine_photo_genuine_and_reads_its_datamatrix(tmp_path: Path) -> None:
    photo = _photo(tmp_path / "label.jpg", LabelKind.GENUINE)
    result = runner.invoke(app, ["vision", "check", str(photo), "--json"])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "genuine"
    assert verdict["item_id"] == render_sample(5, LabelKind.GENUINE, frames=1).item_id
    assert verdict["runtime"] == _runtime()


@pytest.mark.parametrize("kind", COUNTERFEIT_KINDS)
def test_check_calls_each_kind_of_fake_suspect(tmp_path: Path, kind: LabelKind) -> None:
    photo = _photo(tmp_path / "label.jpg", kind)
    result = runner.invoke(app, ["vision", "check", str(photo)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("suspect:"), result.stdout


def test_check_with_two_photos_measures_the_film_patch(tmp_path: Path) -> None:
    a = _photo(tmp_path / "a.jpg", LabelKind.PATCH_FLAT, 0)
    b = _photo(tmp_path / "b.jpg", LabelKind.PATCH_FLAT, 1)
    result = runner.invoke(app, ["vision", "check", str(a), str(b), "--json"])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "suspect"
    assert "colour_shift_flat" in verdict["reasons"]
    assert verdict["hue_shift_deg"] < 5


def test_check_gives_no_verdict_for_a_corrupt_photo_and_an_error_for_a_missing_one(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = runner.invoke(app, ["vision", "check", str(broken)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("unreadable: no score")
    assert "corrupt_image" in result.stdout
    result = runner.invoke(app, ["vision", "check", str(tmp_path / "none.jpg")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_train_without_tensorflow_says_how_to_install_it(tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed here: training would run")
    result = runner.invoke(
        app, ["vision", "train", "--synthetic", "100", "--out", str(tmp_path / "m.tflite")]
    )
    assert result.exit_code == 2
    assert "pip install 'provgate[train]'" in result.output


def test_check_refuses_a_file_larger_than_a_camera_frame_unread(tmp_path: Path) -> None:
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as file:
        file.truncate(33 * 1024 * 1024)  # sparse: no disk used
    result = runner.invoke(app, ["vision", "check", str(huge)])
    assert result.exit_code == 2
    assert "larger than a camera frame" in result.output
