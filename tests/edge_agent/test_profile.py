"""Gate profiles: the shipped ones load, bad ones are refused with file:line messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.assembly import AssemblySettings
from edge_agent.profile import (
    GateKind,
    GateProfile,
    TriggerMode,
    load_gate_profile,
    parse_gate_profile,
)
from gatewire.messages import Decision
from gatewire.yamlconfig import ConfigError
from hardware.barcode.config import SerialScannerConfig
from hardware.gate_io.config import GpiozeroGateIoConfig, SimGateIoConfig
from hardware.rfid.config import ThingMagicConfig
from provgate_cli.main import app

REPO = Path(__file__).resolve().parents[2]
GATES = REPO / "firmware_configs" / "gates"
INBOUND = GATES / "inbound.yaml"
OUTBOUND = GATES / "outbound.yaml"
KEY_HEX = "ab" * 32

MINIMAL = {
    "gate": {"site": "demo", "id": "in-09", "kind": "inbound", "key_env": "GATE_KEY"},
    "devices": {
        "scanner": {"type": "serial_scanner", "port": "/dev/ttyACM0"},
        "gate_io": {"type": "sim_gate_io"},
    },
    "belt": {"speed_m_s": 1.0, "scan_to_reject_m": 2.0, "window_m": 0.2, "actuation_ms": 50},
    "journal": {"path": "gate.db"},
}


@pytest.fixture
def gates_dir(tmp_path: Path) -> Path:
    """A copy of firmware_configs/ whose gates/ folder tests may write broken files into."""
    root = tmp_path / "firmware_configs"
    root.mkdir()
    for name in ("scanners", "readers", "gate_io"):
        (root / name).symlink_to(REPO / "firmware_configs" / name)
    gates = root / "gates"
    shutil.copytree(GATES, gates)
    return gates


def _edited(gates: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text(encoding="utf-8")
    assert old in text, old
    path = gates / f"edited-{source.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(needle)


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_gate_profile(path)
    return [str(p) for p in info.value.problems]


def test_shipped_inbound_profile_loads_with_its_device_profiles_resolved() -> None:
    profile = load_gate_profile(INBOUND)
    assert (profile.gate.site, profile.gate.id, profile.gate.kind) == (
        "demo",
        "in-01",
        GateKind.INBOUND,
    )
    assert isinstance(profile.devices.scanner, SerialScannerConfig)
    assert profile.devices.scanner.require_aim  # from zebra-ds3608.yaml
    assert isinstance(profile.devices.rfid, ThingMagicConfig)
    assert isinstance(profile.devices.gate_io, GpiozeroGateIoConfig)
    assert profile.vision is not None
    assert not profile.vision.two_frame
    assert profile.deadline_s == pytest.approx(1.5 / 0.5 - 0.080 - 0.050)


def test_shipped_outbound_profile_loads_and_overrides_its_device_profile() -> None:
    profile = load_gate_profile(OUTBOUND)
    assert profile.gate.kind is GateKind.OUTBOUND
    assert profile.devices.rfid is None
    assert [c.name for c in profile.devices.cameras] == ["label-a", "label-b"]
    assert profile.devices.gate_io.diverter_pulse_ms == 100  # the override beats the profile
    assert profile.vision is not None
    assert profile.vision.two_frame
    assert profile.policy.decision("no_id") is Decision.REJECT
    assert profile.deadline_s == pytest.approx(1.2 / 1.5 - 0.040 - 0.060)
    assert 0 < profile.verification_budget_s < profile.deadline_s


def test_an_inline_profile_validates_without_files() -> None:
    profile = GateProfile.model_validate(MINIMAL)
    assert isinstance(profile.devices.gate_io, SimGateIoConfig)
    assert profile.trigger.mode is TriggerMode.PHOTO_EYE
    assert profile.policy.decision("vision_suspect") is Decision.REJECT
    settings = AssemblySettings.from_profile(profile)
    assert settings.window_s == pytest.approx(0.2)
    assert settings.grace_s == pytest.approx(0.020)


def test_a_bad_value_is_reported_at_its_line_with_its_field(gates_dir: Path) -> None:
    path = _edited(gates_dir, INBOUND, "batch_max: 32", "batch_max: 0")
    problems = _problems(path)
    line = _line_of(path, "batch_max: 0")
    assert any(p.startswith(f"{path}:{line}: verification.batch_max:") for p in problems), problems


def test_an_unknown_setting_and_a_bad_kind_are_both_reported(gates_dir: Path) -> None:
    path = _edited(gates_dir, INBOUND, "  kind: inbound ", "  kind: sideways ")
    path.write_text(path.read_text().replace("  margin_ms: 50", "  margn_ms: 50"))
    problems = _problems(path)
    kind_line, typo_line = _line_of(path, "kind: sideways"), _line_of(path, "margn_ms")
    assert any(p.startswith(f"{path}:{kind_line}: gate.kind:") for p in problems), problems
    assert any(
        p.startswith(f"{path}:{typo_line}: verification.margn_ms: unknown setting")
        for p in problems
    ), problems


def test_a_bad_device_override_points_at_the_gate_profile(gates_dir: Path) -> None:
    path = _edited(gates_dir, OUTBOUND, "diverter_pulse_ms: 100", "diverter_pulse_ms: -4")
    problems = _problems(path)
    line = _line_of(path, "diverter_pulse_ms: -4")
    expected = f"{path}:{line}: devices.gate_io.diverter_pulse_ms:"
    assert any(p.startswith(expected) for p in problems), problems


def test_a_bad_inline_device_is_reported_at_its_line(gates_dir: Path) -> None:
    path = _edited(gates_dir, INBOUND, "      fps: 30", "      fps: 30\n      zoom: 2")
    problems = _problems(path)
    line = _line_of(path, "zoom: 2")
    assert any(p.startswith(f"{path}:{line}: devices.cameras.0.zoom:") for p in problems)


def test_a_missing_device_profile_names_the_file(gates_dir: Path) -> None:
    path = _edited(gates_dir, INBOUND, "zebra-ds3608.yaml", "no-such-scanner.yaml")
    (problem,) = _problems(path)
    line = _line_of(path, "no-such-scanner.yaml")
    assert problem.startswith(f"{path}:{line}: devices.scanner.profile: cannot read")
    assert "no-such-scanner.yaml" in problem


def test_a_negative_deadline_names_belt_speed_and_distances(gates_dir: Path) -> None:
    path = _edited(gates_dir, OUTBOUND, "scan_to_reject_m: 1.2 ", "scan_to_reject_m: 0.1 ")
    (problem,) = _problems(path)
    line = _line_of(path, "speed_m_s:")
    assert problem.startswith(f"{path}:{line}: belt: no time to decide")
    for name in ("belt.speed_m_s", "belt.scan_to_reject_m", "belt.actuation_ms", "margin_ms"):
        assert name in problem
    assert "got {" not in problem  # not the whole profile's repr


def test_a_deadline_before_the_window_closes_is_refused() -> None:
    data = {**MINIMAL, "belt": {**MINIMAL["belt"], "window_m": 1.95}}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"no time to verify.*belt\.window_m"):
        parse_gate_profile(data, "gate.yaml")


@pytest.mark.parametrize(
    ("section", "change", "message"),
    [
        ("gate", {"key_file": "/k"}, "exactly one of key_file and key_env"),
        ("gate", {"id": "gateway"}, "the gateway's own id"),
        ("devices", {"scanner": None}, "needs an ID source"),
        ("verification", {"mqtt_url": "http://x"}, "mqtt_url"),
    ],
)
def test_inconsistent_profiles_are_refused(
    section: str, change: dict[str, object], message: str
) -> None:
    data = {**MINIMAL, section: {**MINIMAL.get(section, {}), **change}}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=message):
        parse_gate_profile(data, "gate.yaml")


def test_vision_without_a_camera_is_refused() -> None:
    with pytest.raises(ConfigError, match="vision needs a camera"):
        parse_gate_profile({**MINIMAL, "vision": {}}, "gate.yaml")


def test_the_gate_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    profile = GateProfile.model_validate(MINIMAL)
    assert profile.gate.load_key({"GATE_KEY": KEY_HEX}) == bytes.fromhex(KEY_HEX)
    with pytest.raises(ValueError, match="GATE_KEY is not set"):
        profile.gate.load_key({})
    with pytest.raises(ValueError, match="64 hex digits"):
        profile.gate.load_key({"GATE_KEY": "abc"})
    key_file = tmp_path / "gate.key"
    key_file.write_text(KEY_HEX + "\n")
    gate = {**MINIMAL["gate"], "key_env": None, "key_file": str(key_file)}  # type: ignore[dict-item]
    from_file = GateProfile.model_validate({**MINIMAL, "gate": gate})
    assert from_file.gate.load_key() == bytes.fromhex(KEY_HEX)
    key_file.write_bytes(b"short")
    with pytest.raises(ValueError, match="must hold 64 hex digits or 32 bytes"):
        from_file.gate.load_key()


def test_config_check_accepts_the_shipped_profiles() -> None:
    result = CliRunner().invoke(app, ["config", "check", str(INBOUND), str(OUTBOUND)])
    assert result.exit_code == 0, result.output
    assert "gate profile demo/in-01 (inbound)" in result.stdout
    assert "gate profile demo/out-01 (outbound)" in result.stdout


def test_config_check_exits_2_on_a_broken_profile(gates_dir: Path) -> None:
    path = _edited(gates_dir, INBOUND, "speed_m_s: 0.5", "speed_m_s: fast")
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert f"{path}:{_line_of(path, 'speed_m_s: fast')}: belt.speed_m_s:" in result.output


# --- belt encoder ----------------------------------------------------------------------

SIM_ENCODER = {"type": "sim_gate_io", "encoder": {"pulses_per_s": 2000}}
ENCODED = {
    **MINIMAL,
    "devices": {**MINIMAL["devices"], "gate_io": SIM_ENCODER},  # type: ignore[dict-item]
    "belt": {**MINIMAL["belt"], "encoder": {"pulses_per_m": 2000}},  # type: ignore[dict-item]
}


def test_shipped_outbound_profile_counts_its_belt_encoder_on_a_gpio_input() -> None:
    profile = load_gate_profile(OUTBOUND)
    gate_io = profile.devices.gate_io
    assert isinstance(gate_io, GpiozeroGateIoConfig)
    assert gate_io.encoder is not None
    assert gate_io.encoder.pin == 5
    assert profile.belt.encoder is not None
    assert profile.belt.encoder.pulses_per_m == 2000


def test_a_simulated_encoder_matches_a_belt_encoder() -> None:
    profile = parse_gate_profile(ENCODED, "gate.yaml")
    assert isinstance(profile.devices.gate_io, SimGateIoConfig)
    assert profile.devices.gate_io.encoder is not None


def test_a_belt_encoder_the_gate_io_does_not_count_is_refused_with_the_fix() -> None:
    data = {**ENCODED, "devices": MINIMAL["devices"]}
    with pytest.raises(ConfigError) as info:
        parse_gate_profile(data, "gate.yaml")
    (problem,) = info.value.problems
    assert "gate I/O counts no encoder pulses" in problem.message
    assert "encoder: {pulses_per_s: 2000}" in problem.message  # 1 m/s × 2000 pulses/m


def test_a_gpio_gate_without_its_encoder_input_is_reported_at_belt_encoder(
    gates_dir: Path,
) -> None:
    path = _edited(gates_dir, OUTBOUND, "    encoder: {pin: 5, pull: up}", "")
    (problem,) = _problems(path)
    line = _line_of(path, "  encoder:")
    assert problem.startswith(f"{path}:{line}: belt.encoder: belt encoder:")
    assert "encoder: {pin: N}" in problem


def test_an_encoder_input_without_pulses_per_metre_is_refused() -> None:
    data = {**ENCODED, "belt": MINIMAL["belt"]}
    with pytest.raises(ConfigError, match=r"add belt.encoder: \{pulses_per_m: N\}"):
        parse_gate_profile(data, "gate.yaml")


def test_an_encoder_needs_the_photo_eye_trigger() -> None:
    """A dead encoder is detected while an item blocks the photo eye; with a quiet-gap
    trigger it would leave every item 'not there yet' and never diverted."""
    data = {**ENCODED, "trigger": {"mode": "quiet_gap"}}
    with pytest.raises(ConfigError, match=r"needs trigger\.mode photo_eye"):
        parse_gate_profile(data, "gate.yaml")


def test_more_pulses_than_gpio_callbacks_count_is_refused(gates_dir: Path) -> None:
    path = _edited(gates_dir, OUTBOUND, "pulses_per_m: 2000", "pulses_per_m: 10000")
    (problem,) = _problems(path)
    assert "15000 pulses/s" in problem
    assert "lower pulses_per_m" in problem


def test_config_check_says_how_the_diverter_is_timed() -> None:
    result = CliRunner().invoke(app, ["config", "check", str(INBOUND), str(OUTBOUND)])
    assert "diverter timed at 0.5 m/s" in result.stdout
    assert "diverter timed by the belt encoder (2000 pulses/m)" in result.stdout
