"""OpenCvCamera on video files and image folders: order, pacing, end, loop, bad files."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

from hardware.camera.driver import OpenCvCamera
from hardware.camera.frames import Frame
from hardware.health import DeviceState
from simulators.camera import (
    SyntheticCamera,
    placeholder_label,
    read_seq_code,
    write_image_folder,
    write_video_file,
)
from tests.hardware.camera.support import FAST, camera_config
from tests.support.waiting import wait_until

SMALL = SyntheticCamera(placeholder_label(160, 120))


def collect(camera: OpenCvCamera, timeout: float = 5.0) -> list[Frame]:
    """Every frame until the file or folder ends."""
    assert camera.wait_ended(timeout)
    return camera.buffer.frames_between(float("-inf"), float("inf"))


def test_folder_frames_come_in_natural_name_order(tmp_path: Path) -> None:
    for seq in (2, 10, 1):  # "img10" sorts after "img2" by number, not by text
        write_image_folder(tmp_path, [SMALL.frame(seq)], prefix=f"img{seq}_")
    config = camera_config(str(tmp_path), pace=False)
    with OpenCvCamera(config) as camera:
        frames = collect(camera)
    assert [read_seq_code(np.asarray(f.image)) for f in frames] == [1, 2, 10]
    assert [f.seq for f in frames] == [0, 1, 2]
    assert frames[0].source.endswith("img1_00000.png")
    assert camera.health().state is DeviceState.STOPPED
    assert camera.ended()


def test_corrupt_and_vanished_images_are_counted_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = write_image_folder(tmp_path, SMALL.frames(6), suffix=".jpg")
    paths[1].write_bytes(b"\xff\xd8not really a jpeg")
    paths[3].write_bytes(paths[3].read_bytes()[:300])  # truncated
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    (tmp_path / "empty.png").write_bytes(b"")
    config = camera_config(str(tmp_path), fps=20)
    with caplog.at_level(logging.WARNING), OpenCvCamera(config) as camera:
        assert camera.wait_healthy(5.0)  # the folder is listed
        paths[5].unlink()  # and then an image vanishes before it is read
        frames = collect(camera)
    assert [read_seq_code(np.asarray(f.image)) for f in frames] == [0, 2, 4]
    assert camera.health().counters["corrupt"] == 4
    assert len([r for r in caplog.records if "corrupt" in r.getMessage()]) == 1  # one burst


def test_video_file_is_paced_at_its_own_frame_rate(tmp_path: Path) -> None:
    video = tmp_path / "belt.avi"
    assert write_video_file(video, SMALL.frames(6), fps=25.0) == 6
    with OpenCvCamera(camera_config(str(video))) as camera:
        frames = collect(camera)
    assert [read_seq_code(np.asarray(f.image)) for f in frames] == list(range(6))
    # 40 ms apart, like a 25 fps camera: never sooner (the pacer does not burst to catch
    # up), and most gaps on time; a frame the camera thread took late (a loaded machine)
    # makes one gap longer and may shorten the next
    since_first = [f.ts - frames[0].ts for f in frames]
    assert all(t >= i * 0.04 - 0.01 for i, t in enumerate(since_first)), since_first
    assert float(np.median(np.diff(since_first))) == pytest.approx(0.04, abs=0.01)


def test_configured_fps_overrides_the_file_rate(tmp_path: Path) -> None:
    video = tmp_path / "belt.avi"
    write_video_file(video, SMALL.frames(5), fps=5.0)
    with OpenCvCamera(camera_config(str(video), fps=100)) as camera:
        frames = collect(camera)
    gaps = np.diff([f.ts for f in frames])
    assert frames[-1].ts - frames[0].ts >= 0.04 - 0.01  # paced: 10 ms apart
    assert float(np.median(gaps)) < 0.1  # at 100 fps, not the file's 5 fps (200 ms)


def test_a_looping_file_starts_again_and_keeps_numbering(tmp_path: Path) -> None:
    video = tmp_path / "loop.avi"
    write_video_file(video, SMALL.frames(3), fps=25.0)
    config = camera_config(str(video), loop=True, pace=False, buffer_frames=100)
    with OpenCvCamera(config) as camera:
        assert wait_until(lambda: camera.health().counters["frames"] >= 9)
    frames = camera.buffer.frames_between(float("-inf"), float("inf"))[:9]
    assert [read_seq_code(np.asarray(f.image)) for f in frames] == [0, 1, 2] * 3
    assert [f.seq for f in frames] == list(range(9))
    assert camera.health().counters["loops"] >= 2
    assert not camera.ended()


def test_an_undecodable_frame_in_a_video_file_is_skipped_and_counted(tmp_path: Path) -> None:
    video = tmp_path / "damaged.avi"
    write_video_file(video, SMALL.frames(8), fps=25.0)
    data = bytearray(video.read_bytes())
    chunks = [i for i in range(len(data) - 4) if data[i : i + 4] == b"00dc"]
    fourth = chunks[3]  # the first few chunk tags are in the header list
    data[fourth + 16 : fourth + 400] = b"\x55" * 384
    video.write_bytes(bytes(data))
    with OpenCvCamera(camera_config(str(video), pace=False)) as camera:
        frames = collect(camera)
    assert len(frames) == 7
    assert camera.health().counters["corrupt"] == 1
    assert camera.health().counters["read_failures"] == 0


def test_a_missing_file_is_retried_until_it_appears(tmp_path: Path) -> None:
    video = tmp_path / "later.avi"
    camera = OpenCvCamera(camera_config(str(video), pace=False), backoff=FAST)
    with camera:
        assert wait_until(lambda: camera.health().counters["open_failures"] >= 2)
        health = camera.health()
        assert health.state is DeviceState.UNHEALTHY
        assert "later.avi" in (health.last_error or "")
        write_video_file(tmp_path / "tmp.avi", SMALL.frames(2), fps=25.0)
        (tmp_path / "tmp.avi").rename(video)
        assert camera.wait_ended(5.0)
    assert camera.health().counters["frames"] == 2


def test_a_loop_with_nothing_decodable_backs_off_instead_of_spinning(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    config = camera_config(str(tmp_path), loop=True)
    camera = OpenCvCamera(config, backoff=FAST)
    with camera:
        started = time.monotonic()
        assert wait_until(lambda: camera.health().counters["corrupt"] >= 1)
        time.sleep(0.3)
        elapsed = time.monotonic() - started  # 0.3 s, more if the camera thread started late
    counters = camera.health().counters
    assert 1 <= counters["corrupt"] <= 20 * elapsed / 0.3  # a few passes, not thousands
    assert camera.health().state is DeviceState.STOPPED


def test_frames_are_read_only_bgr_with_capture_times(tmp_path: Path) -> None:
    gray = np.full((120, 160), 200, np.uint8)
    write_image_folder(tmp_path, [gray, gray])
    before_wall = time.time()
    with OpenCvCamera(camera_config(str(tmp_path), pace=False, name="gate1-cam")) as camera:
        frames = collect(camera)
    first = frames[0]
    assert first.image.shape == (120, 160, 3)
    assert first.image.dtype == np.uint8
    assert (first.width, first.height, first.camera) == (160, 120, "gate1-cam")
    assert first.ts <= frames[1].ts <= time.monotonic()
    assert before_wall <= first.wall_ts <= time.time()
    with pytest.raises(ValueError, match="read-only"):
        first.image[0, 0, 0] = 1


def test_a_failing_frame_callback_is_counted_and_capture_goes_on(tmp_path: Path) -> None:
    write_image_folder(tmp_path, SMALL.frames(3))
    seen: list[int] = []

    def on_frame(frame: Frame) -> None:
        seen.append(frame.seq)
        raise RuntimeError("consumer bug")

    with OpenCvCamera(camera_config(str(tmp_path), pace=False), on_frame=on_frame) as camera:
        assert camera.wait_ended(5.0)
    assert seen == [0, 1, 2]
    assert camera.health().counters["callback_errors"] == 3


def test_a_missing_v4l2_device_is_unhealthy_not_fatal() -> None:
    camera = OpenCvCamera(camera_config("/dev/video-provgate-absent"), backoff=FAST)
    with camera:
        assert wait_until(lambda: camera.health().counters["open_failures"] >= 2)
        assert camera.health().state is DeviceState.UNHEALTHY
        assert camera.latest() is None
    assert camera.health().state is DeviceState.STOPPED
