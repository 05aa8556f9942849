"""`provgate agent run`: options, invalid profiles and keys, and a real run on ptys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provgate_cli.main import app
from simulators.broker import MosquittoBroker
from simulators.scanner import SimulatedScanner, generate_items
from simulators.serial_endpoint import PtyEndpoint

runner = CliRunner()
KEY_VAR = "PROVGATE_TEST_GATE_KEY"


def write_profile(tmp_path: Path, *, port: str = "/dev/null", mqtt_url: str = "") -> Path:
    """A valid quiet-gap gate profile with a scanner on ``port`` and simulated gate I/O."""
    url = mqtt_url or "mqtt://127.0.0.1:1"
    path = tmp_path / "gate.yaml"
    path.write_text(
        f"""gate:
  site: test
  id: in-01
  kind: inbound
  key_env: {KEY_VAR}
devices:
  scanner:
    type: serial_scanner
    port: {port}
  gate_io:
    type: sim_gate_io
belt:
  speed_m_s: 2.0
  scan_to_reject_m: 1.0
  window_m: 0.1
  actuation_ms: 50
trigger:
  mode: quiet_gap
  quiet_gap_ms: 30
verification:
  mqtt_url: {url}
journal:
  path: {tmp_path / "gate.db"}
""",
        encoding="utf-8",
    )
    return path


def test_help_lists_the_options() -> None:
    result = runner.invoke(app, ["agent", "run", "--help"])
    assert result.exit_code == 0
    for option in ("--config", "--duration", "--json", "--verbose"):
        assert option in result.stdout


def test_a_broken_profile_is_reported_with_file_and_line_and_exit_2(tmp_path: Path) -> None:
    path = write_profile(tmp_path)
    text = path.read_text(encoding="utf-8").replace("speed_m_s: 2.0", "speed_m_s: fast")
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["agent", "run", "--config", str(path)])
    assert result.exit_code == 2
    line = text.splitlines().index("  speed_m_s: fast") + 1
    assert f"{path}:{line}: belt.speed_m_s:" in result.stderr


def test_a_missing_profile_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["agent", "run", "--config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_a_missing_gate_key_names_the_variable_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_VAR, raising=False)
    result = runner.invoke(app, ["agent", "run", "--config", str(write_profile(tmp_path))])
    assert result.exit_code == 2
    assert KEY_VAR in result.stderr
    assert not (tmp_path / "gate.db").exists(), "nothing may start without a key"


def test_a_malformed_gate_key_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VAR, "abc")
    result = runner.invoke(app, ["agent", "run", "--config", str(write_profile(tmp_path))])
    assert result.exit_code == 2
    assert f"{KEY_VAR} must hold 64 hex digits" in result.stderr


def test_a_run_on_a_simulated_scanner_decides_every_item_and_stops_by_itself(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    endpoint = PtyEndpoint()
    scanner = SimulatedScanner(endpoint, generate_items(5, seed=3), rate=10)
    profile = write_profile(tmp_path, port=endpoint.url, mqtt_url=mosquitto.url)
    env = {**os.environ, KEY_VAR: "ab" * 32}
    command = [sys.executable, "-m", "provgate_cli.main", "agent", "run"]
    scanner.start()
    try:
        done = subprocess.run(
            [*command, "--config", str(profile), "--duration", "2", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        assert scanner.wait(5), "the agent never opened the scanner port"
    finally:
        scanner.stop()
        endpoint.close()
    assert done.returncode == 0, done.stderr
    counters = json.loads(done.stdout.strip().splitlines()[-1])
    assert counters["reason"] == "duration reached"
    assert counters["items"] == 5
    # No gateway answers on this broker: fail closed, every item held, none passed.
    assert counters["held"] == 5
    assert counters["passed"] == 0
