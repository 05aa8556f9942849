"""End to end: the gateway and two gates as separate processes through a real mosquitto,
simulated devices on real ptys; every item checked in the journal, the diverter recordings
and the gateway's ledger, independently of the demo's own summary."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gatewire.identity import parse_item_id
from simulators.scenario import ScenarioItem, Truth

pytestmark = pytest.mark.broker

GATES = ("in-01", "out-01")
ITEMS = 16


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One demo run kept on disk: 2 gates × 16 items (2 s at 8 items/s), half of them
    counterfeit; its --json summary."""
    directory = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "provgate_cli.main", "demo", "--gates", "2"),
            *("--duration", "2", "--rate", "8", "--counterfeit-rate", "0.5", "--seed", "11"),
            *("--no-ui", "--json", "--keep", str(directory)),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in directory.glob("*.log")
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{logs}"
    return directory, json.loads(result.stdout)


def _scenario(directory: Path, gate: str) -> list[ScenarioItem]:
    data = json.loads((directory / f"{gate}.items.json").read_text())
    return [ScenarioItem.from_json(d) for d in data]


def _journal(directory: Path, gate: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{directory / f'{gate}.journal.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM items ORDER BY scanned_at").fetchall()
    finally:
        db.close()


def _key(text: str) -> str:
    item = parse_item_id(text).item
    assert item is not None, text
    return item.key


def test_the_summary_counts_every_item_and_no_counterfeit_passed(
    run_dir: tuple[Path, dict[str, Any]],
) -> None:
    _, summary = run_dir
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
    assert summary["items"] == len(GATES) * ITEMS
    assert summary["items"] == summary["passed"] + summary["rejected"] + summary["held"]
    assert summary["counterfeits"] > 0
    assert summary["counterfeits_passed"] == 0
    assert summary["genuine_rejected"] == 0
    assert summary["ledger"]["missing"] == []
    assert summary["ledger"]["wrong"] == []
    assert summary["ledger"]["expected"] > 0
    assert summary["missed_diversions"] == summary["stray_pulses"] == 0
    assert summary["gateway_failure"] is None
    assert summary["ok"] is True
    assert summary["latency_ms"]["p99"] is not None


@pytest.mark.parametrize("gate", GATES)
def test_the_journal_holds_each_item_once_decided_and_never_passes_a_counterfeit(
    run_dir: tuple[Path, dict[str, Any]], gate: str
) -> None:
    directory, _ = run_dir
    scenario = _scenario(directory, gate)
    rows = _journal(directory, gate)
    assert len(rows) == len(scenario)  # nothing lost, nothing duplicated
    for item, row in zip(scenario, rows, strict=True):
        where = f"{gate} item {item.seq} ({item.truth})"
        assert row["decision"] in ("PASS", "REJECT", "HOLD"), where
        if item.truth is Truth.READ_MISMATCH:
            assert "read.mismatch" in json.loads(row["reasons"]), where
        else:
            assert json.loads(row["item"])["gtin"] + "/" + json.loads(row["item"])[
                "serial"
            ] == _key(item.item), where
        if item.counterfeit:
            assert row["decision"] != "PASS", where
        else:
            assert row["decision"] != "REJECT", where
        assert row["event_id"], where


@pytest.mark.parametrize("gate", GATES)
def test_the_diverter_fired_for_exactly_the_rejected_and_held_items(
    run_dir: tuple[Path, dict[str, Any]], gate: str
) -> None:
    directory, _ = run_dir
    rows = _journal(directory, gate)
    result = json.loads((directory / f"{gate}.result.json").read_text())
    pulses = sorted(p["wall_ts"] for p in result["pulses"])
    diverted = [r for r in rows if r["decision"] != "PASS" and not r["late"]]
    assert len(pulses) == len(diverted)
    for row in rows:
        if row["decision"] == "PASS":
            assert row["actuated_at"] is None, row["window_id"]
        elif not row["late"]:
            assert row["actuated_at"] is not None, row["window_id"]
            assert min(abs(p - row["actuated_at"]) for p in pulses) < 0.005, row["window_id"]


def test_the_ledger_records_each_gate_event_once_with_the_gates_decision(
    run_dir: tuple[Path, dict[str, Any]],
) -> None:
    directory, _ = run_dir
    ledger = sqlite3.connect(f"file:{directory / 'site' / 'ledger.db'}?mode=ro", uri=True)
    try:
        for gate in GATES:
            for row in _journal(directory, gate):
                found = ledger.execute(
                    "SELECT e.event_json FROM gw_ingested g JOIN events e ON e.seq = g.seq "
                    "WHERE g.event_id = ?",
                    (row["event_id"],),
                ).fetchall()
                assert len(found) == 1, (gate, row["window_id"])
                event = json.loads(found[0][0])
                assert event["pg:verdict"] == row["decision"]
                assert _key(event["epcList"][0]) == _key(json.loads(row["item"])["epc_uri"]), (
                    gate,
                    row["window_id"],
                )
    finally:
        ledger.close()
