"""``provgate gateway run --mqtt-only`` as a child process of a benchmark (a light module:
importing it loads nothing of the gateway into the benchmark's own process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["GatewayProcess"]


class GatewayProcess:
    """``provgate gateway run --mqtt-only`` in a child process."""

    def __init__(self, config: Path, log: Path) -> None:
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "provgate_cli.main",
                "gateway",
                "run",
                "--mqtt-only",
                "--config",
                str(config),
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("gateway ready"):
            self.close()
            raise RuntimeError(f"gateway did not start (see {log})")

    def close(self) -> None:
        """Stop it (SIGTERM, as an operator would)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
