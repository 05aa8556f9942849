"""``provgate config check`` and ``provgate scan``, against real ptys and real simulators.

The end-to-end tests run ``provgate sim …`` and ``provgate scan …`` as two processes, the
way a technician does; the rest invoke the commands in-process against a simulator on a
thread, which is faster.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gatewire.epc import encode_sgtin_hex
from gatewire.identity import parse_item_id
from gatewire.yamlconfig import ConfigError, ConfigProblem
from hardware.cli import CONFIG_KINDS, ConfigKind, check_config_file, register_config_kind
from hardware.rfid.commands import Region
from provgate_cli.main import app
from simulators.scanner import SimulatedScanner, generate_items, with_aim
from simulators.serial_endpoint import PtyEndpoint
from simulators.thingmagic import SimulatorSettings, ThingMagicSimulator
from tests.support.cli import ROOT, first_line, provgate

runner = CliRunner()
PROFILES = sorted(
    path.relative_to(ROOT)
    for folder in ("scanners", "readers", "gate_io")
    for path in (ROOT / "firmware_configs" / folder).glob("*.yaml")
)
ZEBRA = ROOT / "firmware_configs/scanners/zebra-ds3608.yaml"
NANO = ROOT / "firmware_configs/readers/thingmagic-m6e-nano.yaml"
PI = ROOT / "firmware_configs/gate_io/raspberry-pi.yaml"
JSON_ONE = ("--json", "--count", "1")
SCAN_KEYS = {"source", "raw", "valid", "error", "item"}
RFID_KEYS = SCAN_KEYS | {"epc_hex", "rssi", "antenna", "reads"}
TAGS = [encode_sgtin_hex(f"urn:epc:id:sgtin:0614141.812345.{serial}") for serial in (7, 42, 6789)]


# --- helpers ---------------------------------------------------------------------------


def read_lines(proc: subprocess.Popen[str], count: int, timeout: float = 30.0) -> list[str]:
    """``count`` stdout lines of ``proc``, failing after ``timeout`` seconds.

    Reads the pipe's descriptor directly: a select() on it says nothing about lines
    already in the text wrapper's buffer. Nothing else may be read from ``proc.stdout``
    until ``proc`` has printed its last line here.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while data.count(b"\n") < count or not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            pytest.fail(f"{len(data.splitlines())} of {count} lines from {proc.args!r}")
        data += chunk
    return data.decode().splitlines()


def stderr_counters(text: str, prefix: str) -> dict[str, str]:
    """``name=value`` pairs of the stderr line starting with ``prefix``."""
    line = next(line for line in text.splitlines() if line.startswith(prefix))
    return dict(pair.split("=", 1) for pair in line[len(prefix) :].split())


def copy_with(tmp_path: Path, source: Path, old: str, new: str) -> tuple[Path, int]:
    """A copy of ``source`` with the first line starting with ``old`` replaced by ``new``;
    returns the copy and that line's number."""
    lines = source.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(old))
    lines[index] = new
    path = tmp_path / source.name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, index + 1


@contextmanager
def scanner_on_pty(codes: list[str], **options: Any) -> Iterator[PtyEndpoint]:
    """A simulated scanner on a pty, sending ``codes`` once a driver opens it."""
    endpoint = PtyEndpoint()
    sim = SimulatedScanner(endpoint, codes, rate=None, **options).start()
    try:
        yield endpoint
    finally:
        sim.stop()
        endpoint.close()


# --- config check ----------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES, ids=str)
def test_config_check_accepts_every_shipped_profile(profile: Path) -> None:
    result = runner.invoke(app, ["config", "check", str(ROOT / profile)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{ROOT / profile}: ok (type ")
    assert result.stderr == ""


def test_config_check_covers_scanners_readers_and_gate_io() -> None:
    assert {p.parts[1] for p in PROFILES} == {"scanners", "readers", "gate_io"}


@pytest.mark.parametrize(
    ("profile", "old", "new", "path", "message"),
    [
        (ZEBRA, "suffix: CR", "sufix: CR", "sufix", "unknown setting"),
        (NANO, "region:", "region: MARS", "region", "unknown region 'MARS'"),
        (ZEBRA, "baudrate:", "baudrate: fast", "baudrate", "valid integer"),
        (PI, "  pin: 17", "  pin: seventeen", "photo_eye.pin", "valid integer"),
        (ZEBRA, "type: serial_scanner", "type: serial_scaner", "type",
         "unknown device type 'serial_scaner'; known: "),
    ],
    ids=["typo-key", "bad-region", "wrong-type", "nested-wrong-type", "unknown-device-type"],
)  # fmt: skip
def test_config_check_names_file_line_and_path_of_each_problem(
    tmp_path: Path, profile: Path, old: str, new: str, path: str, message: str
) -> None:
    broken, line = copy_with(tmp_path, profile, old, new)
    result = runner.invoke(app, ["config", "check", str(broken)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"{broken}:{line}: {path}: ")
    assert message in result.stderr


def test_unknown_device_type_is_reported_on_the_line_of_type(tmp_path: Path) -> None:
    profile = tmp_path / "scanner.yaml"
    profile.write_text("# a scanner\nname: gate-1\nport: /dev/ttyACM0\ntype: scaner\n")
    result = runner.invoke(app, ["config", "check", str(profile)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{profile}:4: type: unknown device type 'scaner'; known: ")
    assert "serial_scanner" in result.stderr
    assert "thingmagic_mercury" in result.stderr


def test_every_problem_of_a_file_is_listed(tmp_path: Path) -> None:
    profile = tmp_path / "scanner.yaml"
    profile.write_text("type: serial_scanner\nport: ttyACM0\nsuffix: TAB\nspeed: 9600\n")
    result = runner.invoke(app, ["config", "check", str(profile)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert [line.split(": ")[:2] for line in lines] == [
        [f"{profile}:2", "port"],
        [f"{profile}:3", "suffix"],
        [f"{profile}:4", "speed"],
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("type: serial_scanner\nport: [/dev/ttyACM0\n", 3, "not valid YAML: "),
        ("type: serial_scanner\n  port: /dev/ttyACM0\n", 2, "not valid YAML: "),
        ("- type: serial_scanner\n", 1, "expected a mapping of settings"),
        ("just text\n", 1, "got a string"),
        ("", None, "empty file"),
        ("belt: c1\nlanes: 2\n", 1, "not a config provgate knows: expected a top-level `type:`"),
    ],
    ids=["unclosed-list", "bad-indent", "list", "scalar", "empty", "unknown-kind"],
)
def test_unusable_files_get_one_clear_line(
    tmp_path: Path, text: str, line: int | None, message: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    where = str(path) if line is None else f"{path}:{line}"
    assert result.stderr.startswith(f"{where}: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_missing_file_and_directory_are_one_line_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check", str(tmp_path / "nope.yaml"), str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'nope.yaml'}: no such file",
        f"{tmp_path}: is a directory, not a file",
    ]


def test_several_files_are_all_checked_and_any_failure_exits_2(tmp_path: Path) -> None:
    broken, _ = copy_with(tmp_path, ZEBRA, "suffix: CR", "suffix: CRCR")
    result = runner.invoke(app, ["config", "check", str(ZEBRA), str(broken), str(NANO)])
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        f"{ZEBRA}: ok (type serial_scanner, barcode device profile)",
        f"{NANO}: ok (type thingmagic_mercury, rfid device profile)",
    ]
    assert result.stderr.startswith(f"{broken}:")


def test_a_registered_config_kind_is_recognised_by_its_key(tmp_path: Path) -> None:
    def check_conveyor(data: Any, source: str, lines: Any) -> str:
        if not isinstance(data.get("lanes"), int):
            raise ConfigError([ConfigProblem(source, lines.get(("lanes",)), "lanes", "a number")])
        return f"conveyor {data['conveyor']}"

    saved = list(CONFIG_KINDS)
    register_config_kind(ConfigKind("conveyor profile", "conveyor", check_conveyor))
    try:
        good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
        good.write_text("conveyor: c1\nlanes: 2\n")
        bad.write_text("conveyor: c1\nlanes: two\n")
        assert check_config_file(good) == "conveyor c1"
        result = runner.invoke(app, ["config", "check", str(bad)])
        assert result.exit_code == 2
        assert result.stderr == f"{bad}:2: lanes: a number\n"
        assert check_config_file(ZEBRA).startswith("type serial_scanner")  # still known
    finally:
        CONFIG_KINDS[:] = saved


# --- scan, in-process --------------------------------------------------------------------


def test_scan_prints_a_readable_line_per_scan_and_counters_on_stderr() -> None:
    good = "0109506000134352" + "10L1\x1d21S1"
    bad = "4006381333932"  # wrong check digit
    with scanner_on_pty([good, bad]) as endpoint:
        result = runner.invoke(
            app, ["scan", "--device", "barcode", "--port", endpoint.url, "--count", "2"]
        )
    assert result.exit_code == 0, result.output
    valid, invalid = result.stdout.splitlines()
    assert valid == "✓ 09506000134352/S1  ]d20109506000134352" + "10L1<GS>21S1"
    assert invalid.startswith("✗ invalid: ")
    assert "check digit" in invalid
    assert invalid.endswith("]E04006381333932")
    assert "barcode: 2 scans printed; stopped: count reached" in result.stderr
    counters = stderr_counters(result.stderr, "counters: ")
    assert (counters["scans"], counters["invalid_scans"]) == ("2", "1")


def test_scan_uses_the_profile_with_the_port_overridden() -> None:
    # The Zebra profile requires AIM IDs: a scanner with AIM off gives invalid scans.
    with scanner_on_pty(["0109506000134352" + "21S1"], aim=False) as endpoint:
        result = runner.invoke(
            app,
            ["scan", "-d", "barcode", "--profile", str(ZEBRA), "-p", endpoint.url, *JSON_ONE],
        )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["valid"] is False
    assert record["item"] is None
    assert "AIM" in record["error"]
    summary = json.loads(result.stderr.splitlines()[-1])
    assert summary["counters"]["missing_aim"] == 1
    assert summary["stopped"] == "count reached"


def test_scan_stops_at_the_timeout_with_nothing_read() -> None:
    with scanner_on_pty(["96385074"], count=0) as endpoint:
        # a timeout long enough for the driver to open the port on a loaded machine
        result = runner.invoke(app, ["scan", "-d", "barcode", "-p", endpoint.url, "-t", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "0 scans printed; stopped: timeout; device healthy" in result.stderr


def test_scan_reports_a_port_that_does_not_open_and_still_exits_0_at_the_timeout() -> None:
    result = runner.invoke(app, ["scan", "-d", "rfid", "-p", "/dev/no-such-reader", "-t", "1"])
    assert result.exit_code == 0, result.output
    assert "device unhealthy" in result.stderr
    assert "last error: cannot open /dev/no-such-reader" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-d", "barcode"], "command line: no port: give --port"),
        (["-d", "barcode", "-p", "ttyACM0"], "--port: Value error, port must be a device path"),
        (["-d", "barcode", "-p", "tty0", "--profile", str(ZEBRA)], "--port: Value error, port "),
        (["-d", "rfid", "--profile", str(ZEBRA)], "type: serial_scanner is a barcode device"),
        (["-d", "rfid", "--profile", "missing.yaml"], "missing.yaml: no such file"),
    ],
    ids=["no-port", "bad-port", "bad-port-over-profile", "wrong-kind", "missing-profile"],
)
def test_scan_refuses_a_bad_port_or_profile_with_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["scan", *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_scan_refuses_an_invalid_profile_naming_file_and_line(tmp_path: Path) -> None:
    broken, line = copy_with(tmp_path, NANO, "model:", "model: nano")
    result = runner.invoke(app, ["scan", "-d", "rfid", "--profile", str(broken), "-p", "/dev/x"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{broken}:{line}: model: ")


def test_scan_rfid_prints_each_tag_once_per_window_readably() -> None:
    sscc_epc = "3114257BF7194E4000001A85"  # an SSCC-96: a tag, but not an item ID
    settings = SimulatorSettings(read_rate_hz=400)
    with ThingMagicSimulator(PtyEndpoint(), settings, tags=[TAGS[2], sscc_epc]) as sim:
        result = runner.invoke(app, ["scan", "-d", "rfid", "-p", sim.url, "-n", "2", "-t", "30"])
    assert result.exit_code == 0, result.output
    lines = sorted(result.stdout.splitlines())
    assert len(lines) == 2
    assert lines[0].startswith(f"✓ 80614141123458/6789  EPC {TAGS[2]}  -")
    assert " dBm  antenna 1  " in lines[0]
    assert lines[0].endswith(" reads")
    assert lines[1].startswith("✗ invalid: ")
    assert f"EPC {sscc_epc}" in lines[1]
    counters = stderr_counters(result.stderr, "counters: ")
    assert int(counters["invalid_sightings"]) >= 1


def test_scan_reads_with_an_rfid_profile_even_when_its_queue_is_disabled(tmp_path: Path) -> None:
    profile, _ = copy_with(tmp_path, NANO, "port:", "port: /dev/ttyUSB0\nqueue_size: 0")
    profile.write_text(profile.read_text().replace("\nregion: NA2", "\nregion: EU3"))
    settings = SimulatorSettings(read_rate_hz=400)
    with ThingMagicSimulator(PtyEndpoint(), settings, tags=TAGS[:1]) as sim:
        result = runner.invoke(
            app, ["scan", "-d", "rfid", "--profile", str(profile), "-p", sim.url, *JSON_ONE]
        )
        region = sim.region
    assert result.exit_code == 0, result.output
    assert region == Region.EU3  # the profile's settings reached the reader
    record = json.loads(result.stdout)
    assert (record["epc_hex"], record["device"]) == (TAGS[0], "rfid-m6e-nano")


# --- scan against `provgate sim`, two processes ------------------------------------------
# Both start at once (the scan retries until the simulator's --link appears), which halves
# the time spent starting Python; the scan opens the path the simulator prints.


def test_scan_prints_exactly_the_codes_the_scanner_simulator_sends(tmp_path: Path) -> None:
    link = str(tmp_path / "scanner")
    sim_args = ["--generate", "50", "--count", "50", "--rate", "500", "--link", link]
    with (
        provgate("sim", "scanner", *sim_args) as sim,
        provgate("scan", "--device", "barcode", "--port", link, "--json", "--count", "50") as scan,
    ):
        assert first_line(sim) == link
        assert scan.wait(timeout=60) == 0
        out, scan_err = scan.communicate(timeout=30)
        assert sim.wait(timeout=30) == 0
        _, sim_err = sim.communicate(timeout=30)
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 50
    assert all(record.keys() >= SCAN_KEYS for record in records)
    assert all(record["valid"] and record["error"] is None for record in records)
    assert all(record["source"] == "barcode" for record in records)
    codes = generate_items(50)
    assert [record["raw"] for record in records] == [with_aim(code) for code in codes]
    items = [parse_item_id(with_aim(code)).item for code in codes]
    assert [record["item"] for record in records] == [
        item.model_dump(mode="json") for item in items if item is not None
    ]
    assert json.loads(scan_err.splitlines()[-1])["counters"]["scans"] == 50
    assert stderr_counters(sim_err, "scanner counters: ")["reads"] == "50"


def test_scan_counts_every_fault_the_scanner_simulator_injects(tmp_path: Path) -> None:
    link = str(tmp_path / "scanner")
    sim_args = ["--generate", "40", "--count", "40", "--rate", "400", "--seed", "5"]
    sim_args += ["--duplicate-rate", "0.2", "--garbage-rate", "0.2", "--overlong-rate", "0.2"]
    sim_args += ["--truncated-rate", "0.2", "--link", link]
    with (
        provgate("sim", "scanner", *sim_args) as sim,
        provgate("scan", "-d", "barcode", "-p", link, "--json") as scan,
    ):
        assert first_line(sim) == link
        lines = read_lines(scan, 40)  # the scan keeps running (no --count)...
        assert sim.wait(timeout=30) == 0  # ...until the simulator has sent everything
        scan.send_signal(signal.SIGINT)
        assert scan.wait(timeout=30) == 0
        out, scan_err = scan.communicate(timeout=30)
        _, sim_err = sim.communicate(timeout=30)
    records = [json.loads(line) for line in lines + out.splitlines()]
    assert [r["raw"] for r in records] == [with_aim(c) for c in generate_items(40, seed=5)]
    summary = json.loads(scan_err.splitlines()[-1])
    assert summary["stopped"] == "SIGINT"
    sent = {
        name: int(value)
        for name, value in stderr_counters(sim_err, "scanner counters: ").items()
        if value.isdigit()
    }
    got = summary["counters"]
    assert min(sent["duplicates"], sent["garbage"], sent["overlong"], sent["truncated"]) > 0
    assert got["duplicates_suppressed"] == sent["duplicates"]
    assert got["garbage_lines"] == sent["garbage"]
    assert got["overlong_discarded"] == sent["overlong"]
    # A fragment after the very last read has no read behind it to end it.
    assert sent["truncated"] - 1 <= got["partial_discarded"] <= sent["truncated"]
    assert got["valid_scans"] == 40


def test_scan_prints_each_tag_the_rfid_simulator_has_in_its_field(tmp_path: Path) -> None:
    link = str(tmp_path / "reader")
    tags = [arg for tag in TAGS for arg in ("--tag", tag)]
    with (
        provgate("sim", "rfid", *tags, "--read-rate", "300", "--link", link) as sim,
        provgate("scan", "-d", "rfid", "-p", link, "--json", "-n", "3", "-t", "60") as scan,
    ):
        assert first_line(sim) == link
        assert scan.wait(timeout=60) == 0
        out, scan_err = scan.communicate(timeout=30)
        sim.send_signal(signal.SIGINT)
        assert sim.wait(timeout=30) == 0
        _, sim_err = sim.communicate(timeout=30)
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 3
    assert all(record.keys() >= RFID_KEYS for record in records)
    assert sorted(record["epc_hex"] for record in records) == sorted(TAGS)
    assert all(record["valid"] and record["source"] == "rfid" for record in records)
    assert all(record["raw"] == record["epc_hex"] for record in records)
    assert all(record["antenna"] == 1 and record["reads"] >= 1 for record in records)
    assert all(-127 <= record["rssi"] <= 0 for record in records)
    assert {r["item"]["serial"] for r in records} == {"7", "42", "6789"}
    summary = json.loads(scan_err.splitlines()[-1])
    assert summary["counters"]["crc_errors"] == 0
    assert "rfid: stopped (SIGINT)" in sim_err
    assert int(stderr_counters(sim_err, "rfid counters: ")["tag_frames"]) > 0


def test_scan_counts_corrupted_rfid_frames_and_still_prints_each_tag_once(tmp_path: Path) -> None:
    link = str(tmp_path / "reader")
    tags = [arg for tag in TAGS for arg in ("--tag", tag)]
    sim_args = ["--read-rate", "300", "--corruption-rate", "0.3", "--seed", "3", "--link", link]
    with (
        provgate("sim", "rfid", *tags, *sim_args) as sim,
        provgate("scan", "-d", "rfid", "-p", link, "--json", "-n", "3", "-t", "60") as scan,
    ):
        assert first_line(sim) == link
        assert scan.wait(timeout=60) == 0
        out, scan_err = scan.communicate(timeout=30)
        sim.send_signal(signal.SIGINT)
        assert sim.wait(timeout=30) == 0
        _, sim_err = sim.communicate(timeout=30)
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted(record["epc_hex"] for record in records) == sorted(TAGS)
    assert all(record["valid"] for record in records)
    summary = json.loads(scan_err.splitlines()[-1])
    assert int(stderr_counters(sim_err, "rfid counters: ")["corrupted_frames"]) > 0
    assert summary["counters"]["crc_errors"] > 0
