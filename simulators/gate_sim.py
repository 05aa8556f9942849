"""One simulated gate as its own process: the real agent fed by simulated devices on a belt.

``python -m simulators.gate_sim --profile TEMPLATE.yaml --gate ID --key-file F --mqtt URL
--journal PATH --items ITEMS.json --rate R --out RESULT.json [--site SITE]
[--label-seed S] [--progress-s 0.5] [--wait-go] [--log-level LEVEL]`` loads a gate
profile template (``firmware_configs/gates/demo-*.yaml``), puts in the gate id, key file,
broker, journal, the simulated scanner's and RFID reader's ptys and the belt cameras,
validates it, pre-renders every item's label, builds and starts the gate exactly as
``provgate agent run`` does (:func:`edge_agent.runner.build_gate`, real drivers), runs the
:class:`~simulators.conveyor.Conveyor`, waits until every item is decided and diverted,
stops the gate (outbox drained) and writes RESULT.json (:mod:`simulators.gate_result`).

Stdout carries JSON lines only: ``{"event": "rendering", ...}`` while labels render,
``{"event": "ready", ...}`` once the gate runs, ``{"event": "progress", ...}`` every
``--progress-s``, ``{"event": "done", ...}`` at the end. With ``--wait-go`` the belt
starts only when a line ``go`` arrives on stdin (the demo starts all belts together).
Logs go to stderr. SIGINT and SIGTERM stop the belt and the gate cleanly; the result
covers what was decided. Exit status: 0 done, 1 the gate could not start, 2 bad
arguments, items or profile.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

from edge_agent.profile import GateProfile, parse_gate_profile
from edge_agent.runner import GateRun, build_gate
from gatewire.yamlconfig import ConfigError, read_yaml_file
from hardware.camera.driver import OpenCvCamera
from hardware.gate_io.sim import SimGateIo
from simulators.belt_camera import (
    SOURCE_PREFIX,
    BeltCameras,
    FrameData,
    decode_frame,
    label_id,
    render_label_frames,
)
from simulators.conveyor import BeltItem, Conveyor
from simulators.gate_result import GateReport, build_result, read_journal
from simulators.labels import sample_seed
from simulators.rfid_reader import MODELS, SimulatorSettings
from simulators.scanner import SimulatedScanner
from simulators.scenario import ScenarioItem
from simulators.serial_endpoint import PtyEndpoint
from simulators.thingmagic import ThingMagicSimulator

__all__ = ["EXIT_BAD_INPUT", "EXIT_OK", "EXIT_START_FAILED", "main"]

log = logging.getLogger("simulators.gate_sim")

EXIT_OK: Final = 0
EXIT_START_FAILED: Final = 1
EXIT_BAD_INPUT: Final = 2
RFID_READ_RATE_HZ: Final = 250.0
_SETTLE_S: Final = 0.1  # after the last diverter moment: its journal write, the pulse's end
_CAMERA_OPEN_S: Final = 5.0
DECODED_BUDGET_BYTES: Final = 512 * 1024 * 1024
"""Frames are decoded before the belt starts while they fit this (a 640×480 frame is 0.9 MB):
a camera delivers its frames without the gate's CPU, so the simulator's JPEG decoding
should not compete with the agent during the run. Frames beyond it stay JPEG and are
decoded just before their item reaches the photo eye."""


class BadInputError(Exception):
    """Arguments, items or profile that cannot be used (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.gate_sim",
        description="Run one gate (real agent, simulated devices) over a list of items.",
    )
    parser.add_argument("--profile", required=True, type=Path, help="gate profile template")
    parser.add_argument("--gate", required=True, help="gate id (in-…, out-…)")
    parser.add_argument("--key-file", required=True, type=Path, help="the gate's key file")
    parser.add_argument("--mqtt", required=True, help="broker URL, mqtt://host:port")
    parser.add_argument("--journal", required=True, type=Path, help="the agent's journal")
    parser.add_argument("--items", required=True, type=Path, help="scenario items (JSON)")
    parser.add_argument("--rate", required=True, type=float, help="items per second")
    parser.add_argument("--out", required=True, type=Path, help="where RESULT.json goes")
    parser.add_argument("--site", help="site id (default: the template's)")
    parser.add_argument("--label-seed", type=int, default=0, help="seed of the label renders")
    parser.add_argument("--progress-s", type=float, default=0.5, help="progress line interval")
    parser.add_argument(
        "--wait-go",
        action="store_true",
        help="after 'ready', start the belt only when stdin gives a line 'go'",
    )
    parser.add_argument("--log-level", default="WARNING", help="stderr log level")
    return parser


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout."""
    print(json.dumps({"event": event, **fields}, separators=(",", ":")), flush=True)


def load_items(path: Path) -> list[ScenarioItem]:
    """Scenario items from a JSON list (or ``{"items": [...]}``); BadInputError if unusable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = data["items"]
        if not isinstance(data, list):
            raise TypeError("expected a list of items")
        items = [ScenarioItem.from_json(entry) for entry in data]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{path}: not a list of scenario items: {exc}") from None
    if len({item.seq for item in items}) != len(items):
        raise BadInputError(f"{path}: item seqs must be distinct")
    return sorted(items, key=lambda item: item.seq)


def load_profile(
    template: Path, args: argparse.Namespace, scanner_port: str | None, rfid_port: str | None
) -> GateProfile:
    """The template with this process's gate, key, broker, journal and devices put in."""
    try:
        data, lines = read_yaml_file(template)
    except ConfigError as exc:
        raise BadInputError(str(exc)) from None
    if not isinstance(data, dict):
        raise BadInputError(f"{template}: not a gate profile mapping")
    gate = dict(data.get("gate") or {})
    gate.pop("key_env", None)
    gate.update(id=args.gate, key_file=str(args.key_file))
    if args.site is not None:
        gate["site"] = args.site
    devices = dict(data.get("devices") or {})
    for slot, port in (("scanner", scanner_port), ("rfid", rfid_port)):
        if isinstance(devices.get(slot), dict) and port is not None:
            devices[slot] = {**devices[slot], "port": port}
    cameras = devices.get("cameras") or []
    if isinstance(cameras, list):
        devices["cameras"] = [
            {**c, "source": SOURCE_PREFIX + str(c.get("name", "camera"))}
            if isinstance(c, dict)
            # a bad entry stays as it is: validation names it
            else c
            for c in cameras
        ]
    verification = {**(data.get("verification") or {}), "mqtt_url": args.mqtt}
    journal = {**(data.get("journal") or {}), "path": str(args.journal)}
    merged = {
        **data,
        "gate": gate,
        "devices": devices,
        "verification": verification,
        "journal": journal,
    }
    try:
        profile = parse_gate_profile(merged, str(template), lines, template.parent)
    except ConfigError as exc:
        raise BadInputError(str(exc)) from None
    if profile.devices.gate_io.type != "sim_gate_io":
        raise BadInputError(f"{template}: devices.gate_io must be type sim_gate_io in simulation")
    return profile


@dataclass
class SimDevices:
    """The simulated scanner, RFID reader and cameras of one gate."""

    scanner_port: PtyEndpoint | None
    rfid_port: PtyEndpoint | None
    scanner: SimulatedScanner | None = None
    rfid: ThingMagicSimulator | None = None
    cameras: BeltCameras | None = None

    @classmethod
    def for_template(cls, data: dict[str, Any]) -> SimDevices:
        """Ptys for the scanner and the reader the template has (started once configured)."""
        devices = data.get("devices")
        devices = devices if isinstance(devices, dict) else {}
        scanner = PtyEndpoint() if devices.get("scanner") is not None else None
        rfid = PtyEndpoint() if devices.get("rfid") is not None else None
        return cls(scanner, rfid)

    def configure(self, profile: GateProfile, seed: int) -> BeltCameras:
        """Simulators that send what the profile's devices expect; the reader serves."""
        scanner_cfg, rfid_cfg = profile.devices.scanner, profile.devices.rfid
        if self.scanner_port is not None and scanner_cfg is not None:
            self.scanner = SimulatedScanner(
                self.scanner_port,
                ["-"],  # codes are sent by the conveyor, one per item
                suffix=scanner_cfg.suffix,
                prefix=scanner_cfg.prefix,
                wait_for_reader=False,
            )
        if self.rfid_port is not None and rfid_cfg is not None:
            model = rfid_cfg.model if rfid_cfg.model in MODELS else "m6e_nano"
            settings = SimulatorSettings(
                model=model,  # type: ignore[arg-type]  # checked against MODELS
                read_rate_hz=RFID_READ_RATE_HZ,
                multi_reads=2,
                seed=seed,
            )
            self.rfid = ThingMagicSimulator(self.rfid_port, settings).start()
        self.cameras = BeltCameras(c.name for c in profile.devices.cameras)
        return self.cameras

    def close(self) -> None:
        """Shut the cameras, stop the reader, hang up the ptys."""
        if self.cameras is not None:
            self.cameras.shut()
        if self.rfid is not None:
            self.rfid.close()
        for port in (self.scanner_port, self.rfid_port):
            if port is not None:
                port.close()


def prerender(
    items: Sequence[ScenarioItem],
    profile: GateProfile,
    seed: int,
    progress_s: float,
    stop: threading.Event,
) -> tuple[list[BeltItem], float]:
    """Every item's belt view (labels rendered now, not on the belt, and decoded while
    they fit ``DECODED_BUDGET_BYTES``); (items, seconds)."""
    vision = profile.vision
    frames = 0 if vision is None or not profile.devices.cameras else 2 if vision.two_frame else 1
    started = next_line = time.monotonic()
    out = []
    budget = DECODED_BUDGET_BYTES
    for count, item in enumerate(items):
        if stop.is_set():
            break
        views: tuple[FrameData, ...] = ()
        if frames:
            own = sample_seed(seed, item.seq)
            views = render_label_frames(
                own, item.label_kind, label_id(item.barcode, item.item), frames
            )
            decoded = [decode_frame(view) for view in views] if budget > 0 else []
            images = [image for image in decoded if image is not None]
            if images and len(images) == len(views):  # an undecodable one stays as it is
                views = tuple(images)
                budget -= sum(image.nbytes for image in images)
        out.append(BeltItem(item.seq, item.barcode, item.rfid_epc, views))
        if time.monotonic() >= next_line:
            next_line += progress_s
            emit("rendering", gate=profile.gate.id, rendered=count + 1, items=len(items))
    return out, time.monotonic() - started


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    """The whole run; the exit status."""
    items = load_items(args.items)
    if not (args.rate > 0 and args.progress_s > 0):
        raise BadInputError("--rate and --progress-s must be positive")
    try:
        template_data, _ = read_yaml_file(args.profile)
    except ConfigError as exc:
        raise BadInputError(str(exc)) from None
    if not isinstance(template_data, dict):
        raise BadInputError(f"{args.profile}: not a gate profile mapping")
    sim = SimDevices.for_template(template_data)
    try:
        scanner_port = sim.scanner_port.url if sim.scanner_port is not None else None
        rfid_port = sim.rfid_port.url if sim.rfid_port is not None else None
        profile = load_profile(args.profile, args, scanner_port, rfid_port)
        try:
            key = profile.gate.load_key()
        except ValueError as exc:
            raise BadInputError(str(exc)) from None
        cameras = sim.configure(profile, args.label_seed)
        belt_items, render_s = prerender(items, profile, args.label_seed, args.progress_s, stop)
        try:
            gate = build_gate(profile, key, camera_source=cameras.open)
        except (OSError, RuntimeError, ValueError) as exc:
            log.error("gate_sim: cannot build the gate: %s", exc)
            return EXIT_START_FAILED
        return _run_gate(args, profile, gate, sim, cameras, items, belt_items, render_s, stop)
    finally:
        sim.close()


def _run_gate(
    args: argparse.Namespace,
    profile: GateProfile,
    gate: GateRun,
    sim: SimDevices,
    cameras: BeltCameras,
    items: Sequence[ScenarioItem],
    belt_items: list[BeltItem],
    render_s: float,
    stop: threading.Event,
) -> int:
    io = gate.gate_io
    assert isinstance(io, SimGateIo)  # load_profile refused anything else
    try:
        connected = gate.start()
    except RuntimeError as exc:
        log.error("gate_sim: the gate could not start: %s", exc)
        _quiet(gate.stop)
        return EXIT_START_FAILED
    if not connected:
        log.warning("gate_sim: no broker at %s yet: items are held until it answers", args.mqtt)
    for driver in gate.drivers:
        if isinstance(driver, OpenCvCamera) and not driver.wait_healthy(_CAMERA_OPEN_S):
            log.warning("gate_sim: camera %s did not open", driver.name)
    belt = profile.belt
    conveyor = Conveyor(
        belt_items,
        rate=args.rate,
        window_s=belt.window_s,
        lead_s=belt.lead_s,
        gate_io=io,
        scanner=sim.scanner,
        rfid=sim.rfid,
        cameras=[cameras[c.name] for c in profile.devices.cameras],
    )
    report = GateReport(profile, args.journal, items, args.rate)
    emit(
        "ready",
        gate=profile.gate.id,
        kind=profile.gate.kind.value,
        items=len(belt_items),
        rate=args.rate,
        connected=connected,
        render_s=round(render_s, 3),
        scanner=sim.scanner.url if sim.scanner is not None else None,
        rfid=sim.rfid.url if sim.rfid is not None else None,
        cameras=[c.name for c in profile.devices.cameras],
    )
    stopped_early = True
    try:
        if args.wait_go and not _wait_for_go(stop):
            log.warning("gate_sim: no 'go' on stdin: the belt never started")
        else:
            conveyor.start()
            stopped_early = _run_belt(gate, conveyor, report, stop, args.progress_s)
    finally:
        conveyor.stop()
        cameras.shut()
        gate.stop()
    return _finish(args, profile, gate, report, conveyor, render_s, stopped_early=stopped_early)


def _run_belt(
    gate: GateRun, conveyor: Conveyor, report: GateReport, stop: threading.Event, every_s: float
) -> bool:
    """Progress lines until every item passed, was decided and diverted; True if stopped."""
    ticker = _Ticker(every_s, lambda: report.progress(gate.agent.counters(), conveyor))
    stopped_early = _wait(lambda: conveyor.done, stop, ticker, None)
    passages = conveyor.passages
    if passages and not stopped_early:
        last = passages[-1].trigger + report.divert_s + _SETTLE_S
        idle = lambda: time.monotonic() >= last and gate.agent.wait_idle(0)  # noqa: E731
        stopped_early = _wait(idle, stop, ticker, last + 10.0)
    return stopped_early


def _finish(
    args: argparse.Namespace,
    profile: GateProfile,
    gate: GateRun,
    report: GateReport,
    conveyor: Conveyor,
    render_s: float,
    *,
    stopped_early: bool,
) -> int:
    """Write RESULT.json from the stopped gate's journal and diverter, print ``done``."""
    io = gate.gate_io
    assert isinstance(io, SimGateIo)
    rows = read_journal(args.journal)
    result = build_result(
        report,
        conveyor,
        rows,
        io.diverter_pulses(),
        counters=gate.agent.counters(),
        health=[io.health(), *(d.health() for d in gate.drivers)],
        render_s=render_s,
        stopped_early=stopped_early,
    )
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
    tmp.replace(args.out)
    emit("done", gate=profile.gate.id, out=str(args.out), **result["summary"])
    return EXIT_OK


class _Ticker:
    """Prints a progress line every ``every_s``."""

    def __init__(self, every_s: float, fields: Callable[[], dict[str, Any]]) -> None:
        self.every_s, self.fields = every_s, fields
        self.next_at = time.monotonic() + every_s

    def __call__(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now >= self.next_at:
            self.next_at = now + self.every_s
            emit("progress", **self.fields())


def _wait(
    done: Callable[[], bool], stop: threading.Event, tick: _Ticker, give_up_at: float | None
) -> bool:
    """Tick until ``done()``; True if stopped first (a signal, or ``give_up_at`` passed)."""
    while not done():
        if give_up_at is not None and time.monotonic() >= give_up_at:
            log.error("gate_sim: items still undecided; stopping anyway")
            return True
        if stop.wait(min(tick.every_s, 0.05)):
            return True
        tick()
    tick(force=True)
    return False


def _wait_for_go(stop: threading.Event) -> bool:
    """Block until stdin gives a line ``go`` (True), or it ends or a signal comes (False)."""
    go = threading.Event()

    def read() -> None:
        line = sys.stdin.readline()
        (go if line.strip() == "go" else stop).set()

    threading.Thread(target=read, name="gate-sim-go", daemon=True).start()
    while not go.is_set():
        if stop.wait(0.05):
            return go.is_set()
    return True


def _quiet(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception as exc:
        log.error("gate_sim: %s", exc)


def main(argv: Sequence[str] | None = None) -> int:
    """The process entry point; the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed why
        return EXIT_OK if exc.code == 0 else EXIT_BAD_INPUT
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.warning("gate_sim: signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return run(args, stop)
    except BadInputError as exc:
        log.error("gate_sim: %s", exc)
        print(f"gate_sim: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
