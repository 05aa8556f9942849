"""The gateway config: defaults, the shipped example, errors with lines, secrets kept secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import DEMO_SITE_SECRET, GateKind, GatewayConfig, load_config
from gatewire.yamlconfig import ConfigError
from hardware.cli import check_config_file
from tests.support.cli import ROOT

EXAMPLE = ROOT / "firmware_configs" / "gateway" / "site.yaml"


def test_no_file_gives_a_runnable_demo_config() -> None:
    config = load_config(None)
    assert (config.site, config.mqtt.enabled, config.http.enabled) == ("demo", True, True)
    assert config.uses_demo_secret
    assert config.site_secret_bytes() == bytes.fromhex(DEMO_SITE_SECRET)


def test_the_shipped_example_is_valid_and_provgate_config_check_knows_it() -> None:
    import provgate_cli.main  # noqa: F401  (registers the gateway config kind)

    config = load_config(EXAMPLE)
    assert config.site == "dc1"
    assert config.gate("out-01").kind is GateKind.OUTBOUND
    assert config.policy.inspection.base_rate == 0.01
    assert "gateway config" in check_config_file(EXAMPLE)


def test_errors_name_the_line_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("site: demo\nmqtt:\n  url: http://nope\n  worker: W1\npolicy:\n  typo: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = {(p.line, p.path) for p in caught.value.problems}
    assert problems == {(3, "mqtt.url"), (4, "mqtt.worker"), (6, "policy.typo")}


def test_a_short_secret_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("site_secret: 00112233445566\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "00112233445566" not in str(caught.value)
    assert "site_secret" in str(caught.value)


def test_secrets_may_live_in_files_and_never_show_in_the_config_repr(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("ab" * 32 + "\n")
    config = GatewayConfig(site_secret=str(secret))
    assert config.site_secret_bytes() == bytes.fromhex("ab" * 32)
    assert not config.uses_demo_secret
    assert str(secret) not in repr(config)
    assert config.inspection_secret_bytes() != config.site_secret_bytes()


def test_unlisted_gates_take_their_kind_from_their_id() -> None:
    config = GatewayConfig()
    assert config.gate("in-09").kind is GateKind.INBOUND
    assert config.gate("out_3").kind is GateKind.OUTBOUND
    assert config.gate("inspection-1").kind is GateKind.INSPECTION
    assert config.gate("cli").kind is GateKind.INSPECTION
    assert config.read_point("in-09") == "urn:provgate:gate:demo:in-09"
