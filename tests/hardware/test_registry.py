"""Driver registry: configs pick their driver by `type`, and mistakes name the line."""

from __future__ import annotations

import pytest

from gatewire.yamlconfig import ConfigError, parse_yaml
from hardware.registry import DeviceKind, drivers, parse_device_config


def test_every_device_kind_has_a_registered_driver() -> None:
    kinds = {spec.kind for spec in drivers().values()}
    assert kinds == set(DeviceKind)


def test_unknown_type_is_reported_on_the_line_of_the_type_key() -> None:
    data, lines = parse_yaml("name: x\nport: /dev/ttyACM0\ntype: serial_scaner\n", "p.yaml")
    with pytest.raises(ConfigError) as caught:
        parse_device_config(data, "p.yaml", lines)
    (problem,) = caught.value.problems
    assert problem.line == 3
    assert problem.path == "type"
    assert "serial_scaner" in problem.message
    assert "serial_scanner" in problem.message


def test_missing_type_says_it_is_missing_and_lists_the_choices() -> None:
    data, lines = parse_yaml("name: x\nport: /dev/ttyACM0\n", "p.yaml")
    with pytest.raises(ConfigError) as caught:
        parse_device_config(data, "p.yaml", lines)
    assert "missing `type`" in str(caught.value)
    assert "thingmagic_mercury" in str(caught.value)


def test_wrong_field_in_a_known_type_names_file_line_and_field() -> None:
    text = "type: serial_scanner\nname: s\nport: /dev/ttyACM0\nbaudrate: fast\n"
    data, lines = parse_yaml(text, "p.yaml")
    with pytest.raises(ConfigError) as caught:
        parse_device_config(data, "p.yaml", lines)
    assert str(caught.value.problems[0]).startswith("p.yaml:4: baudrate:")
