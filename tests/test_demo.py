"""`provgate demo`: the gates run on embedded defaults and the summary says what happened.

The item-by-item checks of a demo run are in test_e2e_site.py; these pin the command line.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.broker


def _demo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provgate_cli.main", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/bin"},
    )


def test_a_short_demo_shows_each_gate_and_a_summary_checked_against_the_truth() -> None:
    result = _demo("--gates", "1", "--items", "10", "--rate", "8", "--no-ui", "--seed", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "in-01 (inbound) done: 10/10 items" in out
    assert "✓ counterfeits passed: 0" in out
    assert "✓ every item decided and journaled: 10/10" in out
    assert "✓ gate events in the ledger once each: 10/10" in out
    assert "genuine" in out  # the truth table names what the items really were


def test_duration_sets_the_items_from_the_rate_and_json_prints_only_the_summary() -> None:
    result = _demo("--gates", "1", "--duration", "1", "--rate", "6", "--json", "--seed", "5")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["items"] == 6
    assert set(summary) >= {
        "items",
        "passed",
        "rejected",
        "held",
        "counterfeits",
        "counterfeits_passed",
        "genuine_rejected",
        "genuine_held",
        "late_decisions",
        "latency_ms",
        "items_per_s",
    }
    assert set(summary["latency_ms"]) == {"p50", "p99"}
    assert summary["ok"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--items", "5", "--duration", "2"), "--items and --duration exclude each other"),
        (("--gates", "0"), "--gates"),
        (("--counterfeit-rate", "1.5"), "--counterfeit-rate"),
    ],
)
def test_bad_options_exit_2_naming_the_problem(args: tuple[str, ...], message: str) -> None:
    result = _demo(*args, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr
