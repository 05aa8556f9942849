"""``provgate scan`` and ``provgate config check`` (mounted by ``provgate_cli.main``).

- ``scan``: a technician's diagnostic. Builds a barcode or RFID driver (from a device
  profile, or defaults), prints one line per scan or tag sighting (``--json``: one JSON
  object per line), stops after ``--count`` items or ``--timeout`` seconds, and prints the
  driver's counters to stderr.
- ``config check``: validates config files and says exactly what is wrong and where
  (``file:line: path: message``). Which model a file is checked against is decided by a
  small table of config kinds (:data:`CONFIG_KINDS`), each recognised by a top-level key;
  later packages add theirs with :func:`register_config_kind`.

:func:`stop_on_signals` (SIGINT / SIGTERM → a flag the command polls) is shared with
``simulators.cli``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Final, TypeVar

import typer
from pydantic import BaseModel

from gatewire.yamlconfig import ConfigError, ConfigProblem, parse_yaml
from hardware.barcode.driver import SerialScanner
from hardware.barcode.events import ScanEvent
from hardware.base import Device
from hardware.health import DeviceHealth
from hardware.registry import DeviceKind, build_device, drivers, parse_device_config
from hardware.rfid.config import ThingMagicConfig
from hardware.rfid.driver import ThingMagicReader
from hardware.rfid.sightings import TagSighting

__all__ = [
    "CONFIG_KINDS",
    "ConfigKind",
    "StopRequest",
    "check_config_file",
    "config_app",
    "read_yaml_mapping",
    "reflow_help",
    "register_config_kind",
    "scan",
    "stop_on_signals",
]

FuncT = TypeVar("FuncT", bound=Callable[..., Any])

EXIT_INVALID: Final = 2
_POLL_S: Final = 0.1
_DEFAULT_TYPES: Final = {
    DeviceKind.BARCODE: "serial_scanner",
    DeviceKind.RFID: "thingmagic_mercury",
}
# Control characters shown visibly in human output: GS as <GS>, the rest as \xNN.
_VISIBLE: Final = {
    code: ("<GS>" if code == 0x1D else f"\\x{code:02x}") for code in (*range(0x20), 0x7F)
}


# --- stopping on SIGINT / SIGTERM ------------------------------------------------------


@dataclass(slots=True)
class StopRequest:
    """Set when SIGINT or SIGTERM arrives; the command's loop polls it and exits cleanly."""

    signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        """The signal's name (``SIGINT``), or "" when none arrived."""
        return "" if self.signum is None else signal.Signals(self.signum).name


@contextlib.contextmanager
def stop_on_signals(
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[StopRequest]:
    """Turn the first SIGINT/SIGTERM into a :class:`StopRequest` instead of an exception.

    The handler only sets an attribute (no locks, safe at any point of the main thread);
    a second signal raises KeyboardInterrupt, to force a stuck shutdown. Previous
    handlers are restored on exit. Outside the main thread nothing is installed.
    """
    request = StopRequest()

    def handler(signum: int, _frame: FrameType | None) -> None:
        if request:
            raise KeyboardInterrupt
        request.signum = signum

    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in signals:
            with contextlib.suppress(ValueError):  # not the main thread
                previous[sig] = signal.signal(sig, handler)
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def reflow_help(func: FuncT) -> FuncT:
    """Join the lines of each paragraph of ``func``'s docstring.

    Typer's rich help keeps the line breaks of every paragraph after the first, which
    wraps badly in a terminal; with one line per paragraph the terminal width decides.
    """
    doc = inspect.cleandoc(func.__doc__ or "")
    func.__doc__ = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
    return func


# --- reading config files --------------------------------------------------------------


def read_yaml_mapping(path: str | Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Read a YAML file whose top level must be a mapping; return it and its line index.

    Raises ConfigError with one clear problem for an unreadable file, a YAML syntax
    error, an empty file or a top level that is not a mapping.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(source, None, "", "no such file")]) from None
    except IsADirectoryError:
        raise ConfigError([ConfigProblem(source, None, "", "is a directory, not a file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(source, None, "", f"cannot read: {exc}")]) from exc
    data, lines = parse_yaml(text, source)
    if data is None:
        message = "empty file; expected a mapping of settings (key: value lines)"
        raise ConfigError([ConfigProblem(source, None, "", message)])
    if not isinstance(data, dict):
        message = (
            "expected a mapping of settings (key: value lines) at the top level, "
            f"got {_yaml_type(data)}"
        )
        raise ConfigError([ConfigProblem(source, lines.get(()), "", message)])
    return data, lines


def _yaml_type(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def _at_own_line(
    error: ConfigError, lines: Mapping[tuple[str, ...], int], prefix: tuple[str, ...] = ()
) -> ConfigError:
    """``error`` with each problem on the line of the key its path names, when known.

    (The registry reports an unknown ``type`` at the line where the mapping starts.)
    """
    problems = []
    for problem in error.problems:
        key = (*prefix, *problem.path.split(".")) if problem.path else None
        line = lines.get(key) if key is not None else None
        problems.append(problem if line is None else replace(problem, line=line))
    return ConfigError(problems)


# --- config kinds ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigKind:
    """One kind of config file ``provgate config check`` knows.

    A file is of this kind when its top level has ``key``. ``check`` validates the whole
    mapping (raising ConfigError) and returns what to print after ``ok``, for example
    ``type serial_scanner, barcode device profile``.
    """

    name: str
    key: str
    check: Callable[[Mapping[str, Any], str, Mapping[tuple[str, ...], int]], str] = field(
        repr=False
    )


def _check_device(
    data: Mapping[str, Any], source: str, lines: Mapping[tuple[str, ...], int]
) -> str:
    try:
        config = parse_device_config(data, source, lines)
    except ConfigError as exc:
        raise _at_own_line(exc, lines) from exc
    tag = str(getattr(config, "type", ""))
    spec = drivers()[tag]
    return f"type {tag}, {spec.kind.value} device profile"


CONFIG_KINDS: list[ConfigKind] = [
    ConfigKind("device profile (scanner, reader, camera, gate I/O)", "type", _check_device),
]
"""Config kinds, tried in order: the first whose key is at the top level checks the file."""


def register_config_kind(kind: ConfigKind) -> None:
    """Add a config kind, ahead of those known (so a more specific key wins)."""
    CONFIG_KINDS[:] = [k for k in CONFIG_KINDS if k.name != kind.name]
    CONFIG_KINDS.insert(0, kind)


def check_config_file(path: str | Path) -> str:
    """Validate one config file; return the summary printed after ``ok``.

    Raises ConfigError listing every problem as ``file:line: path: message``.
    """
    source = str(path)
    data, lines = read_yaml_mapping(path)
    for kind in CONFIG_KINDS:
        if kind.key in data:
            return kind.check(data, source, lines)
    known = "; ".join(f"`{k.key}:` for a {k.name}" for k in CONFIG_KINDS)
    message = f"not a config provgate knows: expected a top-level {known}"
    raise ConfigError([ConfigProblem(source, lines.get(()), "", message)])


config_app = typer.Typer(
    help="Configuration files: validate device profiles (and, later, gate and gateway config).",
    no_args_is_help=True,
)


@config_app.callback()
def _config_group() -> None:
    # Keeps `check` a subcommand while it is the only one.
    pass


@config_app.command("check")
@reflow_help
def check(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Config files to validate (YAML). The kind is picked from the top-level "
            "keys: a `type:` makes a device profile (serial_scanner, thingmagic_mercury, "
            "opencv_camera, gpiozero, sim_gate_io).",
            show_default=False,
            metavar="FILE...",
        ),
    ],
) -> None:
    """Validate config files: exit 0 when all are valid, else 2 with every problem.

    Prints `FILE: ok (…)` for a valid file, and each problem of an invalid one as
    `file:line: path: message` (on stderr), so an editor or a technician can go straight
    to the line.
    """
    failed = False
    for path in files:
        try:
            summary = check_config_file(path)
        except ConfigError as exc:
            failed = True
            for problem in exc.problems:
                typer.echo(str(problem), err=True)
            continue
        typer.echo(f"{path}: ok ({summary})")
    if failed:
        raise typer.Exit(EXIT_INVALID)


# --- scan ------------------------------------------------------------------------------


class ScanDevice(StrEnum):
    """What ``provgate scan`` reads."""

    BARCODE = "barcode"
    RFID = "rfid"


def _device_config(device: ScanDevice, port: str | None, profile: Path | None) -> BaseModel:
    """The validated driver config: the profile (``port`` overriding it) or defaults."""
    kind = DeviceKind(device.value)
    if profile is not None:
        source = str(profile)
        data, lines = read_yaml_mapping(profile)
    else:
        source, data, lines = "command line", {"type": _DEFAULT_TYPES[kind]}, {}
    if port is not None:
        data["port"] = port
    elif "port" not in data:
        message = "no port: give --port (a device path or socket://host:port)"
        raise ConfigError([ConfigProblem(source, None, "", message)])
    spec = drivers().get(str(data.get("type")))
    if spec is not None and spec.kind is not kind:
        message = (
            f"{spec.type_tag} is a {spec.kind.value} device, not {kind.value}: "
            f"use --device {spec.kind.value} or a profile for {kind.value}"
        )
        raise ConfigError([ConfigProblem(source, lines.get(("type",)), "type", message)])
    try:
        return parse_device_config(data, source, lines, kind=kind)
    except ConfigError as exc:
        error = _at_own_line(exc, lines)
        if port is not None:  # a bad --port is the command line's fault, not the profile's
            error = ConfigError(
                [
                    replace(p, source="--port", line=None, path="") if p.path == "port" else p
                    for p in error.problems
                ]
            )
        raise error from exc


def _visible(text: str) -> str:
    return text.translate(_VISIBLE)


def _scan_record(event: ScanEvent) -> dict[str, Any]:
    return event.as_json_dict()


def _scan_text(event: ScanEvent) -> str:
    raw = _visible(event.raw)
    if event.item is not None:
        return f"✓ {event.item.key}  {raw}"
    return f"✗ invalid: {event.error}  {raw}"


def _sighting_record(sighting: TagSighting, device: str) -> dict[str, Any]:
    item = sighting.outcome.item
    return {
        "source": "rfid",
        "device": device,
        "raw": sighting.epc_hex,
        "valid": item is not None,
        "error": sighting.outcome.error,
        "item": None if item is None else item.model_dump(mode="json"),
        "key": None if item is None else item.key,
        "epc_hex": sighting.epc_hex,
        "rssi": sighting.rssi_peak,
        "antenna": sighting.antenna,
        "antennas": list(sighting.antennas),
        "reads": sighting.reads,
        "phase": sighting.phase,
        "first_seen": sighting.first_seen,
        "last_seen": sighting.last_seen,
    }


def _sighting_text(sighting: TagSighting) -> str:
    item = sighting.outcome.item
    rssi = "?" if sighting.rssi_peak is None else str(sighting.rssi_peak)
    antenna = "?" if sighting.antenna is None else str(sighting.antenna)
    details = f"EPC {sighting.epc_hex}  {rssi} dBm  antenna {antenna}  {sighting.reads} reads"
    if item is not None:
        return f"✓ {item.key}  {details}"
    return f"✗ invalid: {sighting.outcome.error}  {details}"


@dataclass(slots=True)
class _Output:
    """One printed item: its JSON record and its human line."""

    record: dict[str, Any]
    text: str


def _reader(driver: Device, as_json: bool) -> Callable[[float], _Output | None]:
    """A function returning the next item to print (waiting up to its argument), or None."""
    if isinstance(driver, SerialScanner):
        scanner = driver

        def next_scan(timeout: float) -> _Output | None:
            event = scanner.get(timeout)
            if event is None:
                return None
            return _Output(_scan_record(event) if as_json else {}, _scan_text(event))

        return next_scan
    if isinstance(driver, ThingMagicReader):
        reader = driver

        def next_sighting(timeout: float) -> _Output | None:
            deadline = time.monotonic() + timeout
            while True:
                sighting = reader.get(max(0.0, deadline - time.monotonic()))
                if sighting is None:
                    return None
                if sighting.final:  # one line per sighting window, with its totals
                    record = _sighting_record(sighting, reader.name) if as_json else {}
                    return _Output(record, _sighting_text(sighting))

        return next_sighting
    raise TypeError(f"provgate scan cannot read a {type(driver).__name__} yet")


@contextlib.contextmanager
def _driver_logging(verbose: bool) -> Iterator[None]:
    """Driver warnings (and with ``verbose`` info) on stderr while the command runs."""
    logger = logging.getLogger("hardware")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class _Printer:
    """Prints items to stdout; notices a closed pipe (``provgate scan … | head``)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.printed = 0
        self.pipe_closed = False

    def emit(self, output: _Output) -> None:
        line = json.dumps(output.record, ensure_ascii=False) if self.as_json else output.text
        try:
            typer.echo(line)
        except BrokenPipeError:
            self.pipe_closed = True
            # Python would complain again when it flushes stdout at exit.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
        self.printed += 1


def _print_summary(
    health: DeviceHealth, final: DeviceHealth, printed: int, reason: str, as_json: bool, what: str
) -> None:
    """``health`` as it was before stopping the driver; counters from ``final``, after."""
    counters = dict(sorted(final.counters.items()))
    if as_json:
        summary = {
            "device": health.name,
            "items": printed,
            "stopped": reason,
            "state": health.state.value,
            "last_error": health.last_error,
            "reconnects": health.reconnects,
            "counters": counters,
        }
        typer.echo(json.dumps(summary), err=True)
        return
    typer.echo(
        f"{health.name}: {printed} {what} printed; stopped: {reason}; device {health.state}",
        err=True,
    )
    if health.last_error:
        typer.echo(f"last error: {health.last_error}", err=True)
    typer.echo("counters: " + " ".join(f"{k}={v}" for k, v in counters.items()), err=True)


@reflow_help
def scan(
    device: Annotated[
        ScanDevice,
        typer.Option(
            "--device",
            "-d",
            help="What to read: a barcode scanner (serial / USB-CDC) or a ThingMagic "
            "Mercury UHF RFID reader.",
            case_sensitive=False,
            show_default=False,
        ),
    ],
    port: Annotated[
        str | None,
        typer.Option(
            "--port",
            "-p",
            help="Where the device is: /dev/ttyACM0, /dev/ttyUSB0, a simulator's pty or "
            "symlink, socket://host:port or rfc2217://host:port. Overrides the profile's "
            "port; required without a profile.",
            show_default=False,
        ),
    ] = None,
    profile: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            help="Device profile (YAML, e.g. firmware_configs/scanners/zebra-ds3608.yaml): "
            "validated; its settings (suffix, prefix, AIM, region, power…) are used. "
            "Without it: the driver's defaults (scanner: CR suffix, AIM optional; "
            "reader: region NA2, 20 dBm, antenna 1).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One JSON object per line: source, raw, valid, error, item (canonical ID "
            "fields, or null), key; barcode also symbology; RFID also epc_hex, rssi, "
            "antenna, reads. The summary on stderr is JSON too.",
        ),
    ] = False,
    count: Annotated[
        int | None,
        typer.Option(
            "--count",
            "-n",
            min=1,
            help="Stop after this many items (scans, or RFID sightings), valid or not.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            "-t",
            min=0.0,
            help="Stop after this many seconds. With neither --count nor --timeout, runs "
            "until Ctrl-C. Stopping either way exits 0.",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Also log the driver's info messages on stderr."),
    ] = False,
) -> None:
    """Print each barcode scan or RFID tag sighting: a technician's check of a gate device.

    One line per scan (valid ✓ with the item key, or ✗ with the reason; the read as sent,
    GS shown as <GS>), or per RFID sighting window (each tag once per window, with EPC,
    peak RSSI, antenna and read count). At exit the driver's error counters go to stderr.
    Exit 2 when the profile or port is invalid; 0 otherwise.
    """
    try:
        config = _device_config(device, port, profile)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(EXIT_INVALID) from None
    if isinstance(config, ThingMagicConfig) and config.queue_size == 0:
        config = config.model_copy(update={"queue_size": 1024})  # scan reads the queue
    driver = build_device(config)
    try:
        next_item = _reader(driver, as_json)
    except TypeError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_INVALID) from None
    printer = _Printer(as_json)
    what = "scans" if device is ScanDevice.BARCODE else "sightings"
    deadline = None if timeout is None else time.monotonic() + timeout
    reason = "interrupted"
    with _driver_logging(verbose), stop_on_signals() as stop:
        driver.start()
        try:
            while True:
                if stop:
                    reason = stop.name
                    break
                if count is not None and printer.printed >= count:
                    reason = "count reached"
                    break
                if printer.pipe_closed:
                    reason = "output closed"
                    break
                wait = _POLL_S
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        reason = "timeout"
                        break
                output = next_item(wait)
                if output is not None:
                    printer.emit(output)
        finally:
            health = driver.health()
            driver.stop()
        # Stopping an RFID reader closes its open windows: print those final sightings.
        while (count is None or printer.printed < count) and not printer.pipe_closed:
            output = next_item(0)
            if output is None:
                break
            printer.emit(output)
        _print_summary(health, driver.health(), printer.printed, reason, as_json, what)
