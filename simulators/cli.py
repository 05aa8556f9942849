"""``provgate sim …``: simulated devices that speak the real bytes (see provgate_cli.main).

Each command serves one device on a pty (``--link PATH`` adds a symlink) or a TCP port
(``--tcp``), prints where a driver should open it as the first line of stdout (flushed),
runs until Ctrl-C / SIGTERM (exit 0), ``--count`` or ``--duration``, and prints what it
sent (its counters) to stderr at exit. Informational lines go to stderr too, so stdout
carries only the URL.

The options map onto :func:`simulators.scanner.run` and :func:`simulators.thingmagic.run`;
the commands drive :class:`~simulators.scanner.SimulatedScanner` and
:class:`~simulators.thingmagic.ThingMagicSimulator` themselves so that the endpoint
exists (or its error is reported) before the URL is printed, and so that ``--count``
ends only once the reader has taken the last read: a pty loses what is still queued in
it when it closes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import struct
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from gatewire.epc import encode_sgtin_hex
from hardware.cli import StopRequest, reflow_help, stop_on_signals
from simulators.rfid_reader import epc_bytes
from simulators.scanner import (
    COMPANY_PREFIXES,
    ScannerFaults,
    SimulatedScanner,
    generate_items,
    load_codes,
)
from simulators.serial_endpoint import PtyEndpoint, SerialEndpoint, TcpEndpoint
from simulators.thingmagic import SimulatorSettings, ThingMagicSimulator

__all__ = ["app", "generate_tags", "load_tags"]

EXIT_INVALID: Final = 2
EXIT_FAILED: Final = 1
DEFAULT_RFID_TAGS: Final = 5
_POLL_S: Final = 0.1
_DRAIN_TIMEOUT_S: Final = 10.0
_DRAIN_QUIET_S: Final = 0.3  # the kernel may take a while to queue written bytes
_STOP_TIMEOUT_S: Final = 5.0

app = typer.Typer(
    help="Simulated gate devices that speak the real wire protocols, on a pty or a TCP "
    "port: point a driver, `provgate scan` or the agent at the URL they print.",
    no_args_is_help=True,
)


class Suffix(StrEnum):
    """Line terminators a scanner can be programmed to send."""

    CR = "CR"
    LF = "LF"
    CRLF = "CRLF"


class ReaderModel(StrEnum):
    """ThingMagic module families the simulator can be."""

    M6E = "m6e"
    M6E_NANO = "m6e_nano"
    M7E = "m7e"


# Options every simulator shares: where it is served.
LinkOption = Annotated[
    Path | None,
    typer.Option(
        "--link",
        help="Also create this symlink to the pty (replacing an old symlink, never a "
        "file) and print it instead of the /dev/pts path; removed at exit.",
        show_default=False,
    ),
]
TcpOption = Annotated[
    bool,
    typer.Option(
        "--tcp",
        help="Serve on a TCP port instead of a pty; prints socket://host:port, which "
        "pyserial (and so every driver) opens like a serial port.",
    ),
]
HostOption = Annotated[
    str, typer.Option("--host", help="Address to listen on with --tcp.", show_default=True)
]
PortOption = Annotated[
    int | None,
    typer.Option(
        "--port",
        min=0,
        max=65535,
        help="TCP port with --tcp (default: a free one, printed).",
        show_default=False,
    ),
]
SeedOption = Annotated[
    int,
    typer.Option("--seed", help="Seed of everything random (generated items, faults, RSSI)."),
]
DurationOption = Annotated[
    float | None,
    typer.Option(
        "--duration",
        min=0.0,
        help="Stop after this many seconds (default: run until Ctrl-C).",
        show_default=False,
    ),
]


def _rate(name: str, what: str) -> Any:
    return typer.Option(name, min=0.0, max=1.0, help=f"Probability per read (0-1) of {what}.")


@app.callback()
def _group() -> None:
    # Keeps each simulator a subcommand (typer collapses a one-command app).
    pass


def _endpoint(tcp: bool, host: str, port: int | None, link: Path | None) -> SerialEndpoint:
    """Create where the device is served; bad combinations exit 2, OS errors exit 1."""
    if tcp and link is not None:
        raise typer.BadParameter("--link is for a pty; it cannot be used with --tcp")
    if not tcp and port is not None:
        raise typer.BadParameter("--port is the TCP port: use it with --tcp")
    if link is not None and link.exists() and not link.is_symlink():
        raise typer.BadParameter(f"{link} exists and is not a symlink; not replacing it")
    try:
        if tcp:
            return TcpEndpoint(host, port or 0)
        return PtyEndpoint(link)
    except OSError as exc:
        where = f"{host}:{port or 0}" if tcp else f"a pty{f' at {link}' if link else ''}"
        typer.echo(f"error: cannot serve on {where}: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def _announce(url: str) -> None:
    """The URL as the first stdout line, flushed: tests and technicians read it."""
    typer.echo(url)


def _info(message: str) -> None:
    typer.echo(message, err=True)


def _counters_line(name: str, counters: dict[str, object]) -> str:
    return f"{name} counters: " + " ".join(f"{k}={v}" for k, v in counters.items())


def _never_done(timeout: float) -> bool:
    time.sleep(timeout)
    return False


def _wait(
    stop: StopRequest, deadline: float | None, done: Callable[[float], bool] = _never_done
) -> str | None:
    """Poll until ``done(timeout)`` is True (None), a signal, or the deadline (the reason)."""
    while True:
        if stop:
            return stop.name
        wait = _POLL_S
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                return "duration reached"
        if done(wait):
            return None


def _queued(fd: int) -> int:
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0])


def _drain(endpoint: SerialEndpoint, stop: StopRequest, deadline: float | None) -> bool:
    """Wait until the reader has taken everything sent (True), or give up (False).

    Only a pty needs it: closing it discards its input queue. The queue must stay empty
    for a moment, since the kernel moves written bytes into it asynchronously. A TCP
    connection delivers what is sent before the close on its own.
    """
    if not isinstance(endpoint, PtyEndpoint):
        return True
    try:
        probe = os.open(endpoint.slave_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return False
    give_up = time.monotonic() + _DRAIN_TIMEOUT_S
    if deadline is not None:
        give_up = min(give_up, deadline)
    empty_since: float | None = None
    try:
        while not stop and time.monotonic() < give_up:
            try:
                queued = _queued(probe)
            except OSError:
                return False
            now = time.monotonic()
            if queued:
                empty_since = None
            elif empty_since is None:
                empty_since = now
            elif now - empty_since >= _DRAIN_QUIET_S:
                return True
            time.sleep(0.005)
        return False
    finally:
        with contextlib.suppress(OSError):
            os.close(probe)


@app.command(
    "scanner",
    epilog="Examples:\n\nprovgate sim scanner --generate 50 --rate 20\n\n"
    "provgate sim scanner codes.txt --link /tmp/scanner --suffix CRLF\n\n"
    "provgate sim scanner --tcp --port 5020 --repeat --duplicate-rate 0.1",
)
@reflow_help
def scanner(
    codes_file: Annotated[
        Path | None,
        typer.Argument(
            help="Codes to send, one per line (blank lines and # comments skipped; write "
            r"GS as <GS> or \x1d). Without it, --generate items are sent.",
            exists=True,
            dir_okay=False,
            show_default=False,
            metavar="CODES_FILE",
        ),
    ] = None,
    generate: Annotated[
        int | None,
        typer.Option(
            "--generate",
            min=1,
            help="Send this many generated items: distinct valid GS1 element strings "
            "(01) GTIN (17) expiry (10) batch <GS> (21) serial. Default 100 without a "
            "codes file.",
            show_default=False,
        ),
    ] = None,
    rate: Annotated[
        float,
        typer.Option(
            "--rate", min=0.0, help="Reads per second; 0 sends as fast as the line takes."
        ),
    ] = 10.0,
    count: Annotated[
        int | None,
        typer.Option(
            "--count",
            min=1,
            help="Send this many reads (cycling through the codes), then exit once the "
            "reader has taken them. Default: each code once, then stay plugged in until "
            "Ctrl-C or --duration.",
            show_default=False,
        ),
    ] = None,
    repeat: Annotated[
        bool,
        typer.Option("--repeat", help="Cycle through the codes until stopped (not with --count)."),
    ] = False,
    duration: DurationOption = None,
    suffix: Annotated[
        Suffix,
        typer.Option("--suffix", case_sensitive=False, help="Terminator sent after every read."),
    ] = Suffix.CR,
    prefix: Annotated[
        str,
        typer.Option("--prefix", help="Characters sent before every read (before the AIM ID)."),
    ] = "",
    aim: Annotated[
        bool,
        typer.Option(
            "--aim/--no-aim",
            help="Send AIM symbology identifiers (]d2, ]C1, ]E0…) as the shipped profiles "
            "expect, or strip them.",
        ),
    ] = True,
    garbage_rate: Annotated[float, _rate("--garbage-rate", "a burst of line noise")] = 0.0,
    truncated_rate: Annotated[
        float, _rate("--truncated-rate", "the start of the next read, cut short")
    ] = 0.0,
    duplicate_rate: Annotated[
        float, _rate("--duplicate-rate", "the same read sent again at once")
    ] = 0.0,
    overlong_rate: Annotated[
        float, _rate("--overlong-rate", "a junk line longer than --max-line-length")
    ] = 0.0,
    max_line_length: Annotated[
        int,
        typer.Option(
            "--max-line-length",
            min=16,
            help="The driver's max_line_length: overlong faults are just longer than this.",
        ),
    ] = 512,
    seed: SeedOption = 0,
    tcp: TcpOption = False,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    link: LinkOption = None,
) -> None:
    """Serve a serial barcode scanner that sends what a real one sends.

    Each read goes out as prefix + AIM ID + data + suffix, GS separators kept, at --rate
    reads per second once a driver has opened the port. Faults (--*-rate) follow a read:
    a duplicate, an overlong line, line noise, a truncated read. The URL is the first line
    of stdout; the counters of what was sent go to stderr at exit.
    """
    if codes_file is not None and generate is not None:
        raise typer.BadParameter("give a codes file or --generate, not both")
    if count is not None and repeat:
        raise typer.BadParameter("--count and --repeat exclude each other")
    try:
        codes = load_codes(codes_file) if codes_file is not None else None
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {codes_file}: {exc}") from None
    if codes is None:
        codes = generate_items(generate or 100, seed)
    elif not codes:
        raise typer.BadParameter(f"{codes_file} has no codes")
    faults = ScannerFaults(
        garbage=garbage_rate,
        truncated=truncated_rate,
        duplicate=duplicate_rate,
        overlong=overlong_rate,
    )
    endpoint = _endpoint(tcp, host, port, link)
    stop_sending = threading.Event()
    try:
        sim = SimulatedScanner(
            endpoint,
            codes,
            rate=rate,
            suffix=suffix.value,
            prefix=prefix,
            aim=aim,
            faults=faults,
            seed=seed,
            max_line_length=max_line_length,
            count=count,
            repeat=repeat,
            stop=stop_sending,
        )
    except ValueError as exc:
        endpoint.close()
        raise typer.BadParameter(str(exc)) from None
    reason = "sent everything"
    try:
        with stop_on_signals() as stop:  # before the URL: whoever reads it may signal at once
            _announce(sim.url)
            pace = "as fast as the line takes" if not rate else f"{rate:g} reads/s"
            _info(f"scanner: {len(codes)} codes, {pace}; waiting for a reader (Ctrl-C to stop)")
            deadline = None if duration is None else time.monotonic() + duration
            sim.start()
            reason = _wait(stop, deadline, sim.wait) or reason
            if reason == "sent everything" and sim.stats.write_failed:
                reason = "the reader went away"
            elif reason == "sent everything" and count is not None:
                if not _drain(endpoint, stop, deadline):
                    reason = stop.name or "the reader did not take every read"
            elif reason == "sent everything":  # stay plugged in, like a real scanner
                reason = _wait(stop, deadline) or reason
            stop_sending.set()
            sim.stop()
    finally:
        endpoint.close()
    _info(f"scanner: stopped ({reason})")
    _info(_counters_line("scanner", asdict(sim.stats)))
    if reason in ("the reader went away", "the reader did not take every read"):
        raise typer.Exit(EXIT_FAILED)


def generate_tags(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct SGTIN-96 EPCs (upper-case hex), deterministic from ``seed``.

    A few products (GS1 example company prefixes) with numeric serials, as on a pallet.
    """
    rng = random.Random(seed)
    products = [
        (rng.choice(COMPANY_PREFIXES), f"{rng.randrange(1_000_000):06d}")
        for _ in range(max(1, min(count, 8)))
    ]
    serials = rng.sample(range(1, 2**38), count)
    return [
        encode_sgtin_hex(f"urn:epc:id:sgtin:{company}.{item}.{serial}")
        for (company, item), serial in zip(
            (rng.choice(products) for _ in range(count)), serials, strict=True
        )
    ]


def load_tags(path: Path) -> list[str]:
    """EPCs from a file, one per line (hex or SGTIN URI); blanks and # comments skipped."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@app.command(
    "rfid",
    epilog="Examples:\n\nprovgate sim rfid --generate 3\n\n"
    "provgate sim rfid --tag urn:epc:id:sgtin:0614141.812345.6789 --link /tmp/rfid\n\n"
    "provgate sim rfid --tcp --generate 20 --corruption-rate 0.05 --dwell 2",
)
@reflow_help
def rfid(
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            metavar="EPC",
            help="A tag in the field: EPC hex or SGTIN URI (urn:epc:id:sgtin:…). Repeatable.",
            show_default=False,
        ),
    ] = None,
    tags_file: Annotated[
        Path | None,
        typer.Option(
            "--tags-file",
            exists=True,
            dir_okay=False,
            help="Tags in the field, one EPC hex or SGTIN URI per line (# comments).",
            show_default=False,
        ),
    ] = None,
    generate: Annotated[
        int | None,
        typer.Option(
            "--generate",
            min=0,
            help="Add this many generated SGTIN-96 tags (valid item IDs). Default "
            f"{DEFAULT_RFID_TAGS} when no --tag or --tags-file is given; 0 for an empty field.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        ReaderModel,
        typer.Option(
            "--model",
            case_sensitive=False,
            help="Module the version reply names (ports, power limit): m6e has 4 antenna "
            "ports and 31.5 dBm, m6e_nano 1 and 27 dBm, m7e 1 and 30 dBm.",
        ),
    ] = ReaderModel.M6E_NANO,
    read_rate: Annotated[
        float,
        typer.Option(
            "--read-rate",
            min=0.001,
            help="Tag-read frames per second while an inventory runs, all tags together.",
        ),
    ] = 200.0,
    multi_reads: Annotated[
        int,
        typer.Option("--multi-reads", min=1, help="Frames in a row for each visit of one tag."),
    ] = 3,
    corruption_rate: Annotated[
        float,
        typer.Option(
            "--corruption-rate",
            min=0.0,
            max=1.0,
            help="Probability (0-1) that a streamed tag frame has one byte changed (bad CRC).",
        ),
    ] = 0.0,
    garbage_rate: Annotated[
        float,
        typer.Option(
            "--garbage-rate",
            min=0.0,
            max=1.0,
            help="Probability (0-1) of 1-16 random bytes before a streamed tag frame.",
        ),
    ] = 0.0,
    dwell: Annotated[
        float | None,
        typer.Option(
            "--dwell",
            min=0.0,
            help="Each tag leaves the field this many seconds after the start (default: it stays).",
            show_default=False,
        ),
    ] = None,
    seed: SeedOption = 0,
    duration: DurationOption = None,
    tcp: TcpOption = False,
    host: HostOption = "127.0.0.1",
    port: PortOption = None,
    link: LinkOption = None,
) -> None:
    """Serve a ThingMagic Mercury UHF RFID reader (M6e Nano, M6e, M7e).

    It answers what a driver sends (version, region, Gen2, power, antennas, continuous
    read start and stop) and, while an inventory runs, streams reads of the tags in its
    field at --read-rate, each tag --multi-reads frames in a row, with optional CRC
    corruption and line noise. The URL is the first line of stdout; the simulator's
    counters go to stderr at exit.
    """
    tags = list(tag or [])
    try:
        if tags_file is not None:
            tags += load_tags(tags_file)
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {tags_file}: {exc}") from None
    if generate is None and not tags and tags_file is None:
        generate = DEFAULT_RFID_TAGS
    tags += generate_tags(generate or 0, seed)
    for epc in tags:
        try:
            epc_bytes(epc)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    settings = SimulatorSettings(
        model=model.value,
        read_rate_hz=read_rate,
        multi_reads=multi_reads,
        corruption_rate=corruption_rate,
        garbage_rate=garbage_rate,
        dwell_s=dwell,
        seed=seed,
    )
    endpoint = _endpoint(tcp, host, port, link)
    with stop_on_signals() as stop, ThingMagicSimulator(endpoint, settings, tags=tags) as sim:
        _announce(endpoint.url)
        shown = ", ".join(sim.tags[:10]) + (", …" if len(sim.tags) > 10 else "")
        _info(f"rfid: {model.value}, {len(sim.tags)} tags in the field: {shown or 'none'}")
        deadline = None if duration is None else time.monotonic() + duration
        reason = _wait(stop, deadline) or "stopped"
    _info(f"rfid: stopped ({reason})")
    _info(_counters_line("rfid", dict(sim.counters())))
