"""What a simulated site run decided, against the truth: the demo's summary and its checks.

:func:`load_gate` reads one gate's planned items (its ``ITEMS.json``, the truth) and what its
result file says about each of them, so an item the gate left no word on (no result file,
a crash, a stop) is counted undecided instead of vanishing from the totals;
:func:`summarise` counts items, decisions, counterfeits that went past the diverter, genuine
items rejected or held, late decisions, diverter misses, stray journal rows and pulses, and
scan-to-decision latency; :func:`check_ledger` confirms, from each gate's journal, that every
decided item's gate event is in the gateway's ledger once with the gate's decision.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatewire.identity import parse_item_id
from simulators.gate_result import percentile

__all__ = [
    "GateOutcome",
    "ItemOutcome",
    "LedgerCheck",
    "Summary",
    "belt_seconds",
    "check_ledger",
    "load_gate",
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
    """A diverter pulse hit the item's diverter moment (the simulator's recording)."""
    scanned_at: float | None = None
    """Wall time of the item's trigger (photo eye) as the gate journaled it."""
    decided_at: float | None = None
    triggered_at: float | None = None
    """Wall time the conveyor put the item at the photo eye (None: it never got there)."""
    misread: bool = False
    """The gate verified it as another item's ID (a read that spilled from a neighbour)."""

    @property
    def counterfeit(self) -> bool:
        return self.truth != "genuine"

    @property
    def on_belt(self) -> bool:
        """The item reached the photo eye."""
        return self.triggered_at is not None or self.decision is not None

    @property
    def missed_diversion(self) -> bool:
        """Decided REJECT or HOLD in time, yet no diverter pulse hit it: it went on."""
        return self.decision in ("REJECT", "HOLD") and not self.late and not self.diverted

    @property
    def went_through(self) -> bool:
        """The item went on past the diverter: passed, never decided, or missed by the
        diverter (a late HOLD is pulled by hand at the amber lamp: it does not ship)."""
        if not self.on_belt:
            return False
        return self.decision in (None, "PASS") or self.missed_diversion


@dataclass(frozen=True, slots=True)
class GateOutcome:
    """One gate's planned items with what its result file says, and the file's own counts."""

    gate: str
    items: tuple[ItemOutcome, ...]
    problem: str | None = None
    """Why the result file could not be used (its items are then all undecided)."""
    stray_rows: int = 0
    """Journal rows no planned item accounts for (a split or phantom item)."""
    stray_pulses: int = 0
    """Diverter pulses at no item's diverter moment (they hit the wrong item or none)."""
    stopped_early: bool = False


def load_gate(gate: str, items_file: Path, result_file: Path) -> GateOutcome:
    """Every item planned for ``gate`` (``items_file``) with what ``result_file`` says.

    Planned items the result does not name, or all of them when the result file is
    missing or unreadable, are undecided; ValueError only if the plan itself is unreadable.
    """
    try:
        planned = json.loads(items_file.read_text(encoding="utf-8"))
        truth = {int(row["seq"]): (str(row["truth"]), str(row["item"])) for row in planned}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{items_file}: not a list of scenario items: {exc}") from exc
    problem: str | None = None
    found: dict[int, ItemOutcome] = {}
    counts: dict[str, Any] = {}
    if not result_file.exists():
        problem = f"{gate} left no result file ({result_file.name})"
    else:
        try:
            data = json.loads(result_file.read_text(encoding="utf-8"))
            if str(data["gate"]) != gate:
                raise ValueError(f"it is gate {data['gate']}'s")
            found = {o.seq: o for o in _outcomes(gate, data["items"])}
            counts = dict(data.get("summary") or {})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"{gate}: unusable result file {result_file.name}: {exc}"
            found, counts = {}, {}
    items: list[ItemOutcome] = []
    for seq, (what, item) in sorted(truth.items()):
        outcome = found.get(seq)
        if outcome is None or (outcome.truth, outcome.item) != (what, item):
            # not reported, or reported as something the plan does not say: undecided
            outcome = ItemOutcome(gate, seq, what, item, None, (), False, None, False)
        items.append(outcome)
    extra = len(set(found) - set(truth))
    return GateOutcome(
        gate,
        tuple(items),
        problem,
        stray_rows=_int(counts.get("rows_unmatched")) + extra,
        stray_pulses=_int(counts.get("pulses_unmatched")),
        stopped_early=bool(counts.get("stopped_early")),
    )


def load_outcomes(result_files: Iterable[Path]) -> list[ItemOutcome]:
    """Every item of every gate's result file (ValueError naming a bad file).

    Only what the files hold: :func:`load_gate` also counts the items a gate left out.
    """
    outcomes: list[ItemOutcome] = []
    for path in result_files:
        try:
            data = json.loads(path.read_text())
            outcomes.extend(_outcomes(str(data["gate"]), data["items"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a gate result file: {exc}") from exc
    return outcomes


def _outcomes(gate: str, rows: Iterable[dict[str, Any]]) -> list[ItemOutcome]:
    return [
        ItemOutcome(
            gate=gate,
            seq=int(row["seq"]),
            truth=str(row["truth"]),
            item=str(row["item"]),
            decision=_decision(row.get("decision")),
            reasons=tuple(str(r) for r in row.get("reasons") or ()),
            late=bool(row.get("late")),
            latency_ms=_float(row.get("latency_ms")),
            diverted=bool(row.get("diverted")),
            scanned_at=_float(row.get("scanned_at")),
            decided_at=_float(row.get("decided_at")),
            triggered_at=_float(row.get("triggered_at")),
            misread=_misread(str(row["item"]), row.get("verified_as")),
        )
        for row in rows
    ]


def _decision(value: object) -> str | None:
    if value is None:
        return None
    if value not in ("PASS", "REJECT", "HOLD"):
        raise ValueError(f"unknown decision {value!r}")
    return str(value)


def _misread(item: str, verified_as: object) -> bool:
    if verified_as is None:
        return False
    parsed = parse_item_id(item).item
    return parsed is None or parsed.key != str(verified_as)


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def belt_seconds(outcomes: Sequence[ItemOutcome]) -> float:
    """From the first item's trigger to the last decision, over every gate (0 if unknown)."""
    starts = [o.scanned_at for o in outcomes if o.scanned_at is not None]
    ends = [o.decided_at for o in outcomes if o.decided_at is not None]
    return max(ends) - min(starts) if starts and ends else 0.0


@dataclass(frozen=True, slots=True)
class Summary:
    """The demo's summary (``to_json`` gives the documented ``--json`` fields)."""

    items: int
    passed: int
    rejected: int
    held: int
    undecided: int
    """Planned items without a decision (never on the belt, or the gate left no word)."""
    counterfeits: int
    counterfeits_passed: int
    """Counterfeits that went past the diverter: passed, undecided, or missed by it."""
    genuine_rejected: int
    genuine_held: int
    late_decisions: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    items_per_s: float
    by_truth: dict[str, dict[str, int]] = field(default_factory=dict)
    missed_diversions: int = 0
    """REJECT or HOLD in time, but no diverter pulse hit the item."""
    wrong_diversions: int = 0
    """PASS, but a diverter pulse hit the item."""
    stray_pulses: int = 0
    stray_rows: int = 0
    misread: int = 0
    """Items verified as another item's ID (the gate held them if it noticed)."""
    problems: tuple[str, ...] = ()
    """Gates whose result file is missing or unusable."""
    on_belt: int = 0
    """Items that reached the photo eye."""

    @property
    def accounted(self) -> bool:
        """Every planned item decided once: items = passed + rejected + held, and no
        journal row nobody planned."""
        return (
            self.undecided == 0
            and self.items == self.passed + self.rejected + self.held
            and self.stray_rows == 0
            and not self.problems
        )

    @property
    def diverted_right(self) -> bool:
        """The diverter hit exactly the items decided REJECT or HOLD in time."""
        return self.missed_diversions == 0 and self.wrong_diversions == 0 and self.stray_pulses == 0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` summary fields."""
        return {
            "items": self.items,
            "passed": self.passed,
            "rejected": self.rejected,
            "held": self.held,
            "undecided": self.undecided,
            "on_belt": self.on_belt,
            "counterfeits": self.counterfeits,
            "counterfeits_passed": self.counterfeits_passed,
            "genuine_rejected": self.genuine_rejected,
            "genuine_held": self.genuine_held,
            "late_decisions": self.late_decisions,
            "latency_ms": {"p50": _round(self.latency_p50_ms), "p99": _round(self.latency_p99_ms)},
            "items_per_s": round(self.items_per_s, 2),
            "missed_diversions": self.missed_diversions,
            "wrong_diversions": self.wrong_diversions,
            "stray_pulses": self.stray_pulses,
            "stray_rows": self.stray_rows,
            "misread": self.misread,
            "problems": list(self.problems),
            "by_truth": self.by_truth,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summarise(
    outcomes: Sequence[ItemOutcome],
    elapsed_s: float | None = None,
    gates: Sequence[GateOutcome] = (),
) -> Summary:
    """Count the outcomes (with ``gates``' stray rows, pulses and problems); items/s over
    ``elapsed_s``, by default :func:`belt_seconds`."""
    if elapsed_s is None:
        elapsed_s = belt_seconds(outcomes)
    decisions = Counter(o.decision for o in outcomes)
    by_truth: dict[str, Counter[str]] = {}
    for o in outcomes:
        counts = by_truth.setdefault(o.truth, Counter())
        counts[o.decision or ("undecided" if o.on_belt else "not_on_belt")] += 1
        if o.missed_diversion:
            counts["missed"] += 1
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    decided = [o for o in outcomes if o.decision is not None]
    return Summary(
        items=len(outcomes),
        passed=decisions["PASS"],
        rejected=decisions["REJECT"],
        held=decisions["HOLD"],
        undecided=decisions[None],
        counterfeits=sum(o.counterfeit for o in outcomes),
        counterfeits_passed=sum(o.counterfeit and o.went_through for o in outcomes),
        genuine_rejected=sum(not o.counterfeit and o.decision == "REJECT" for o in outcomes),
        genuine_held=sum(not o.counterfeit and o.decision == "HOLD" for o in outcomes),
        late_decisions=sum(o.late for o in outcomes),
        latency_p50_ms=percentile(latencies, 0.5),
        latency_p99_ms=percentile(latencies, 0.99),
        items_per_s=len(decided) / elapsed_s if elapsed_s > 0 else 0.0,
        by_truth={truth: dict(counts) for truth, counts in sorted(by_truth.items())},
        missed_diversions=sum(o.missed_diversion for o in outcomes),
        wrong_diversions=sum(o.decision == "PASS" and o.diverted for o in outcomes),
        stray_pulses=sum(g.stray_pulses for g in gates),
        stray_rows=sum(g.stray_rows for g in gates),
        misread=sum(o.misread for o in outcomes),
        problems=tuple(g.problem for g in gates if g.problem is not None),
        on_belt=sum(o.on_belt for o in outcomes),
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
    one event impossible, so "once" is "present". A journal or ledger that is missing or
    cannot be read is itself a miss (never a vacuous pass).
    """
    missing: list[str] = []
    wrong: list[str] = []
    expected = recorded = 0
    decided: list[tuple[str, tuple[str, str | None, str | None, str]]] = []
    for gate, journal in journals.items():
        try:
            decided += [(gate, row) for row in _decided_rows(journal)]
        except (OSError, sqlite3.Error) as exc:
            missing.append(f"{gate} (journal {journal.name}: {exc})")
    if not ledger_path.exists():
        missing.append(f"the ledger {ledger_path} is missing")
        return LedgerCheck(len(decided), 0, tuple(missing), ())
    db = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
    try:
        for gate, (window_id, event_id, item_json, decision) in decided:
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
    except (sqlite3.Error, ValueError) as exc:
        missing.append(f"the ledger {ledger_path} cannot be read: {exc}")
    finally:
        db.close()
    return LedgerCheck(expected, recorded, tuple(missing), tuple(wrong))


def _decided_rows(journal: Path) -> list[tuple[str, str | None, str | None, str]]:
    """(window id, event id, item JSON, decision) of every decided item of a journal with
    an ID (items without one have no gate event to record); OSError if it is missing."""
    if not journal.exists():
        raise FileNotFoundError("missing: the gate never journaled")
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows: list[tuple[str, str | None, str | None, str]] = db.execute(
            "SELECT window_id, event_id, item, decision FROM items "
            "WHERE decision IS NOT NULL AND item IS NOT NULL ORDER BY seq"
        ).fetchall()
        return rows
    finally:
        db.close()
