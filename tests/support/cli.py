"""Running ``provgate`` as a child process in tests."""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROVGATE = (sys.executable, "-m", "provgate_cli.main")


@contextmanager
def provgate(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``provgate ARGS`` as a child process with piped output; killed if still running."""
    with subprocess.Popen(
        [*PROVGATE, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)


def first_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The first stdout line of ``proc`` (the simulator's URL), waiting for it."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"no URL from {proc.args!r}: {err}")
    return line.strip()
