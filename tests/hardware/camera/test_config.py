"""OpenCvCameraConfig: what a source is, defaults, and mistakes that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gatewire.yamlconfig import ConfigError, load_yaml_model, parse_yaml
from hardware.camera.config import OpenCvCameraConfig, SourceKind, classify_source
from hardware.camera.driver import OpenCvCamera
from hardware.registry import DeviceKind, build_device, parse_device_config


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("0", SourceKind.DEVICE),
        ("/dev/video2", SourceKind.DEVICE),
        ("/dev/v4l/by-id/usb-cam-video-index0", SourceKind.DEVICE),
        ("rtsp://10.0.0.5:554/stream1", SourceKind.STREAM),
        ("http://127.0.0.1:8081/stream.mjpg", SourceKind.STREAM),
        ("/tmp/no-such-dir/belt.avi", SourceKind.FILE),
    ],
)
def test_source_kind_follows_the_form_of_the_source(source: str, kind: SourceKind) -> None:
    assert classify_source(source) is kind


def test_an_existing_directory_is_an_image_folder(tmp_path: Path) -> None:
    assert classify_source(str(tmp_path)) is SourceKind.FOLDER
    assert classify_source(str(tmp_path), "file") is SourceKind.FILE


def test_defaults_need_only_type_and_source() -> None:
    config = OpenCvCameraConfig.model_validate({"type": "opencv_camera", "source": "0"})
    assert (config.name, config.buffer_frames, config.pace, config.loop) == (
        "camera",
        30,
        True,
        False,
    )
    assert config.kind is SourceKind.DEVICE


def test_every_field_has_a_title_and_description() -> None:
    for name, field in OpenCvCameraConfig.model_fields.items():
        assert field.title, name
        assert field.description, name


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"source": "ftp://cam/x"}, "URL scheme not supported"),
        ({"source": "0", "width": 640}, "width and height"),
        ({"source": "0", "fourcc": "MJPEG"}, "at most 4"),
        ({"source": "rtsp://cam/1", "ffmpeg_options": "rtsp_transport=tcp"}, "key;value"),
        ({"source": "0", "backoff_initial_s": 20, "backoff_max_s": 5}, "backoff_initial_s"),
        ({"source": "0", "buffer_frames": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_settings_are_rejected_with_a_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OpenCvCameraConfig.model_validate({"type": "opencv_camera", **fields})


def test_yaml_typo_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "camera.yaml"
    path.write_text("type: opencv_camera\nsource: '0'\nbufer_frames: 10\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"camera\.yaml:3: bufer_frames: unknown setting"):
        load_yaml_model(OpenCvCameraConfig, path)


def test_registry_builds_the_camera_from_its_type_tag() -> None:
    data, lines = parse_yaml("camera:\n  type: opencv_camera\n  source: /dev/video0\n", "gate")
    config = parse_device_config(data["camera"], "gate", lines, ("camera",), kind=DeviceKind.CAMERA)
    assert isinstance(config, OpenCvCameraConfig)
    assert isinstance(build_device(config), OpenCvCamera)
