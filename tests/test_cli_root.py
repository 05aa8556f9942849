"""The `provgate` command: help, version, and each package's subcommands mounted."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from typer.testing import CliRunner

from provgate_cli.main import app

runner = CliRunner()


def test_version_prints_the_installed_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"provgate {version('provgate')}"


def test_help_lists_the_subcommands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("version", "id", "demo"):
        assert command in result.stdout


def test_installed_console_script_runs() -> None:
    script = subprocess.run(
        [sys.executable, "-m", "provgate_cli.main", "version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout.startswith("provgate ")


def test_the_cli_loads_no_camera_model_or_simulator_code_until_a_command_needs_it() -> None:
    """`provgate --help` or `provgate verify` should not pay for OpenCV, NumPy, the TFLite
    runtimes, the simulators or the HTTP API (it used to take 2–3 s to start)."""
    heavy = ("cv2", "numpy", "ai_edge_litert", "tflite_runtime", "zxingcpp", "fastapi")
    probe = (
        "import sys, provgate_cli.main\n"
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))\n"
        "print(' '.join(m for m in sys.modules if m.startswith('simulators.site')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split("\n")[:2] == ["", ""], result.stdout
