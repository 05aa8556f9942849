"""Synthetic camera frames and the helpers that store them as folders and video files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from hardware.camera.config import OpenCvCameraConfig
from hardware.camera.driver import OpenCvCamera
from simulators.camera import (
    SyntheticCamera,
    SyntheticFrameSource,
    draw_seq_code,
    placeholder_label,
    read_seq_code,
    write_image_folder,
    write_video_file,
)


def test_placeholder_frames_are_bgr_and_the_label_moves() -> None:
    camera = SyntheticCamera(width=320, height=240)
    first, later = camera.frame(0), camera.frame(5)
    assert first.shape == (240, 320, 3)
    assert first.dtype == np.uint8
    assert not np.array_equal(first, later)


@pytest.mark.parametrize("seq", [0, 1, 4242, 65535])
def test_frame_number_survives_jpeg_compression(seq: int) -> None:
    image = placeholder_label(160, 120)(seq)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    assert read_seq_code(np.asarray(decoded, dtype=np.uint8)) == seq


def test_renderer_is_pluggable_and_checked() -> None:
    def solid(seq: int) -> NDArray[np.uint8]:
        image = np.full((64, 200, 3), seq, np.uint8)
        draw_seq_code(image, seq)
        return image

    camera = SyntheticCamera(solid)
    assert [read_seq_code(f) for f in camera.frames(3, start=7)] == [7, 8, 9]
    with pytest.raises(ValueError, match="BGR uint8"):
        SyntheticCamera(lambda seq: np.zeros((8, 8), np.uint8)).frame(0)


def test_image_folder_round_trips_through_opencv(tmp_path: Path) -> None:
    frames = list(SyntheticCamera(width=160, height=120).frames(3))
    paths = write_image_folder(tmp_path / "shots", frames)
    assert [p.name for p in paths] == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    for path, frame in zip(paths, frames, strict=True):
        decoded = cv2.imread(str(path))
        assert decoded is not None
        assert np.array_equal(decoded, frame)  # PNG is lossless


def test_video_file_is_mjpg_avi_that_opencv_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "belt.avi"
    frames = SyntheticCamera(width=160, height=120).frames(5)
    assert write_video_file(path, frames, fps=12.5) == 5
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.5)
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC))
        assert fourcc.to_bytes(4, "little") == b"MJPG"
        codes = []
        while True:
            ok, image = capture.read()
            if not ok:
                break
            codes.append(read_seq_code(np.asarray(image, dtype=np.uint8)))
    finally:
        capture.release()
    assert codes == [0, 1, 2, 3, 4]


def synthetic_camera_config(**overrides: object) -> OpenCvCameraConfig:
    return OpenCvCameraConfig.model_validate(
        {"type": "opencv_camera", "source": "synthetic", "source_kind": "stream", **overrides}
    )


def test_synthetic_source_feeds_the_camera_driver_in_process_at_its_rate() -> None:
    render = placeholder_label(160, 120)
    camera = OpenCvCamera(
        synthetic_camera_config(),
        open_source=lambda config: SyntheticFrameSource(render, fps=100),
    )
    with camera:
        frames = [camera.get(1.0) for _ in range(10)]
    got = [f for f in frames if f is not None]
    assert [read_seq_code(np.asarray(f.image)) for f in got] == list(
        range(got[0].seq, 10 + got[0].seq)
    )
    assert got[-1].ts - got[0].ts == pytest.approx(0.09, abs=0.04)
    assert got[0].source.startswith("synthetic#")


def test_synthetic_source_with_a_count_ends_like_a_file() -> None:
    render = placeholder_label(160, 120)
    camera = OpenCvCamera(
        synthetic_camera_config(pace=False),
        open_source=lambda config: SyntheticFrameSource(render, count=4),
    )
    with camera:
        assert camera.wait_ended(2.0)
    assert camera.health().counters["frames"] == 4
