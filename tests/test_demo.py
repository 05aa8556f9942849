"""`provgate demo` (interim): says the pipeline is not built, shows identity and verdicts."""

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
    assert "accepted: HOLD" in out
    assert out.count("refused: bad_mac") == 2
    assert "refused: replayed" in out
