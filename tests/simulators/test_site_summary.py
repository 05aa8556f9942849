"""The demo's summary never lies: items a gate left no word on, counterfeits the diverter
missed, stray journal rows and pulses, and missing journals all fail its checks."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gatewire.identity import parse_item_id
from simulators.site_summary import (
    ItemOutcome,
    belt_seconds,
    check_ledger,
    load_gate,
    load_outcomes,
    summarise,
)

URIS = [f"urn:epc:id:sgtin:0614141.812345.{n}" for n in range(1, 5)]
KEYS = [parsed.key for uri in URIS if (parsed := parse_item_id(uri).item) is not None]
TRUTHS = ["genuine", "cloned_tag", "genuine", "fake_label"]


def _plan(tmp_path: Path, gate: str = "in-01") -> Path:
    items = [
        {
            "seq": seq,
            "truth": truth,
            "item": URIS[seq],
            "barcode": None,
            "rfid_epc": None,
            "label_kind": "genuine",
        }
        for seq, truth in enumerate(TRUTHS)
    ]
    path = tmp_path / f"{gate}.items.json"
    path.write_text(json.dumps(items))
    return path


def _row(seq: int, decision: str | None, *, diverted: bool, late: bool = False) -> dict[str, Any]:
    t = 1000.0 + seq
    return {
        "seq": seq,
        "truth": TRUTHS[seq],
        "item": URIS[seq],
        "triggered_at": t,
        "verified_as": KEYS[seq],
        "decision": decision,
        "reasons": [],
        "late": late,
        "scanned_at": t,
        "decided_at": None if decision is None else t + 0.04,
        "latency_ms": None if decision is None else 40.0,
        "diverted": diverted,
    }


GOOD_ROWS = [
    _row(0, "PASS", diverted=False),
    _row(1, "REJECT", diverted=True),
    _row(2, "PASS", diverted=False),
    _row(3, "HOLD", diverted=True),
]


def _result(tmp_path: Path, rows: list[dict[str, Any]], **summary: Any) -> Path:
    path = tmp_path / "in-01.result.json"
    counts = {"rows_unmatched": 0, "pulses_unmatched": 0, "stopped_early": False, **summary}
    path.write_text(json.dumps({"gate": "in-01", "items": rows, "summary": counts}))
    return path


def test_a_clean_gate_passes_every_check(tmp_path: Path) -> None:
    assert len(KEYS) == len(URIS)
    gate = load_gate("in-01", _plan(tmp_path), _result(tmp_path, GOOD_ROWS))
    summary = summarise(gate.items, gates=[gate])
    assert (summary.items, summary.passed, summary.rejected, summary.held) == (4, 2, 1, 1)
    assert summary.counterfeits == 2
    assert summary.counterfeits_passed == 0
    assert summary.accounted
    assert summary.diverted_right
    assert summary.latency_p50_ms == 40.0


def test_a_gate_without_a_result_file_leaves_its_items_undecided_not_uncounted(
    tmp_path: Path,
) -> None:
    gate = load_gate("in-01", _plan(tmp_path), tmp_path / "in-01.result.json")
    summary = summarise(gate.items, gates=[gate])
    assert summary.items == 4
    assert summary.undecided == 4
    assert not summary.accounted
    assert summary.problems == ("in-01 left no result file (in-01.result.json)",)


def test_an_unreadable_result_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    result = tmp_path / "in-01.result.json"
    result.write_text("{not json")
    gate = load_gate("in-01", _plan(tmp_path), result)
    assert gate.problem is not None
    assert "unusable result file" in gate.problem
    assert all(o.decision is None for o in gate.items)


def test_items_the_result_leaves_out_are_undecided(tmp_path: Path) -> None:
    gate = load_gate("in-01", _plan(tmp_path), _result(tmp_path, GOOD_ROWS[:3]))
    summary = summarise(gate.items, gates=[gate])
    assert summary.items == 4
    assert summary.undecided == 1
    assert not summary.accounted


def test_a_result_row_that_names_another_item_than_the_plan_is_not_trusted(
    tmp_path: Path,
) -> None:
    swapped = [*GOOD_ROWS[:2], {**GOOD_ROWS[2], "truth": "fake_label"}, GOOD_ROWS[3]]
    gate = load_gate("in-01", _plan(tmp_path), _result(tmp_path, swapped))
    assert gate.items[2].decision is None


def test_a_counterfeit_decided_reject_that_the_diverter_missed_went_through(
    tmp_path: Path,
) -> None:
    rows = [*GOOD_ROWS[:1], _row(1, "REJECT", diverted=False), *GOOD_ROWS[2:]]
    gate = load_gate("in-01", _plan(tmp_path), _result(tmp_path, rows))
    summary = summarise(gate.items, gates=[gate])
    assert summary.counterfeits_passed == 1
    assert summary.missed_diversions == 1
    assert not summary.diverted_right
    assert summary.by_truth["cloned_tag"] == {"REJECT": 1, "missed": 1}


def test_a_late_hold_is_pulled_by_hand_so_it_is_no_missed_diversion(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS[:1], _row(1, "HOLD", diverted=False, late=True), *GOOD_ROWS[2:]]
    gate = load_gate("in-01", _plan(tmp_path), _result(tmp_path, rows))
    summary = summarise(gate.items, gates=[gate])
    assert summary.counterfeits_passed == 0
    assert summary.late_decisions == 1
    assert summary.diverted_right


def test_an_undecided_counterfeit_on_the_belt_went_through(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS[:3], _row(3, None, diverted=False)]
    gate = load_gate("in-01", _plan(tmp_path), _result(tmp_path, rows))
    assert summarise(gate.items, gates=[gate]).counterfeits_passed == 1


def test_a_genuine_item_hit_by_the_diverter_and_stray_pulses_fail_the_diverter_check(
    tmp_path: Path,
) -> None:
    rows = [_row(0, "PASS", diverted=True), *GOOD_ROWS[1:]]
    gate = load_gate("in-01", _plan(tmp_path), _result(tmp_path, rows))
    summary = summarise(gate.items, gates=[gate])
    assert summary.wrong_diversions == 1
    assert not summary.diverted_right
    gate = load_gate("in-01", _plan(tmp_path), _result(tmp_path, GOOD_ROWS, pulses_unmatched=2))
    summary = summarise(gate.items, gates=[gate])
    assert summary.stray_pulses == 2
    assert not summary.diverted_right


def test_journal_rows_of_no_planned_item_break_the_accounting(tmp_path: Path) -> None:
    gate = load_gate("in-01", _plan(tmp_path), _result(tmp_path, GOOD_ROWS, rows_unmatched=1))
    summary = summarise(gate.items, gates=[gate])
    assert summary.stray_rows == 1
    assert not summary.accounted


def test_an_item_verified_under_its_neighbours_id_is_counted_as_misread(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS[:2], {**GOOD_ROWS[2], "verified_as": KEYS[1]}, GOOD_ROWS[3]]
    gate = load_gate("in-01", _plan(tmp_path), _result(tmp_path, rows))
    assert summarise(gate.items, gates=[gate]).misread == 1


def test_items_per_second_counts_decided_items_over_the_belt_time() -> None:
    outcomes = [
        ItemOutcome("g", 0, "genuine", URIS[0], "PASS", (), False, 40, False, 100.0, 100.5),
        ItemOutcome("g", 1, "genuine", URIS[1], "PASS", (), False, 40, False, 101.0, 102.0),
        ItemOutcome("g", 2, "genuine", URIS[2], None, (), False, None, False),
    ]
    assert belt_seconds(outcomes) == 2.0
    assert summarise(outcomes).items_per_s == 1.0


def test_load_outcomes_names_a_bad_result_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.result.json"
    bad.write_text(json.dumps({"gate": "g", "items": [{"seq": 0}]}))
    with pytest.raises(ValueError, match=r"bad\.result\.json"):
        load_outcomes([bad])


def _ledger(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, event_json TEXT)")
    db.execute("CREATE TABLE gw_ingested (event_id TEXT PRIMARY KEY, seq INTEGER)")
    db.commit()
    db.close()
    return path


def test_a_missing_journal_fails_the_ledger_check_instead_of_expecting_nothing(
    tmp_path: Path,
) -> None:
    ledger = _ledger(tmp_path / "ledger.db")
    check = check_ledger(ledger, {"in-01": tmp_path / "in-01.journal.db"})
    assert not check.ok
    assert len(check.missing) == 1
    assert "in-01" in check.missing[0]


def _journal(path: Path, *rows: tuple[str, str | None, str, str]) -> Path:
    """A journal's items table with decided rows (window, event id, item URI, decision)."""
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE items (seq INTEGER PRIMARY KEY, window_id TEXT, event_id TEXT, "
        "item TEXT, decision TEXT)"
    )
    for window, event_id, uri, decision in rows:
        db.execute(
            "INSERT INTO items (window_id, event_id, item, decision) VALUES (?, ?, ?, ?)",
            (window, event_id, json.dumps({"epc_uri": uri}), decision),
        )
    db.commit()
    db.close()
    return path


def test_the_ledger_check_finds_each_event_with_the_gates_item_and_decision(
    tmp_path: Path,
) -> None:
    ledger = _ledger(tmp_path / "ledger.db")
    db = sqlite3.connect(ledger)
    for seq, (event_id, uri, verdict) in enumerate(
        [("e1", URIS[0], "PASS"), ("e2", URIS[1], "PASS"), ("e3", URIS[3], "HOLD")]
    ):
        event = {"epcList": [uri], "pg:verdict": verdict}
        db.execute("INSERT INTO events VALUES (?, ?)", (seq, json.dumps(event)))
        db.execute("INSERT INTO gw_ingested VALUES (?, ?)", (event_id, seq))
    db.commit()
    db.close()
    journal = _journal(
        tmp_path / "in-01.journal.db",
        ("w1", "e1", URIS[0], "PASS"),
        ("w2", "e2", URIS[1], "REJECT"),  # the ledger says PASS
        ("w3", "e3", URIS[2], "HOLD"),  # the ledger names another item
        ("w4", "e4", URIS[3], "HOLD"),  # not in the ledger
    )
    check = check_ledger(ledger, {"in-01": journal})
    assert (check.expected, check.recorded) == (4, 3)
    assert check.missing == ("in-01:w4",)
    assert len(check.wrong) == 2
    assert not check.ok
    assert not check_ledger(tmp_path / "nope.db", {"in-01": journal}).ok
