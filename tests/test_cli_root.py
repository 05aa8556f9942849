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
