"""Reader config: validated like every device config, and the shipped profile loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewire.yamlconfig import ConfigError, load_yaml_model
from hardware.registry import DeviceKind, build_device, drivers, parse_device_config
from hardware.rfid.commands import Region
from hardware.rfid.config import ThingMagicConfig
from hardware.rfid.driver import ThingMagicReader

PROFILE = Path(__file__).parents[3] / "firmware_configs" / "readers" / "thingmagic-m6e-nano.yaml"


def config(**fields: object) -> ThingMagicConfig:
    return ThingMagicConfig.model_validate({"type": "thingmagic_mercury", "port": "x", **fields})


def test_the_m6e_nano_profile_validates() -> None:
    profile = load_yaml_model(ThingMagicConfig, PROFILE)
    assert profile.model == "m6e_nano"
    assert profile.baudrate == 115200
    assert profile.region_code is Region.NA2
    assert profile.read_power_dbm <= 27
    assert profile.antennas == (1,)
    assert profile.notes


def test_a_misspelt_setting_is_reported_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "reader.yaml"
    bad.write_text("type: thingmagic_mercury\nport: /dev/ttyUSB0\nread_powr_dbm: 20\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml_model(ThingMagicConfig, bad)
    assert f"{bad}:3: read_powr_dbm: unknown setting" in str(caught.value)


def test_region_names_are_mercuryapis_and_case_insensitive() -> None:
    assert config(region="eu3").region_code is Region.EU3
    assert config(region="open").region_code is Region.OPEN
    with pytest.raises(ValueError, match="unknown region 'Mars'"):
        config(region="Mars")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"antennas": [0]}, "1 to 16"),
        ({"antennas": [1, 1]}, "must not repeat"),
        ({"antennas": []}, "at least 1"),
        ({"read_power_dbm": 40}, "less than or equal to 31.5"),
        ({"baudrate": 1200}, "115200"),
        ({"window_s": 0}, "greater than 0"),
    ],
)
def test_impossible_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(**fields)


def test_every_field_has_a_title_and_description() -> None:
    for name, field in ThingMagicConfig.model_fields.items():
        assert field.title, name
        assert field.description, name


def test_the_driver_registers_under_its_type_tag() -> None:
    spec = drivers()["thingmagic_mercury"]
    assert spec.kind is DeviceKind.RFID
    assert spec.config is ThingMagicConfig
    parsed = parse_device_config(
        {"type": "thingmagic_mercury", "port": "socket://127.0.0.1:1"}, kind=DeviceKind.RFID
    )
    device = build_device(parsed)
    assert isinstance(device, ThingMagicReader)
    assert device.health().state == "stopped"
