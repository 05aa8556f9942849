"""What a simulated site run decided, against the truth: the demo's summary and its checks.

:func:`load_outcomes` reads every gate simulator's result file; :func:`summarise` counts
items, decisions, counterfeits passed, genuine items rejected or held, late decisions and
scan-to-decision latency; :func:`check_ledger` confirms, from each gate's journal, that
every decided item's gate event is in the gateway's ledger once with the gate's decision.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ItemOutcome",
    "LedgerCheck",
    "Summary",
    "belt_seconds",
    "check_ledger",
    "load_outcomes",
    "percentile",
    "summarise",
]


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """One scenario item and what its gate did with it."""

    gate: str
    seq: int
    truth: str
    item: str
    decision: str | None
    """PASS, REJECT, HOLD; None if the gate never decided it (a bug: counted as such)."""
    reasons: tuple[str, ...]
    late: bool
    latency_ms: float | None
    diverted: bool
    scanned_at: float | None = None
    """Wall time of the item's trigger (photo eye)."""
    decided_at: float | None = None

    @property
    def counterfeit(self) -> bool:
        return self.truth != "genuine"


def load_outcomes(result_files: Iterable[Path]) -> list[ItemOutcome]:
    """Every item of every gate's result file (ValueError naming a bad file)."""
    outcomes: list[ItemOutcome] = []
    for path in result_files:
        try:
            data = json.loads(path.read_text())
            gate = str(data["gate"])
            for row in data["items"]:
                outcomes.append(
                    ItemOutcome(
                        gate=gate,
                        seq=int(row["seq"]),
                        truth=str(row["truth"]),
                        item=str(row["item"]),
                        decision=None if row.get("decision") is None else str(row["decision"]),
                        reasons=tuple(str(r) for r in row.get("reasons") or ()),
                        late=bool(row.get("late")),
                        latency_ms=_float(row.get("latency_ms")),
                        diverted=bool(row.get("diverted")),
                        scanned_at=_float(row.get("scanned_at")),
                        decided_at=_float(row.get("decided_at")),
                    )
                )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a gate result file: {exc}") from exc
    return outcomes


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))


def belt_seconds(outcomes: Sequence[ItemOutcome]) -> float:
    """From the first item's trigger to the last decision, over every gate (0 if unknown)."""
    starts = [o.scanned_at for o in outcomes if o.scanned_at is not None]
    ends = [o.decided_at for o in outcomes if o.decided_at is not None]
    return max(ends) - min(starts) if starts and ends else 0.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0…1, nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """The demo's summary (``to_json`` gives the documented ``--json`` fields)."""

    items: int
    passed: int
    rejected: int
    held: int
    undecided: int
    counterfeits: int
    counterfeits_passed: int
    genuine_rejected: int
    genuine_held: int
    late_decisions: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    items_per_s: float
    by_truth: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def accounted(self) -> bool:
        """Every item decided: items = passed + rejected + held."""
        return self.undecided == 0 and self.items == self.passed + self.rejected + self.held

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` summary fields."""
        return {
            "items": self.items,
            "passed": self.passed,
            "rejected": self.rejected,
            "held": self.held,
            "undecided": self.undecided,
            "counterfeits": self.counterfeits,
            "counterfeits_passed": self.counterfeits_passed,
            "genuine_rejected": self.genuine_rejected,
            "genuine_held": self.genuine_held,
            "late_decisions": self.late_decisions,
            "latency_ms": {"p50": _round(self.latency_p50_ms), "p99": _round(self.latency_p99_ms)},
            "items_per_s": round(self.items_per_s, 2),
            "by_truth": self.by_truth,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summarise(outcomes: Sequence[ItemOutcome], elapsed_s: float | None = None) -> Summary:
    """Count the outcomes; items/s over ``elapsed_s``, by default :func:`belt_seconds`."""
    if elapsed_s is None:
        elapsed_s = belt_seconds(outcomes)
    decisions = Counter(o.decision for o in outcomes)
    by_truth: dict[str, Counter[str]] = {}
    for o in outcomes:
        by_truth.setdefault(o.truth, Counter())[o.decision or "undecided"] += 1
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    return Summary(
        items=len(outcomes),
        passed=decisions["PASS"],
        rejected=decisions["REJECT"],
        held=decisions["HOLD"],
        undecided=decisions[None],
        counterfeits=sum(o.counterfeit for o in outcomes),
        counterfeits_passed=sum(o.counterfeit and o.decision == "PASS" for o in outcomes),
        genuine_rejected=sum(not o.counterfeit and o.decision == "REJECT" for o in outcomes),
        genuine_held=sum(not o.counterfeit and o.decision == "HOLD" for o in outcomes),
        late_decisions=sum(o.late for o in outcomes),
        latency_p50_ms=percentile(latencies, 0.5),
        latency_p99_ms=percentile(latencies, 0.99),
        items_per_s=len(outcomes) / elapsed_s if elapsed_s > 0 else 0.0,
        by_truth={truth: dict(counts) for truth, counts in sorted(by_truth.items())},
    )


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    """Gate events found in the ledger, against the items the gates decided."""

    expected: int
    recorded: int
    missing: tuple[str, ...]
    """Items (gate:window) whose gate event the ledger does not have."""
    wrong: tuple[str, ...]
    """Recorded with another item or decision than the gate's (gate:window: why)."""

    @property
    def ok(self) -> bool:
        return not self.missing and not self.wrong and self.recorded == self.expected


def check_ledger(ledger_path: Path, journals: Mapping[str, Path]) -> LedgerCheck:
    """Every decided item in each gate's journal: its gate event in the SQLite ledger once,
    for the same item, with the same decision.

    Reads the journals and the gateway's ingest table (event id → ledger sequence number)
    directly, not the gates' own reports; the ledger's primary key makes a second copy of
    one event impossible, so "once" is "present".
    """
    missing: list[str] = []
    wrong: list[str] = []
    expected = recorded = 0
    db = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
    try:
        for gate, journal in journals.items():
            for window_id, event_id, item_json, decision in _decided_rows(journal):
                where = f"{gate}:{window_id}"
                expected += 1
                if event_id is None:
                    missing.append(f"{where} (no gate event)")
                    continue
                row = db.execute(
                    "SELECT e.event_json FROM gw_ingested g JOIN events e ON e.seq = g.seq "
                    "WHERE g.event_id = ?",
                    (event_id,),
                ).fetchone()
                if row is None:
                    missing.append(where)
                    continue
                recorded += 1
                event = json.loads(row[0])
                item = json.loads(item_json) if item_json else {}
                name = item.get("epc_uri") or item.get("digital_link")
                if name not in event.get("epcList", ()):
                    wrong.append(f"{where}: ledger names {event.get('epcList')}, gate {name}")
                elif event.get("pg:verdict") != decision:
                    wrong.append(f"{where}: ledger says {event.get('pg:verdict')}, gate {decision}")
    finally:
        db.close()
    return LedgerCheck(expected, recorded, tuple(missing), tuple(wrong))


def _decided_rows(journal: Path) -> list[tuple[str, str | None, str | None, str]]:
    """(window id, event id, item JSON, decision) of every decided item of a journal with
    an ID (items without one have no gate event to record)."""
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT window_id, event_id, item, decision FROM items "
            "WHERE decision IS NOT NULL AND item IS NOT NULL ORDER BY seq"
        ).fetchall()
    finally:
        db.close()
