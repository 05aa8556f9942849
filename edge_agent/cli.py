"""``provgate agent run``: one gate's agent on its real devices, until Ctrl-C.

Loads a gate profile, builds the drivers it names with the agent's ``on_*`` methods as
their callbacks, starts verification, the outbox, the label check (if the profile has
``vision:``) and the agent, and stops them all, in reverse order, on SIGINT / SIGTERM or
after ``--duration``. The counters go to stdout at the end.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final

import typer

from edge_agent.agent import GateAgent
from edge_agent.outbox import Outbox
from edge_agent.profile import GateProfile, load_gate_profile
from edge_agent.vision.checker import LabelChecker
from edge_agent.vision.worker import VisionWorker
from gatewire.yamlconfig import ConfigError
from hardware.barcode.driver import SerialScanner
from hardware.base import Device
from hardware.camera.driver import OpenCvCamera
from hardware.cli import EXIT_INVALID, reflow_help, stop_on_signals
from hardware.gate_io.interface import GateIo
from hardware.registry import build_device
from hardware.rfid.driver import ThingMagicReader

__all__ = ["app", "run"]

log = logging.getLogger(__name__)

_POLL_S: Final = 0.1
_VERIFY_WAIT_S: Final = 5.0
_DRAIN_S: Final = 2.0

app = typer.Typer(
    help="Run a gate agent: scan, verify, decide and divert on the belt.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


@dataclass(slots=True)
class _Gate:
    """Everything one run started, stopped in reverse order."""

    agent: GateAgent
    gate_io: GateIo
    outbox: Outbox
    vision: VisionWorker | None
    drivers: list[Device] = field(default_factory=list)
    unsubscribe: list[Callable[[], None]] = field(default_factory=list)


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(EXIT_INVALID)


def _build(profile: GateProfile, key: bytes) -> _Gate:
    """The agent, its gate I/O, outbox, label check and drivers (nothing started)."""
    device = build_device(profile.devices.gate_io)
    if not isinstance(device, GateIo):  # pragma: no cover - the profile's type ensures it
        raise TypeError(f"devices.gate_io built a {type(device).__name__}, not gate I/O")
    vision = None
    if profile.vision is not None:
        vision = VisionWorker(LabelChecker(profile.vision))
    gate = profile.gate
    outbox = Outbox(
        profile.journal.path,
        profile.verification.mqtt_url,
        f"provgate-{gate.site}-{gate.id}-outbox",
    )
    agent = GateAgent.from_profile(profile, key=key, gate_io=device, vision=vision, outbox=outbox)
    built = _Gate(agent, device, outbox, vision)
    devices = profile.devices
    if devices.scanner is not None:
        built.drivers.append(SerialScanner(devices.scanner, on_scan=agent.on_scan))
    if devices.rfid is not None:
        built.drivers.append(ThingMagicReader(devices.rfid, on_sighting=agent.on_sighting))
    for camera in devices.cameras:
        built.drivers.append(OpenCvCamera(camera, on_frame=agent.on_frame))
    return built


def _start(gate: _Gate) -> bool:
    """Start everything, sinks before sources; True when the gateway answered in time."""
    gate.gate_io.start()
    connected = gate.agent.verify.start(_VERIFY_WAIT_S)
    gate.agent.start()  # opens the journal, which creates the outbox table
    gate.outbox.start()
    gate.unsubscribe.append(gate.gate_io.subscribe(gate.agent.on_photo_eye))
    for driver in gate.drivers:
        driver.start()
    return connected


def _stop(gate: _Gate) -> None:
    """Stop the sources, let the agent decide what is in flight, then the sinks."""
    for driver in reversed(gate.drivers):
        _quietly(driver.stop, driver)
    for unsubscribe in gate.unsubscribe:
        unsubscribe()
    _quietly(gate.agent.stop, "agent")
    _quietly(gate.agent.verify.close, "verification")
    if not gate.outbox.wait_drained(_DRAIN_S):
        log.warning("agent: outbox not drained; the rest is sent on the next start")
    _quietly(gate.outbox.stop, "outbox")
    if gate.vision is not None:
        _quietly(gate.vision.stop, "vision")
    _quietly(gate.gate_io.stop, gate.gate_io)


def _quietly(stop: Callable[[], object], what: object) -> None:
    """Call ``stop``; a failure is logged, so the rest still stops."""
    try:
        stop()
    except Exception as exc:
        log.error("agent: stopping %s failed: %s", getattr(what, "name", what), exc)


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
    rejected, held, late, recovered) go to stdout. Exit 2 when the profile is invalid or
    the gate key missing; 0 otherwise.
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
        gate = _build(profile, key)
    except (ValueError, OSError, RuntimeError) as exc:
        raise _fail(f"{config}: cannot build the gate: {exc}") from None
    deadline = None if duration is None else time.monotonic() + duration
    reason = "duration reached"
    with stop_on_signals() as stop:
        try:
            if not _start(gate):
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
            _stop(gate)
    counters = gate.agent.counters()
    if as_json:
        typer.echo(json.dumps({"reason": reason, **counters}))
    else:
        typer.echo(f"stopped ({reason}): " + ", ".join(f"{k} {v}" for k, v in counters.items()))
    if reason == "start failed":
        raise typer.Exit(1)
