"""What a simulated gate did, item by item: journal rows and diverter pulses matched to the
items that passed the photo eye.

The gate simulator knows when each item triggered the photo eye (a
:class:`~simulators.conveyor.Passage`); the agent journals each item with ``scanned_at``, the
wall time of that same trigger, and fires the diverter ``travel - actuation`` seconds after
it. So a journal row belongs to the item whose trigger it names, and a diverter pulse to the
item whose diverter moment it hit, each within a fraction of the item spacing. The journal is
read read-only (:mod:`edge_agent.journal` schema) while the agent runs and after it stopped.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from edge_agent.profile import GateProfile
from hardware.gate_io.interface import Actuation
from hardware.health import DeviceHealth
from simulators.conveyor import Conveyor, Passage
from simulators.scenario import ScenarioItem, Truth

__all__ = ["GateReport", "JournalRow", "build_result", "match_times", "percentile", "read_journal"]

MATCH_SHARE: Final = 0.45
"""A row or pulse matches an item within this share of the item spacing..."""
MATCH_MAX_S: Final = 0.05
"""... and never further than this."""
_COLUMNS: Final = (
    "window_id, scanned_at, decided_at, decision, reasons, late, actuated_at, item, vision_verdict"
)


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One item row of the agent's journal."""

    window_id: str
    scanned_at: float
    decided_at: float | None
    decision: str | None
    reasons: tuple[str, ...]
    late: bool
    actuated_at: float | None
    item_key: str | None
    """GTIN/serial of the ID the item was verified as (None: no ID read)."""
    vision_verdict: str | None


def read_journal(path: Path, since: float = -math.inf) -> list[JournalRow]:
    """Item rows scanned at or after ``since`` (wall time), by scan time; [] when the
    journal cannot be read (not created yet, locked, not a journal)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return []
    try:
        query = f"SELECT {_COLUMNS} FROM items WHERE scanned_at >= ? ORDER BY scanned_at"
        rows = conn.execute(query, (since if math.isfinite(since) else -1e18,)).fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    return [_row(r) for r in rows]


def _row(r: tuple[Any, ...]) -> JournalRow:
    reasons: tuple[str, ...] = ()
    with contextlib.suppress(TypeError, ValueError):
        reasons = tuple(str(x) for x in json.loads(r[4] or "[]"))
    key = None
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        item = json.loads(r[7]) if r[7] else None
        if isinstance(item, dict) and item.get("gtin"):
            key = f"{item['gtin']}/{item['serial']}" if item.get("serial") else str(item["gtin"])
    return JournalRow(
        window_id=str(r[0]),
        scanned_at=float(r[1]),
        decided_at=None if r[2] is None else float(r[2]),
        decision=None if r[3] is None else str(r[3]),
        reasons=reasons,
        late=bool(r[5]),
        actuated_at=None if r[6] is None else float(r[6]),
        item_key=key,
        vision_verdict=None if r[8] is None else str(r[8]),
    )


def match_times(targets: Sequence[float], times: Sequence[float], tol: float) -> dict[int, int]:
    """Target index → index of the nearest unused time within ``tol`` (both in order)."""
    order = sorted(range(len(times)), key=lambda i: times[i])
    sorted_times = [times[i] for i in order]
    used: set[int] = set()
    out: dict[int, int] = {}
    for t_index, target in enumerate(targets):
        at = bisect.bisect_left(sorted_times, target - tol)
        best: int | None = None
        while at < len(sorted_times) and sorted_times[at] <= target + tol:
            if at not in used and (
                best is None or abs(sorted_times[at] - target) < abs(sorted_times[best] - target)
            ):
                best = at
            at += 1
        if best is not None:
            used.add(best)
            out[t_index] = order[best]
    return out


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` in 0–1); None for no values."""
    if not values:
        return None
    ranked = sorted(values)
    return ranked[max(0, math.ceil(share * len(ranked)) - 1)]


def _latency_ms(row: JournalRow) -> float | None:
    return None if row.decided_at is None else (row.decided_at - row.scanned_at) * 1000


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass
class GateReport:
    """The run's fixed facts, and its live progress from the agent and the journal."""

    profile: GateProfile
    journal: Path
    items: Sequence[ScenarioItem]
    rate: float
    started_wall: float = field(default_factory=time.time)

    @property
    def tolerance_s(self) -> float:
        """How far a journal row or a pulse may be from its item's moment."""
        return min(MATCH_MAX_S, MATCH_SHARE / self.rate)

    @property
    def divert_s(self) -> float:
        """From the photo eye to firing the diverter."""
        belt = self.profile.belt
        return belt.travel_s - belt.actuation_ms / 1000

    def progress(self, counters: dict[str, int], conveyor: Conveyor) -> dict[str, Any]:
        """A progress line's fields: agent counters, latency and throughput so far."""
        rows = [r for r in read_journal(self.journal, self.started_wall) if r.decided_at]
        latencies = [x for x in map(_latency_ms, rows) if x is not None]
        started = conveyor.started_at
        elapsed = time.monotonic() - started if started is not None else 0.0
        return {
            "gate": self.profile.gate.id,
            "items": counters.get("items", 0),
            "on_belt": len(conveyor.passages),
            "of": len(self.items),
            "passed": counters.get("passed", 0),
            "rejected": counters.get("rejected", 0),
            "held": counters.get("held", 0),
            "late": counters.get("late", 0),
            "p50_ms": _ms(percentile(latencies, 0.50)),
            "p99_ms": _ms(percentile(latencies, 0.99)),
            "items_per_s": round(len(rows) / elapsed, 2) if elapsed > 0 else 0.0,
        }


def build_result(
    report: GateReport,
    conveyor: Conveyor,
    rows: Sequence[JournalRow],
    pulses: Sequence[Actuation],
    *,
    counters: dict[str, int],
    health: Iterable[DeviceHealth],
    render_s: float,
    stopped_early: bool,
) -> dict[str, Any]:
    """RESULT.json: every item with its journal row and diverter pulse, the pulses, the
    agent's counters, device health, timings and a summary."""
    passages = {p.seq: p for p in conveyor.passages}
    ordered = [passages[i.seq] for i in report.items if i.seq in passages]
    tol = report.tolerance_s
    rows = [r for r in rows if r.scanned_at >= report.started_wall - 1.0]
    by_row = match_times([p.trigger_wall for p in ordered], [r.scanned_at for r in rows], tol)
    fired = [p for p in pulses if p.applied]
    by_pulse = match_times(
        [p.trigger + report.divert_s for p in ordered], [p.ts for p in fired], tol
    )
    row_of = {p.seq: rows[by_row[i]] for i, p in enumerate(ordered) if i in by_row}
    pulse_of = {p.seq: by_pulse[i] for i, p in enumerate(ordered) if i in by_pulse}
    items = [
        _item(item, passages.get(item.seq), row_of.get(item.seq), fired, pulse_of.get(item.seq))
        for item in report.items
    ]
    owner = {index: seq for seq, index in pulse_of.items()}
    return {
        "gate": report.profile.gate.id,
        "kind": report.profile.gate.kind.value,
        "rate": report.rate,
        "divert_s": report.divert_s,
        "items": items,
        "pulses": [
            {
                "ts": p.ts,
                "wall_ts": p.wall_ts,
                "duration_s": p.duration,
                "seq": owner.get(index),
            }
            for index, p in enumerate(fired)
        ],
        "counters": counters,
        "health": {h.name: _health(h) for h in health},
        "timings": {
            "render_s": round(render_s, 3),
            "render_ms_per_item": round(1000 * render_s / max(1, len(report.items)), 2),
            "belt_lateness_ms_max": _ms(
                max((1000 * (p.trigger - p.scheduled) for p in ordered), default=0.0)
            ),
            "conveyor_errors": conveyor.errors,
            "belt_slips": conveyor.slips,
        },
        "summary": _summary(items, rows, row_of, fired, pulse_of, stopped_early),
    }


def _item(
    item: ScenarioItem,
    passage: Passage | None,
    row: JournalRow | None,
    pulses: Sequence[Actuation],
    pulse: int | None,
) -> dict[str, Any]:
    latency = None if row is None else _latency_ms(row)
    return {
        "seq": item.seq,
        "truth": item.truth.value,
        "item": item.item,
        "triggered_at": None if passage is None else passage.trigger_wall,
        "window_id": None if row is None else row.window_id,
        "verified_as": None if row is None else row.item_key,
        "decision": None if row is None else row.decision,
        "reasons": [] if row is None else list(row.reasons),
        "late": None if row is None else row.late,
        "vision": None if row is None else row.vision_verdict,
        "scanned_at": None if row is None else row.scanned_at,
        "decided_at": None if row is None else row.decided_at,
        "latency_ms": _ms(latency),
        "diverted": pulse is not None,
        "diverted_at": None if pulse is None else pulses[pulse].wall_ts,
        "actuated_at": None if row is None else row.actuated_at,
    }


def _health(h: DeviceHealth) -> dict[str, Any]:
    return {
        "state": h.state.value,
        "counters": dict(h.counters),
        "last_error": h.last_error,
        "reconnects": h.reconnects,
    }


def _summary(
    items: Sequence[dict[str, Any]],
    rows: Sequence[JournalRow],
    row_of: dict[int, JournalRow],
    pulses: Sequence[Actuation],
    pulse_of: dict[int, int],
    stopped_early: bool,
) -> dict[str, Any]:
    decided = [i for i in items if i["decision"] is not None]
    latencies = [i["latency_ms"] for i in decided if i["latency_ms"] is not None]
    count = {d: sum(i["decision"] == d for i in decided) for d in ("PASS", "REJECT", "HOLD")}
    fake = [i for i in decided if i["truth"] != Truth.GENUINE.value]
    genuine = [i for i in decided if i["truth"] == Truth.GENUINE.value]
    span = [x for i in decided for x in (i["scanned_at"], i["decided_at"])]
    seconds = max(span) - min(span) if len(span) > 1 else 0.0
    matched = {id(r) for r in row_of.values()}
    return {
        "items": len(items),
        "on_belt": sum(i["triggered_at"] is not None for i in items),
        "decided": len(decided),
        "passed": count["PASS"],
        "rejected": count["REJECT"],
        "held": count["HOLD"],
        "late": sum(bool(i["late"]) for i in decided),
        "counterfeits": sum(i["truth"] != Truth.GENUINE.value for i in items),
        "counterfeits_passed": sum(i["decision"] == "PASS" for i in fake),
        "genuine_rejected": sum(i["decision"] == "REJECT" for i in genuine),
        "genuine_held": sum(i["decision"] == "HOLD" for i in genuine),
        "pulses": len(pulses),
        "pulses_unmatched": len(pulses) - len(pulse_of),
        "rows_unmatched": sum(id(r) not in matched for r in rows),
        "p50_ms": _ms(percentile(latencies, 0.50)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "items_per_s": round(len(decided) / seconds, 2) if seconds > 0 else 0.0,
        "stopped_early": stopped_early,
    }
