"""``provgate agent run``: one gate's agent on its real devices, until Ctrl-C.

Loads a gate profile, builds the gate (:func:`edge_agent.runner.build_gate`), starts it and
stops it, in reverse order, on SIGINT / SIGTERM or after ``--duration``. The counters go to
stdout at the end.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Final

import typer

from edge_agent.profile import load_gate_profile
from gatewire.yamlconfig import ConfigError
from hardware.cli import EXIT_INVALID, reflow_help, stop_on_signals

__all__ = ["app", "run"]

log = logging.getLogger(__name__)

_POLL_S: Final = 0.1

app = typer.Typer(
    help="Run a gate agent: scan, verify, decide and divert on the belt.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(EXIT_INVALID)


@app.command()
@reflow_help
def run(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            "-c",
            help="Gate profile (YAML, e.g. firmware_configs/gates/inbound.yaml): validated "
            "before anything starts.",
            show_default=False,
        ),
    ],
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            "-d",
            min=0.0,
            help="Stop after this many seconds. Without it, runs until Ctrl-C (SIGINT) or "
            "SIGTERM; stopping either way exits 0.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final counters as one JSON object.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log info messages on stderr.")
    ] = False,
) -> None:
    """Run the gate agent of a gate profile on the devices it names.

    Every item the photo eye (or a quiet gap) delimits is journaled, verified with the
    gateway, decided (PASS, REJECT or HOLD, fail closed) and diverted on time; gate events
    go to the gateway through the journal's outbox. At exit the counters (items, passed,
    rejected, held, late, recovered, diverter_late, agent_errors) go to stdout. Exit 2 when
    the profile is invalid or the gate key missing; 0 otherwise.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        profile = load_gate_profile(config)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(EXIT_INVALID) from None
    try:
        key = profile.gate.load_key()
    except ValueError as exc:
        raise _fail(f"{config}: gate key: {exc}") from None
    try:
        from edge_agent.runner import build_gate  # the drivers, OpenCV and the model

        gate = build_gate(profile, key)
    except (ValueError, OSError, RuntimeError) as exc:
        raise _fail(f"{config}: cannot build the gate: {exc}") from None
    deadline = None if duration is None else time.monotonic() + duration
    reason = "duration reached"
    with stop_on_signals() as stop:
        try:
            if not gate.start():
                log.warning("agent: gateway not reached yet; items are held until it is")
            while deadline is None or time.monotonic() < deadline:
                if stop:
                    reason = stop.name
                    break
                wait = _POLL_S if deadline is None else deadline - time.monotonic()
                time.sleep(max(0.0, min(_POLL_S, wait)))
        except RuntimeError as exc:
            typer.echo(f"agent: {exc}", err=True)
            reason = "start failed"
        finally:
            gate.stop()
    counters = gate.agent.counters()
    if as_json:
        typer.echo(json.dumps({"reason": reason, **counters}))
    else:
        typer.echo(f"stopped ({reason}): " + ", ".join(f"{k} {v}" for k, v in counters.items()))
    if reason == "start failed":
        raise typer.Exit(1)
