"""Site: scan-to-decision latency of 4 gates at 20 items/s each, beside the no-op MQTT round trip.

The whole demo site (simulators/site_run.py): a private mosquitto, the real gateway, and 4
gate processes (the real agent with vision, simulated devices on ptys, a conveyor) at 20
items/s each. Scan-to-decision is the photo-eye trigger to the journaled decision: it
includes the item's read window (the reads of an item are complete only when its window
closes: window + lead + read grace, 30-32 ms in the demo profiles), so it is also shown
from the window's close, the gate's own processing time. The simulated cameras' frames are
rendered and decoded before the belt starts (simulators/gate_sim.py, up to 512 MB a gate),
as a real camera delivers them without the gate's CPU. Baseline in the same run: the
no-op MQTT responder's QoS 1 round trip through its own private mosquitto.

PROVGATE_BENCH_SITE_ITEMS (items per gate, default 200), PROVGATE_BENCH_SITE_GATES (4),
PROVGATE_BENCH_SITE_RATE (20) scale it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.bench_mqtt_baseline import measure_noop
from bench.report import Figure, print_figures
from edge_agent.profile import load_gate_profile
from simulators.broker import MosquittoBroker
from simulators.site_run import PROFILES, RunSettings, SiteRun
from simulators.site_summary import load_gate, percentile, summarise


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def window_close_ms(kind: str) -> float:
    """Trigger to window close in the demo profile of a gate kind (window + lead + grace)."""
    profile = load_gate_profile(PROFILES / f"demo-{kind}.yaml")
    return 1000 * (profile.belt.window_s + profile.belt.lead_s) + profile.trigger.read_grace_ms


def run() -> list[Figure]:
    """All figures of this benchmark."""
    items = int(_env("PROVGATE_BENCH_SITE_ITEMS", 200))
    gates = int(_env("PROVGATE_BENCH_SITE_GATES", 4))
    rate = _env("PROVGATE_BENCH_SITE_RATE", 20.0)
    with MosquittoBroker() as broker:
        noop_p50, noop_p99, _ = measure_noop(broker.url, 1)
    settings = RunSettings(gates=gates, items=items, rate=rate, counterfeit_rate=0.2, seed=7)
    with tempfile.TemporaryDirectory(prefix="provgate-bench-site-") as tmp:
        with SiteRun(Path(tmp), settings) as site:
            site.start()
            site.wait_gates(timeout=items / rate * 4 + 120)
            plans = site.plans
        gate_outcomes = [load_gate(p.gate, p.items_file, p.result_file) for p in plans]
        summary = summarise([o for g in gate_outcomes for o in g.items], gates=gate_outcomes)
        close = {p.gate: window_close_ms(p.kind.value) for p in plans}
        processing = [
            o.latency_ms - close[o.gate]
            for g in gate_outcomes
            for o in g.items
            if o.latency_ms is not None
        ]
    p50 = summary.latency_p50_ms or 0.0
    p99 = summary.latency_p99_ms or 0.0
    load = os.getloadavg()[0]
    where = f"{gates} gates × {rate:g}/s, load {load:.1f}"
    return [
        Figure(
            f"scan-to-decision p50 ({where})",
            p50,
            "ms",
            "no-op MQTT round trip p50",
            noop_p50 * 1e3,
            higher_is_better=False,
        ),
        Figure(
            f"scan-to-decision p99 ({where})",
            p99,
            "ms",
            "no-op MQTT round trip p99",
            noop_p99 * 1e3,
            higher_is_better=False,
            target="≤ 50 ms",
        ),
        Figure(
            "window close to decision p50 (the gate's processing)",
            percentile(processing, 0.5) or 0.0,
            "ms",
            "no-op MQTT round trip p50",
            noop_p50 * 1e3,
            higher_is_better=False,
        ),
        Figure(
            "window close to decision p99 (the gate's processing)",
            percentile(processing, 0.99) or 0.0,
            "ms",
            "no-op MQTT round trip p99",
            noop_p99 * 1e3,
            higher_is_better=False,
            target="≤ 50 ms if scan = complete read",
        ),
        Figure("items decided per second, all gates", summary.items_per_s, "items/s"),
        Figure("late decisions", summary.late_decisions, "items", target="0"),
        Figure("counterfeits passed", summary.counterfeits_passed, "items", target="0"),
        Figure("diverter fired late or missed", summary.missed_diversions, "items", target="0"),
        Figure(
            "genuine held or rejected",
            summary.genuine_held + summary.genuine_rejected,
            "items",
            target=f"of {summary.items - summary.counterfeits}",
        ),
    ]


if __name__ == "__main__":
    print_figures("Site: scan-to-decision at 4 gates × 20 items/s", run())
