"""SerialScannerConfig: the shipped device profiles load, and mistakes say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewire.yamlconfig import ConfigError, load_yaml_model, parse_yaml
from hardware.barcode.config import SerialScannerConfig
from hardware.barcode.driver import SerialScanner
from hardware.registry import DeviceKind, build_device, parse_device_config

PROFILES = Path(__file__).resolve().parents[3] / "firmware_configs" / "scanners"


@pytest.mark.parametrize("name", ["honeywell-xenon-1950g.yaml", "zebra-ds3608.yaml"])
def test_shipped_scanner_profile_loads_with_aim_cr_and_installer_notes(name: str) -> None:
    config = load_yaml_model(SerialScannerConfig, PROFILES / name)
    assert config.type == "serial_scanner"
    assert config.require_aim is True
    assert config.suffix_bytes == b"\r"
    assert "AIM" in config.notes
    assert config.port.startswith("/dev/")


def test_defaults_need_only_type_and_port() -> None:
    config = SerialScannerConfig.model_validate({"type": "serial_scanner", "port": "/dev/ttyACM0"})
    assert (config.suffix, config.prefix, config.baudrate) == ("CR", "", 115200)
    assert config.dedup_window_s == 1.0
    assert config.max_line_length == 512


def test_every_field_has_a_title_and_description() -> None:
    for name, field in SerialScannerConfig.model_fields.items():
        assert field.title, name
        assert field.description, name


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scanner.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_yaml_model(SerialScannerConfig, write(tmp_path, text))
    return str(info.value)


def test_misspelt_setting_is_reported_with_its_line(tmp_path: Path) -> None:
    text = "type: serial_scanner\nport: /dev/ttyACM0\nsufix: CR\n"
    assert "scanner.yaml:3: sufix: unknown setting" in problems(tmp_path, text)


def test_unknown_suffix_names_the_allowed_values(tmp_path: Path) -> None:
    message = problems(tmp_path, "type: serial_scanner\nport: /dev/ttyACM0\nsuffix: TAB\n")
    assert "suffix" in message
    assert "'CR', 'LF' or 'CRLF'" in message


def test_port_that_is_neither_a_path_nor_a_url_says_what_is_expected(tmp_path: Path) -> None:
    message = problems(tmp_path, "type: serial_scanner\nport: ttyACM0\n")
    assert "scanner.yaml:2: port:" in message
    assert "socket://host:port" in message


@pytest.mark.parametrize(
    "port", ["/dev/ttyACM0", "socket://127.0.0.1:7000", "rfc2217://host:4000", "COM3"]
)
def test_device_paths_and_pyserial_urls_are_accepted_as_port(port: str) -> None:
    config = SerialScannerConfig.model_validate({"type": "serial_scanner", "port": port})
    assert config.port == port


def test_prefix_with_a_line_terminator_is_refused(tmp_path: Path) -> None:
    message = problems(tmp_path, 'type: serial_scanner\nport: /dev/x\nprefix: "\\r"\n')
    assert "must not contain CR or LF" in message


def test_control_character_prefix_from_double_quoted_yaml_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, 'type: serial_scanner\nport: /dev/x\nprefix: "\\x02"\n')
    assert load_yaml_model(SerialScannerConfig, path).prefix_bytes == b"\x02"


def test_negative_dedup_window_is_refused(tmp_path: Path) -> None:
    message = problems(tmp_path, "type: serial_scanner\nport: /dev/x\ndedup_window_s: -1\n")
    assert "dedup_window_s" in message
    assert "greater than or equal to 0" in message


def test_registry_builds_the_serial_scanner_from_its_type_tag(tmp_path: Path) -> None:
    path = write(tmp_path, "barcode:\n  type: serial_scanner\n  port: /dev/ttyACM0\n")
    data, lines = parse_yaml(path.read_text(), str(path))
    config = parse_device_config(
        data["barcode"], str(path), lines, ("barcode",), kind=DeviceKind.BARCODE
    )
    assert isinstance(config, SerialScannerConfig)
    assert isinstance(build_device(config), SerialScanner)
