"""The camera simulator's rendered-label source: frames of items passing a gate."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
import zxingcpp

from edge_agent.vision.layout import LabelKind
from simulators.camera import SyntheticCamera, dataset_frames, label_frames
from simulators.labels import (
    RenderConfig,
    normalise_item_id,
    render_dataset,
    render_sample,
    sample_seed,
)
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


def test_dataset_frames_stream_the_dataset_two_lights_per_item_and_restart_when_rewound() -> None:
    config = RenderConfig(frame_width=320, frame_height=240, counterfeit_share=0.5)
    expected = list(render_dataset(9, 3, config=config))
    render = dataset_frames(9, config=config)
    for seq in range(6):
        assert np.array_equal(render(seq), expected[seq // 2].frames[seq % 2])
    assert np.array_equal(render(1), expected[0].frames[1])  # rewound: from the start again
    assert np.array_equal(render(5), expected[2].frames[1])


def snapshot(base: str, timeout: float = 20.0) -> bytes:
    """The server's snapshot once it has one: it answers 503 until its first frame is
    rendered (a label takes a while on a loaded machine) and waits only 1 s for it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/snapshot.jpg", timeout=10) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code != 503 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def test_mjpeg_server_main_serves_rendered_labels_with_labels() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.mjpeg_server", "--port", "0", "--labels",
         "--seed", "3", "--fps", "10"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        data = snapshot(url.rsplit("/", 1)[0])
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert frame is not None
        assert frame.shape == (480, 640, 3)
        codes = zxingcpp.read_barcodes(frame, formats=DATAMATRIX)
        assert [code.text[:4] for code in codes] == ["(01)"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:  # never left running after the test
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
    assert code == 0


def test_mjpeg_server_main_refuses_a_counterfeit_share_out_of_range() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "simulators.mjpeg_server", "--labels", "--counterfeit-share", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "counterfeit_share" in done.stderr
