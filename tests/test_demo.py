"""`provgate demo`: the gates run on embedded defaults and the summary says what happened.

The item-by-item checks of a demo run (and --duration, --json) are in test_e2e_site.py;
these pin the command line, Ctrl-C and failures to start.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provgate_cli.main import app

pytestmark = pytest.mark.broker


ENV = {"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/bin"}


def _demo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provgate_cli.main", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=ENV,
    )


def _processes_naming(text: str) -> list[str]:
    """Command lines of running processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("mqtt://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def test_a_short_demo_shows_each_gate_and_a_summary_checked_against_the_truth() -> None:
    result = _demo("--gates", "1", "--items", "10", "--rate", "8", "--no-ui", "--seed", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "in-01 (inbound) done: 10/10 items decided" in out
    assert "✓ counterfeits past the diverter: 0" in out
    assert "✓ every item decided and journaled once: 10/10" in out
    assert "✓ diverter fired for exactly the items rejected or held in time" in out
    assert "✓ gate events in the ledger once each: 10/10" in out
    assert "genuine" in out  # the truth table names what the items really were


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--items", "5", "--duration", "2"), "--items and --duration exclude each other"),
        (("--gates", "0"), "--gates"),
        (("--counterfeit-rate", "1.5"), "--counterfeit-rate"),
        (("--mqtt", "http://x"), "--mqtt: broker URL must start with mqtt://"),
        (("--broker", "rabbit"), "--broker must be one of auto, mosquitto, embedded"),
        (("--broker", "embedded", "--mqtt", "mqtt://h"), "--mqtt and --broker exclude"),
    ],
)
def test_bad_options_exit_2_naming_the_problem(args: tuple[str, ...], message: str) -> None:
    result = CliRunner().invoke(app, ["demo", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_keep_refuses_a_directory_that_holds_a_run_already(tmp_path: Path) -> None:
    (tmp_path / "in-01.journal.db").write_text("")
    result = CliRunner().invoke(app, ["demo", "--keep", str(tmp_path)])
    assert result.exit_code == 2
    assert "give a new or empty directory" in result.output


def test_ctrl_c_stops_every_part_and_exits_130_with_a_partial_summary(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    demo = subprocess.Popen(
        [
            *(sys.executable, "-m", "provgate_cli.main", "demo", "--gates", "1"),
            *("--items", "30", "--rate", "3", "--no-ui", "--keep", str(run_dir)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        assert demo.stdout is not None
        seen = []
        for line in demo.stdout:
            seen.append(line)
            if "belts running" in line:
                break
        broker = re.search(r"mqtt://[\d.]+:\d+", "".join(seen))
        assert broker is not None, "".join(seen)
        time.sleep(1.0)
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert demo.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert "interrupted: a partial run" in out
    assert "✓ counterfeits past the diverter: 0" in out
    assert _processes_naming(str(run_dir)) == []  # gates and gateway stopped
    assert not _port_open(broker.group())  # the private broker too
    result = json.loads((run_dir / "in-01.result.json").read_text())
    assert result["summary"]["stopped_early"] is True
    assert 0 < result["summary"]["decided"] == result["summary"]["on_belt"] < 30


def test_an_unreachable_broker_fails_the_start_naming_it_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"mqtt://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening
        result = _demo("--gates", "1", "--items", "2", "--mqtt", url, "--keep", str(tmp_path / "r"))
    assert result.returncode == 1
    assert f"no broker at {url}" in result.stdout
    assert _processes_naming(str(tmp_path / "r")) == []
