"""Gate I/O configs: the shipped Raspberry Pi pin map loads, mistakes say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from gatewire.yamlconfig import ConfigError, load_yaml_model, parse_yaml
from hardware.gate_io.config import (
    EncoderPinConfig,
    GpiozeroGateIoConfig,
    InputPinConfig,
    OutputPinConfig,
    SimEncoderConfig,
    SimGateIoConfig,
    StackLightPins,
)
from hardware.gate_io.gpiozero_io import GpiozeroGateIo
from hardware.gate_io.interface import LightColor
from hardware.gate_io.sim import SimGateIo
from hardware.registry import DeviceKind, build_device, parse_device_config

PI_MAP = Path(__file__).resolve().parents[3] / "firmware_configs" / "gate_io" / "raspberry-pi.yaml"


def test_shipped_raspberry_pi_pin_map_loads() -> None:
    config = load_yaml_model(GpiozeroGateIoConfig, PI_MAP)
    assert config.pin_factory == "lgpio"
    assert (config.photo_eye.pin, config.photo_eye.pull, config.photo_eye.active_high) == (
        17,
        "up",
        False,
    )
    assert config.diverter.pin == 27
    assert set(config.stack_light.pins()) == set(LightColor)


@pytest.mark.parametrize(
    "model",
    [
        GpiozeroGateIoConfig,
        SimGateIoConfig,
        InputPinConfig,
        OutputPinConfig,
        StackLightPins,
        EncoderPinConfig,
        SimEncoderConfig,
    ],
)
def test_every_field_has_a_title_and_description(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        assert field.title, name
        assert field.description, name


def problems(tmp_path: Path, text: str) -> str:
    path = tmp_path / "io.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml_model(GpiozeroGateIoConfig, path)
    return str(info.value)


def test_a_pin_used_twice_is_named(tmp_path: Path) -> None:
    text = (
        "type: gpiozero\nphoto_eye: {pin: 17}\ndiverter: {pin: 27}\n"
        "stack_light:\n  red: {pin: 27}\n"
    )
    assert "GPIO27 is used twice: diverter and stack_light.red" in problems(tmp_path, text)


def test_a_pin_off_the_header_is_reported_with_its_line(tmp_path: Path) -> None:
    text = "type: gpiozero\nphoto_eye:\n  pin: 40\ndiverter: {pin: 27}\n"
    assert "io.yaml:3: photo_eye.pin: Input should be less than or equal to 27" in problems(
        tmp_path, text
    )


def test_unknown_pin_factory_lists_the_choices(tmp_path: Path) -> None:
    text = "type: gpiozero\npin_factory: pigpio\nphoto_eye: {pin: 17}\ndiverter: {pin: 27}\n"
    assert "'lgpio', 'rpigpio', 'native' or 'mock'" in problems(tmp_path, text)


def test_default_pulse_must_fit_under_the_safety_cap() -> None:
    with pytest.raises(ValueError, match="max_diverter_pulse_ms"):
        SimGateIoConfig(type="sim_gate_io", diverter_pulse_ms=500, max_diverter_pulse_ms=100)


@pytest.mark.parametrize(
    ("text", "driver"),
    [
        ("io:\n  type: sim_gate_io\n", SimGateIo),
        ("io:\n  type: gpiozero\n  photo_eye: {pin: 5}\n  diverter: {pin: 6}\n", GpiozeroGateIo),
    ],
)
def test_registry_builds_gate_io_from_its_type_tag(text: str, driver: type[object]) -> None:
    data, lines = parse_yaml(text, "gate")
    config = parse_device_config(data["io"], "gate", lines, ("io",), kind=DeviceKind.GATE_IO)
    assert isinstance(build_device(config), driver)
