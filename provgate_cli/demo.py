"""``provgate demo``: the main job on embedded defaults, on one machine, no hardware.

A private mosquitto (the embedded broker where it is not installed; or ``--mqtt``), the real
gateway on a freshly seeded SQLite ledger, and N simulated gates, each its own process: the
real gate agent fed by simulated scanners, RFID readers and cameras on real ptys and a
conveyor that moves a stream of genuine items and counterfeits of every kind past them
(:mod:`simulators.site_run`); all belts start together once every gate is ready. A live
table per gate while the belts run, then a summary checked against the truth
(:mod:`simulators.site_summary`): no counterfeit went past a diverter, every planned item
decided and journaled once, the diverter fired for exactly the items rejected or held in
time, every gate event in the gateway's ledger once. Ctrl-C stops the gates (each decides
what is on its belt), then the gateway and the broker, and prints a partial summary.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from hardware.cli import EXIT_INVALID

if TYPE_CHECKING:  # the simulators (OpenCV, the gateway, its API) load when the demo runs
    from simulators.site_run import GateProgress, RunSettings, SiteRun
    from simulators.site_summary import ItemOutcome, LedgerCheck, Summary

__all__ = ["demo"]

EXIT_INTERRUPTED: Final = 130
_REFRESH_S: Final = 0.25
_INTERRUPT_WAIT_S: Final = 30.0
_STATE_STYLE: Final = {
    "starting": "dim",
    "preparing": "yellow",
    "ready": "yellow",
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
    broker: Annotated[
        str,
        typer.Option(
            "--broker",
            help="The private broker: auto (mosquitto if installed), mosquitto or embedded.",
        ),
    ] = "auto",
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
            help="Keep the run in this new or empty directory (ledger, journals, results, "
            "logs) instead of a temporary one.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the gates on embedded defaults: scan, verify, decide, divert, and count.

    Exit 0 when no counterfeit went past a diverter and every item is accounted for in
    the journals, the diverter recordings and the ledger; 1 otherwise (or when a part
    failed to start); 2 for bad options; 130 when interrupted (Ctrl-C), after a partial
    summary.
    """
    from simulators.site_run import BROKERS, RunSettings

    if items is not None and duration is not None:
        raise _bad("--items and --duration exclude each other: give one")
    if broker not in BROKERS:
        raise _bad(f"--broker must be one of {', '.join(BROKERS)}, not {broker!r}")
    if mqtt_url is not None and broker != "auto":
        raise _bad("--mqtt and --broker exclude each other: --mqtt uses your broker")
    if keep is not None and (keep.is_file() or (keep.is_dir() and any(keep.iterdir()))):
        raise _bad(f"--keep {keep}: give a new or empty directory (this one is in use)")
    per_gate = items if items is not None else 40
    if duration is not None:
        per_gate = max(1, math.ceil(rate * duration))
    try:
        settings = RunSettings(gates, per_gate, rate, counterfeit_rate, seed, mqtt_url, broker)
    except ValueError as exc:
        raise _bad(f"--mqtt: {exc}" if mqtt_url is not None else str(exc)) from None
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
    """Run the site, stop it, check and print what it did; the exit status."""
    from simulators.site_run import SiteRun, SiteRunError

    console.print(
        f"[bold]provgate demo[/bold]: {settings.gates} gates × {settings.items} items at "
        f"{settings.rate:g} items/s, {settings.counterfeit_rate:.0%} counterfeits, seed "
        f"{settings.seed}"
    )
    run = SiteRun(directory, settings)
    interrupted = False
    try:
        try:
            _start_and_follow(console, run, live_ui)
        except KeyboardInterrupt:
            interrupted = True
            console.print(
                "[yellow]interrupted: stopping the gates (each decides what is on its belt; "
                "Ctrl-C again to kill them)[/yellow]"
            )
            run.interrupt_gates()
            run.wait_gates(_INTERRUPT_WAIT_S)
        run.stop()  # gateway and broker too, so the ledger is quiet for the check
    except SiteRunError as exc:
        _stop_quietly(run)
        console.print(f"[red]demo could not start: {exc}[/red]")
        if as_json:
            typer.echo(json.dumps({"error": str(exc), "ok": False}))
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # nor a traceback from a third
        run.kill()
        console.print("[yellow]interrupted again: everything killed, no summary[/yellow]")
        return EXIT_INTERRUPTED
    if run.site is None or run.started_at is None:
        console.print("[yellow]interrupted before the belts started: nothing to count[/yellow]")
        if as_json:
            typer.echo(json.dumps({"interrupted": True, "ok": False}))
        return EXIT_INTERRUPTED
    return _report(console, run, interrupted=interrupted, as_json=as_json)


def _stop_quietly(run: SiteRun) -> None:
    """Stop what runs; a further Ctrl-C kills it instead of waiting."""
    try:
        run.stop()
    except KeyboardInterrupt:
        run.kill()


def _report(console: Console, run: SiteRun, *, interrupted: bool, as_json: bool) -> int:
    """Check the stopped run against the truth and the ledger, print it; the exit status."""
    from simulators.site_summary import check_ledger, load_gate, summarise

    assert run.site is not None
    gates = [load_gate(p.gate, p.items_file, p.result_file) for p in run.plans]
    outcomes = [o for g in gates for o in g.items]
    summary = summarise(outcomes, gates=gates)
    ledger = check_ledger(run.site.ledger, {p.gate: p.journal for p in run.plans})
    logs = {p.gate: p.log_file for p in run.plans}
    failed = {g: logs[g] for g, code in run.gate_exit_codes().items() if code != 0}
    ok = (
        summary.counterfeits_passed == 0
        and summary.accounted
        and summary.diverted_right
        and ledger.ok
        and not failed
        and run.gateway_failure is None
        and not interrupted
    )
    if as_json:
        report = {
            **summary.to_json(),
            "gates": run.settings.gates,
            "ledger": {
                "expected": ledger.expected,
                "recorded": ledger.recorded,
                "missing": list(ledger.missing),
                "wrong": list(ledger.wrong),
            },
            "failed_gates": sorted(failed),
            "gateway_failure": run.gateway_failure,
            "logs": str(run.directory),
            "interrupted": interrupted,
            "ok": ok,
        }
        typer.echo(json.dumps(report))
    else:
        _print_summary(console, summary, outcomes, ledger)
        for gate, log_path in sorted(failed.items()):
            console.print(f"[red]gate simulator {gate} failed; its log: {log_path}[/red]")
        if run.gateway_failure is not None:
            console.print(f"[red]{run.gateway_failure}[/red]")
        if interrupted:
            console.print(
                f"[yellow]interrupted: a partial run ({summary.on_belt} of {summary.items} "
                "items reached the belt)[/yellow]"
            )
    if interrupted:
        return EXIT_INTERRUPTED
    return 0 if ok else 1


def _start_and_follow(console: Console, run: SiteRun, live_ui: bool) -> None:
    """Start the site and show progress until every gate simulator has exited: a live table
    on a terminal (from label rendering on), else one line per gate as it finishes."""

    def say(step: str) -> None:
        console.print(f"  {step}")

    if not live_ui or not console.is_terminal:
        with console.status("preparing"):
            run.start(on_step=say)
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

        def refresh() -> None:
            live.update(_table(run.progress()))

        run.start(on_step=say, on_wait=refresh)
        while run.gates_running():
            refresh()
            time.sleep(_REFRESH_S)
        run.wait_gates()
        refresh()


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
            f"{_decided(n)}/{p.planned}",
            _num(n.get("items_per_s")),
            str(n.get("passed", 0)),
            f"[red]{n.get('rejected', 0)}[/red]",
            f"[yellow]{n.get('held', 0)}[/yellow]",
            str(n.get("late", 0)),
            _num(n.get("p50_ms")),
            _num(n.get("p99_ms")),
        )
    return table


def _decided(numbers: dict[str, Any]) -> int:
    """Items decided so far: the agent's count while running, the result's at the end."""
    value = numbers.get("decided", numbers.get("items", 0))
    return value if isinstance(value, int) else 0


def _num(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "–"


def _one_line(p: GateProgress) -> str:
    n = p.numbers
    return (
        f"{p.gate} ({p.kind.value}) {p.state}: {_decided(n)}/{p.planned} items decided, "
        f"passed {n.get('passed', 0)}, rejected {n.get('rejected', 0)}, held {n.get('held', 0)}, "
        f"late {n.get('late', 0)}, p99 {_num(n.get('p99_ms'))} ms"
        + (f" ({p.message})" if p.state == "failed" and p.message else "")
        + (" (stopped early)" if n.get("stopped_early") else "")
    )


def _print_summary(
    console: Console, summary: Summary, outcomes: list[ItemOutcome], ledger: LedgerCheck
) -> None:
    table = Table(title="What the gates did, against the truth", title_justify="left")
    table.add_column("item was")
    columns = ["PASS", "REJECT", "HOLD", "not diverted", "undecided"]
    if summary.on_belt < summary.items:
        columns.append("not on belt")
    for column in columns:
        table.add_column(column, justify="right")
    for truth, counts in summary.by_truth.items():
        fake = truth != "genuine"
        passed, missed = counts.get("PASS", 0), counts.get("missed", 0)
        undecided = counts.get("undecided", 0)
        cells = [
            truth.replace("_", " "),
            f"[bold red]{passed}[/bold red]" if fake and passed else str(passed),
            str(counts.get("REJECT", 0)),
            str(counts.get("HOLD", 0)),
            f"[bold red]{missed}[/bold red]" if missed else "0",
            f"[bold red]{undecided}[/bold red]" if undecided else "0",
            str(counts.get("not_on_belt", 0)),
        ]
        table.add_row(*cells[: len(columns) + 1])
    console.print(table)
    s = summary
    p50 = "–" if s.latency_p50_ms is None else f"{s.latency_p50_ms:.1f}"
    p99 = "–" if s.latency_p99_ms is None else f"{s.latency_p99_ms:.1f}"
    console.print(
        f"{s.items} items: {s.passed} passed, {s.rejected} rejected, {s.held} held; "
        f"{s.counterfeits} counterfeits; scan-to-decision p50 {p50} ms, p99 {p99} ms; "
        f"{s.items_per_s:.1f} items/s decided; {s.late_decisions} late"
    )
    console.print(
        _check(
            s.counterfeits_passed == 0,
            f"counterfeits past the diverter: {s.counterfeits_passed}",
        )
    )
    console.print(
        _check(
            s.accounted,
            f"every item decided and journaled once: {s.passed + s.rejected + s.held}/{s.items}"
            + (f", {s.stray_rows} journal rows of no item" if s.stray_rows else "")
            + "".join(f"; {problem}" for problem in s.problems),
        )
    )
    console.print(
        _check(
            s.diverted_right,
            "diverter fired for exactly the items rejected or held in time"
            + (f": missed {s.missed_diversions}" if s.missed_diversions else "")
            + (f", hit {s.wrong_diversions} passed" if s.wrong_diversions else "")
            + (f", {s.stray_pulses} stray pulses" if s.stray_pulses else ""),
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
        f"genuine items rejected {s.genuine_rejected}, held {s.genuine_held}"
        + _top_reasons(
            o for o in outcomes if not o.counterfeit and o.decision in ("REJECT", "HOLD")
        )
        + (f"; {s.misread} items verified under a neighbour's ID" if s.misread else "")
    )


def _top_reasons(outcomes: Iterable[ItemOutcome]) -> str:
    """`` (why: reason ×n, …)`` over the outcomes' reason codes, or nothing."""
    counts = Counter(reason for o in outcomes for reason in o.reasons)
    if not counts:
        return ""
    return " (why: " + ", ".join(f"{r} ×{n}" for r, n in counts.most_common(4)) + ")"


def _check(ok: bool, text: str) -> str:
    return f"[green]✓[/green] {text}" if ok else f"[bold red]✗ {text}[/bold red]"
