"""``provgate demo``: the main job on embedded defaults, on one machine, no hardware.

A private mosquitto (or ``--mqtt``), the real gateway on a freshly seeded SQLite ledger, and
N simulated gates, each its own process: the real gate agent fed by simulated scanners, RFID
readers and cameras on real ptys and a conveyor that moves a stream of genuine items and
counterfeits of every kind past them (:mod:`simulators.site_run`). A live table per gate
while the belts run, then a summary checked against the truth: no counterfeit passed, every
item decided and journaled, every gate event in the gateway's ledger once.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from hardware.cli import EXIT_INVALID
from simulators.site_run import GateProgress, RunSettings, SiteRun, SiteRunError
from simulators.site_summary import (
    LedgerCheck,
    Summary,
    check_ledger,
    load_outcomes,
    summarise,
)

__all__ = ["demo"]

_REFRESH_S: Final = 0.25
_STATE_STYLE: Final = {
    "starting": "dim",
    "preparing": "yellow",
    "running": "cyan",
    "done": "green",
    "failed": "bold red",
}


def demo(
    gates: Annotated[
        int, typer.Option("--gates", "-g", min=1, max=16, help="Simulated gates (half inbound).")
    ] = 3,
    items: Annotated[
        int | None,
        typer.Option(
            "--items", "-n", min=1, help="Items per gate [default: 40].", show_default=False
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            "-d",
            min=0.1,
            help="Run each belt this many seconds instead (items = rate × duration).",
            show_default=False,
        ),
    ] = None,
    rate: Annotated[
        float, typer.Option("--rate", "-r", min=0.1, max=500, help="Items per second per gate.")
    ] = 5.0,
    counterfeit_rate: Annotated[
        float,
        typer.Option("--counterfeit-rate", min=0.0, max=1.0, help="Share of counterfeit items."),
    ] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the ledger and the items.")] = 7,
    mqtt_url: Annotated[
        str | None,
        typer.Option("--mqtt", help="Use this broker (mqtt://host:port) instead of a private one."),
    ] = None,
    no_ui: Annotated[
        bool, typer.Option("--no-ui", help="No live table: one line per gate when it finishes.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print only the summary, as one JSON object.")
    ] = False,
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep",
            help="Keep the run here (ledger, journals, results, logs) instead of a temporary "
            "directory.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the gates on embedded defaults: scan, verify, decide, divert, and count.

    Exit 0 when no counterfeit passed and every item is accounted for in the journals and
    the ledger; 1 otherwise (or when a part failed to start); 2 for bad options.
    """
    if items is not None and duration is not None:
        raise _bad("--items and --duration exclude each other")
    per_gate = items if items is not None else 40
    if duration is not None:
        per_gate = max(1, math.ceil(rate * duration))
    try:
        settings = RunSettings(gates, per_gate, rate, counterfeit_rate, seed, mqtt_url)
    except ValueError as exc:
        raise _bad(str(exc)) from None
    console = Console(stderr=as_json, quiet=as_json)
    directory = keep if keep is not None else Path(tempfile.mkdtemp(prefix="provgate-demo-"))
    try:
        code = _run(console, directory, settings, live_ui=not no_ui, as_json=as_json)
        if keep is not None:
            console.print(f"run kept in {keep}")
    finally:
        if keep is None:
            shutil.rmtree(directory, ignore_errors=True)
    raise typer.Exit(code)


def _bad(message: str) -> typer.Exit:
    typer.echo(f"provgate demo: {message}", err=True)
    return typer.Exit(EXIT_INVALID)


def _run(
    console: Console, directory: Path, settings: RunSettings, *, live_ui: bool, as_json: bool
) -> int:
    console.print(
        f"[bold]provgate demo[/bold]: {settings.gates} gates × {settings.items} items at "
        f"{settings.rate:g} items/s, {settings.counterfeit_rate:.0%} counterfeits, seed "
        f"{settings.seed}"
    )
    interrupted = False
    with SiteRun(directory, settings) as run:
        try:
            with console.status("preparing"):
                run.start(on_step=lambda step: console.print(f"  {step}"))
            _follow(console, run, live_ui)
        except SiteRunError as exc:
            console.print(f"[red]demo could not start: {exc}[/red]")
            if as_json:
                typer.echo(json.dumps({"error": str(exc)}))
            return 1
        except KeyboardInterrupt:
            interrupted = True
            console.print(
                "[yellow]interrupted: stopping the gates (each decides what is on its "
                "belt)[/yellow]"
            )
            run.interrupt_gates()
            run.wait_gates(30.0)
        run.stop()  # gateway and broker too, so the ledger is quiet for the check
        exit_codes = run.gate_exit_codes()
        results = [p.result_file for p in run.plans if p.result_file.exists()]
        journals = {p.gate: p.journal for p in run.plans if p.journal.exists()}
        assert run.site is not None
        ledger_path = run.site.ledger
    outcomes = load_outcomes(results)
    summary = summarise(outcomes)
    ledger = check_ledger(ledger_path, journals)
    failed_gates = sorted(gate for gate, code in exit_codes.items() if code not in (0, None))
    ok = (
        summary.counterfeits_passed == 0
        and summary.accounted
        and ledger.ok
        and not failed_gates
        and len(results) == settings.gates
        and not interrupted
    )
    if as_json:
        report = {
            **summary.to_json(),
            "gates": settings.gates,
            "ledger": {
                "expected": ledger.expected,
                "recorded": ledger.recorded,
                "missing": list(ledger.missing),
                "wrong": list(ledger.wrong),
            },
            "failed_gates": failed_gates,
            "ok": ok,
        }
        typer.echo(json.dumps(report))
    else:
        _print_summary(console, summary, ledger, failed_gates)
    if interrupted:
        return 130
    return 0 if ok else 1


def _follow(console: Console, run: SiteRun, live_ui: bool) -> None:
    """Show progress until every gate simulator has exited."""
    if not live_ui or not console.is_terminal:
        reported: set[str] = set()
        while True:
            running = run.gates_running()
            for p in run.progress():
                if p.state in ("done", "failed") and p.gate not in reported:
                    reported.add(p.gate)
                    console.print(_one_line(p))
            if not running:
                break
            time.sleep(_REFRESH_S)
        run.wait_gates()
        return
    with Live(_table(run.progress()), console=console, refresh_per_second=4) as live:
        while run.gates_running():
            live.update(_table(run.progress()))
            time.sleep(_REFRESH_S)
        run.wait_gates()
        live.update(_table(run.progress()))


def _table(progress: list[GateProgress]) -> Table:
    table = Table(title="Gates", title_justify="left")
    for column in ("gate", "kind", "state"):
        table.add_column(column)
    for column in ("items", "items/s", "passed", "rejected", "held", "late", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    for p in progress:
        n = p.numbers
        style = _STATE_STYLE.get(p.state, "")
        state = p.state if p.state != "preparing" else (p.message or p.state)
        table.add_row(
            p.gate,
            p.kind.value,
            f"[{style}]{state}[/{style}]" if style else state,
            f"{n.get('items', 0)}/{p.planned}",
            _num(n.get("items_per_s")),
            str(n.get("passed", 0)),
            f"[red]{n.get('rejected', 0)}[/red]",
            f"[yellow]{n.get('held', 0)}[/yellow]",
            str(n.get("late", 0)),
            _num(n.get("p50_ms")),
            _num(n.get("p99_ms")),
        )
    return table


def _num(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "–"


def _one_line(p: GateProgress) -> str:
    n = p.numbers
    return (
        f"{p.gate} ({p.kind.value}) {p.state}: {n.get('items', 0)}/{p.planned} items, "
        f"passed {n.get('passed', 0)}, rejected {n.get('rejected', 0)}, held {n.get('held', 0)}, "
        f"late {n.get('late', 0)}, p99 {_num(n.get('p99_ms'))} ms"
        + (f" ({p.message})" if p.state == "failed" and p.message else "")
    )


def _print_summary(
    console: Console, summary: Summary, ledger: LedgerCheck, failed_gates: list[str]
) -> None:
    table = Table(title="What the gates did, against the truth", title_justify="left")
    table.add_column("item was")
    for column in ("PASS", "REJECT", "HOLD", "undecided"):
        table.add_column(column, justify="right")
    for truth, counts in summary.by_truth.items():
        passed = counts.get("PASS", 0)
        shown = f"[bold red]{passed}[/bold red]" if truth != "genuine" and passed else str(passed)
        table.add_row(
            truth.replace("_", " "),
            shown,
            str(counts.get("REJECT", 0)),
            str(counts.get("HOLD", 0)),
            str(counts.get("undecided", 0)),
        )
    console.print(table)
    s = summary
    p50 = "–" if s.latency_p50_ms is None else f"{s.latency_p50_ms:.1f}"
    p99 = "–" if s.latency_p99_ms is None else f"{s.latency_p99_ms:.1f}"
    console.print(
        f"{s.items} items: {s.passed} passed, {s.rejected} rejected, {s.held} held; "
        f"{s.counterfeits} counterfeits; scan-to-decision p50 {p50} ms, p99 {p99} ms; "
        f"{s.items_per_s:.1f} items/s; {s.late_decisions} late"
    )
    console.print(
        _check(s.counterfeits_passed == 0, f"counterfeits passed: {s.counterfeits_passed}")
    )
    console.print(
        _check(
            s.accounted,
            f"every item decided and journaled: {s.passed + s.rejected + s.held}/{s.items}",
        )
    )
    console.print(
        _check(
            ledger.ok,
            f"gate events in the ledger once each: {ledger.recorded}/{ledger.expected}"
            + (f", missing {', '.join(ledger.missing[:5])}" if ledger.missing else "")
            + (f", wrong {'; '.join(ledger.wrong[:3])}" if ledger.wrong else ""),
        )
    )
    console.print(
        f"genuine items rejected {s.genuine_rejected}, held {s.genuine_held} "
        "(held: random or risk-based inspection, or no verdict in time)"
    )
    if failed_gates:
        console.print(f"[red]gate simulators failed: {', '.join(failed_gates)}[/red]")


def _check(ok: bool, text: str) -> str:
    return f"[green]✓[/green] {text}" if ok else f"[bold red]✗ {text}[/bold red]"
