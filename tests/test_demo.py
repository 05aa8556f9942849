"""`provgate demo` (interim): says the agent is not built, shows identity and the real
gateway's verdicts from a seeded ledger, the gate refusing bad verdicts, and the camera
label check on a label of each kind."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.broker


def test_demo_runs_to_completion_and_shows_refusals() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "provgate_cli.main", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "not built yet" in out
    assert "all agree (1 distinct)" in out
    assert "ACCEPTED (bug)" not in out
    assert "genuine verdict" in out
    assert "accepted: REJECT" in out
    verdicts = {
        line.split("│")[1].strip(): line
        for line in out.splitlines()
        if "│ in-01" in line or "│ out-01" in line
    }
    assert "PASS" in verdicts["commissioned by its brand, arriving"]
    assert "PASS" in verdicts["received here, leaving"]
    assert (
        "ledger.already_received"
        in verdicts["received here, read again at inbound (copied label?)"]
    )
    assert "ledger.unknown_serial" in verdicts["never commissioned (unknown serial)"]
    assert out.count("refused: bad_mac") == 2
    assert "refused: replayed" in out
    labels = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in out.splitlines()
        if line.count("│") >= 6
    }
    assert labels["genuine"] == "genuine"
    fakes = ["patch flat", "patch missing", "logo distorted", "microtext blurred"]
    fakes += ["wrong font", "off colour", "photocopy"]
    assert {labels[kind] for kind in fakes} == {"suspect"}
    assert labels["black frame (lens covered)"] == "unreadable"
    assert labels["corrupt JPEG"] == "unreadable"
