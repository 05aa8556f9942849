"""OpenCvCamera on a network camera (the MJPEG simulator): order, reconnect, time windows."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import numpy as np
import pytest

from hardware.camera.driver import OpenCvCamera
from hardware.camera.frames import Frame
from hardware.health import DeviceState
from simulators.camera import placeholder_label, read_seq_code
from simulators.mjpeg_server import MjpegServer
from tests.hardware.camera.support import FAST, camera_config
from tests.support.waiting import wait_until


@pytest.fixture
def server() -> Iterator[MjpegServer]:
    with MjpegServer(placeholder_label(160, 120), fps=50) as mjpeg:
        yield mjpeg


def code(frame: Frame | None) -> int:
    assert frame is not None
    return read_seq_code(np.asarray(frame.image))


def newest_seq(camera: OpenCvCamera) -> int:
    newest = camera.buffer.latest()
    return -1 if newest is None else newest.seq


def next_frames(camera: OpenCvCamera, count: int) -> list[Frame]:
    frames = [camera.get(2.0) for _ in range(count)]
    assert all(f is not None for f in frames)
    return [f for f in frames if f is not None]


def test_stream_frames_arrive_in_order_without_gaps(server: MjpegServer) -> None:
    with OpenCvCamera(camera_config(server.url)) as camera:
        assert camera.wait_healthy(5.0)
        frames = next_frames(camera, 20)
    codes = [code(f) for f in frames]
    assert codes == list(range(codes[0], codes[0] + 20))
    assert [f.seq for f in frames] == list(range(frames[0].seq, frames[0].seq + 20))
    assert all(b.ts > a.ts for a, b in itertools.pairwise(frames))
    assert frames[0].source == server.url
    health = camera.health()
    assert health.counters["read_failures"] == 0
    assert health.counters["dropped"] == 0


def test_dropped_stream_is_reported_then_resumes_without_restart(server: MjpegServer) -> None:
    camera = OpenCvCamera(camera_config(server.url), backoff=FAST)
    with camera:
        before = next_frames(camera, 3)
        server.drop()  # connections closed, new ones refused with 503
        assert wait_until(lambda: camera.health().state is DeviceState.UNHEALTHY)
        assert wait_until(lambda: camera.health().counters["open_failures"] >= 1)
        assert camera.health().last_error
        server.resume()
        assert camera.wait_healthy(5.0)
        after = next_frames(camera, 3)
    counters = camera.health().counters
    assert counters["reconnects"] == 1
    assert counters["disconnects"] == 1
    assert counters["read_failures"] >= 1
    assert after[0].seq > before[-1].seq  # numbering goes on across the reconnect
    assert code(after[0]) > code(before[-1])


def test_stalled_stream_times_out_and_is_reopened(server: MjpegServer) -> None:
    config = camera_config(server.url, read_timeout_s=0.3, open_timeout_s=0.3)
    camera = OpenCvCamera(config, backoff=FAST)
    with camera:
        next_frames(camera, 2)
        server.stall()  # connection stays open, nothing is sent
        assert wait_until(lambda: camera.health().state is DeviceState.UNHEALTHY, 3.0)
        assert "stalled" in (camera.health().last_error or "")
        server.resume()
        assert wait_until(lambda: camera.health().counters["reconnects"] == 1, 5.0)
        next_frames(camera, 2)


def test_camera_that_is_down_at_start_is_opened_when_it_comes_up(server: MjpegServer) -> None:
    server.drop()
    camera = OpenCvCamera(camera_config(server.url), backoff=FAST)
    with camera:
        assert wait_until(lambda: camera.health().counters["open_failures"] >= 2)
        assert camera.health().state is DeviceState.UNHEALTHY
        server.resume()
        assert camera.wait_healthy(5.0)
        assert camera.get(2.0) is not None
    assert camera.health().counters["reconnects"] == 0  # never lost, only late


def test_frames_between_picks_the_frames_taken_while_an_item_passed(
    server: MjpegServer,
) -> None:
    with OpenCvCamera(camera_config(server.url, buffer_frames=200)) as camera:
        assert camera.wait_healthy(5.0)
        assert camera.get(2.0) is not None
        enter = time.monotonic()
        time.sleep(0.2)
        leave = time.monotonic()
        window = camera.frames_between(enter, leave, wait_s=1.0)
    expected = (leave - enter) * 50  # about 10 at 50 fps (more if the sleep ran long)
    assert 0.5 * expected <= len(window) <= 1.5 * expected
    assert all(enter <= f.ts <= leave for f in window)
    codes = [code(f) for f in window]
    assert codes == list(range(codes[0], codes[0] + len(codes)))


def test_a_slow_reader_loses_the_oldest_frames_and_they_are_counted(
    server: MjpegServer,
) -> None:
    with OpenCvCamera(camera_config(server.url, buffer_frames=3)) as camera:
        first = camera.get(2.0)
        assert first is not None
        # frames keep arriving (about 15 in 0.3 s); the buffer keeps 3
        assert wait_until(lambda: newest_seq(camera) >= first.seq + 6)
        second = camera.get(2.0)
        assert second is not None
    assert second.seq > first.seq + 3
    assert camera.health().counters["dropped"] == second.seq - first.seq - 1
