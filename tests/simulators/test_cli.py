"""``provgate sim scanner`` and ``provgate sim rfid``: URL first, clean stops, counters.

Runs the commands as child processes (the URL has to be read while they run) with real
drivers reading what they serve; option checks run in-process.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gatewire.identity import parse_epc_hex
from hardware.barcode.config import SerialScannerConfig
from hardware.barcode.driver import SerialScanner
from provgate_cli.main import app
from simulators.cli import app as sim_app
from simulators.cli import generate_tags
from simulators.scanner import generate_items, with_aim
from tests.support.cli import first_line, provgate

runner = CliRunner()


def finish(proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str, str]:
    """Wait for ``proc`` to exit; its exit code, the rest of its stdout, and its stderr."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def counters(stderr: str, prefix: str) -> dict[str, str]:
    line = next(line for line in stderr.splitlines() if line.startswith(prefix))
    return dict(pair.split("=", 1) for pair in line[len(prefix) :].split())


def options_of(command: str) -> set[str]:
    """Every option name of ``provgate sim COMMAND``."""
    group = typer.main.get_group(sim_app)
    params = group.commands[command].params
    return {name for param in params for name in param.opts if name.startswith("--")}


@pytest.mark.parametrize("command", ["scanner", "rfid"])
def test_help_explains_every_option(command: str) -> None:
    result = runner.invoke(app, ["sim", command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in options_of(command):
        assert option in result.stdout
    assert "Examples" in result.stdout
    assert options_of("scanner") >= {
        "--generate", "--rate", "--suffix", "--aim", "--garbage-rate", "--truncated-rate",
        "--duplicate-rate", "--overlong-rate", "--seed", "--count", "--duration", "--tcp",
        "--port", "--link",
    }  # fmt: skip
    assert options_of("rfid") >= {
        "--tag", "--tags-file", "--generate", "--model", "--read-rate", "--multi-reads",
        "--corruption-rate", "--garbage-rate", "--dwell", "--seed", "--duration", "--tcp",
        "--port", "--link",
    }  # fmt: skip


def test_signals_and_duration_stop_each_simulator_cleanly(tmp_path: Path) -> None:
    # Started together: Python start-up dominates, and a loaded machine has two cores.
    scanner_link, reader_link = tmp_path / "scanner", tmp_path / "reader"
    tags = generate_tags(2, seed=4)
    generated = ("--generate", "2", "--seed", "4")
    with (
        provgate("sim", "scanner", "--link", str(scanner_link)) as scanner,
        provgate("sim", "rfid", "--link", str(reader_link), *generated) as rfid,
        provgate("sim", "rfid", "--tcp", "--tag", tags[0]) as tcp_rfid,
        provgate("sim", "scanner", "--tcp", "--duration", "0.5") as timed,
    ):
        assert first_line(timed).startswith("socket://127.0.0.1:")
        assert first_line(scanner) == str(scanner_link)
        assert first_line(rfid) == str(reader_link)
        assert first_line(tcp_rfid).startswith("socket://127.0.0.1:")
        for link in (scanner_link, reader_link):
            assert Path(link.readlink()).parts[:3] == ("/", "dev", "pts")
        scanner.send_signal(signal.SIGINT)
        rfid.send_signal(signal.SIGINT)
        tcp_rfid.send_signal(signal.SIGTERM)
        results = [finish(proc) for proc in (scanner, rfid, tcp_rfid, timed)]
    for (code, out, err), prefix, reason in zip(
        results,
        ["scanner", "rfid", "rfid", "scanner"],
        ["SIGINT", "SIGINT", "SIGTERM", "duration reached"],
        strict=True,
    ):
        assert code == 0, err
        assert out == ""  # the URL is the only line on stdout
        assert f"{prefix}: stopped ({reason})" in err
        assert counters(err, f"{prefix} counters: ")
    assert f"2 tags in the field: {', '.join(tags)}" in results[1][2]
    assert not scanner_link.is_symlink()  # the device is gone, and its link with it
    assert not reader_link.is_symlink()


def test_scanner_on_tcp_sends_count_reads_and_exits_by_itself() -> None:
    with provgate("sim", "scanner", "--tcp", "--generate", "3", "--count", "5", "--rate", "0") as p:
        url = first_line(p)
        assert url.startswith("socket://127.0.0.1:")
        config = SerialScannerConfig(
            type="serial_scanner", port=url, dedup_window_s=0, partial_line_timeout_s=0
        )
        with SerialScanner(config) as scanner:
            got = [scanner.get(20) for _ in range(5)]
        code, _, err = finish(p)
    assert code == 0, err
    items = generate_items(3)
    assert [event.raw if event else None for event in got] == [
        with_aim(code) for code in (items * 2)[:5]
    ]
    assert counters(err, "scanner counters: ")["reads"] == "5"
    assert "stopped (sent everything)" in err


def test_scanner_sends_a_codes_file_with_the_chosen_suffix_and_no_aim(tmp_path: Path) -> None:
    codes = tmp_path / "codes.txt"
    codes.write_text("# inbound\n0109506000134352<GS>21A1\n96385074\n")
    link = tmp_path / "scanner"
    args = [str(codes), "--link", str(link), "--suffix", "CRLF", "--no-aim", "--count", "2"]
    with provgate("sim", "scanner", *args, "--rate", "0") as proc:
        assert first_line(proc) == str(link)
        config = SerialScannerConfig(type="serial_scanner", port=str(link), suffix="CRLF")
        with SerialScanner(config) as scanner:
            got = [scanner.get(20) for _ in range(2)]
            code, _, err = finish(proc)
            health = scanner.health()
    assert code == 0, err
    assert [event.raw if event else None for event in got] == [
        "0109506000134352\x1d21A1",
        "96385074",
    ]
    sent = int(counters(err, "scanner counters: ")["bytes_sent"])
    # + the CR the simulator probes the port with, when the driver opened it first
    assert health.counters["bytes_in"] in (sent, sent + 1)


def test_generated_tags_are_distinct_valid_sgtin_96_and_reproducible() -> None:
    tags = generate_tags(200, seed=1)
    assert len(set(tags)) == 200
    assert tags == generate_tags(200, seed=1)
    assert tags != generate_tags(200, seed=2)
    for tag in tags:
        assert len(tag) == 24
        assert tag.startswith("30")  # SGTIN-96 header
        assert parse_epc_hex(tag).ok


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scanner", "--count", "3", "--repeat"], "exclude each other"),
        (["scanner", "--port", "5000"], "use it with --tcp"),
        (["scanner", "--tcp", "--link", "/tmp/x"], "cannot be used with --tcp"),
        (["scanner", "--garbage-rate", "1.5"], "--garbage-rate"),
        (["scanner", "--suffix", "TAB"], "--suffix"),
        (["scanner", "missing-codes.txt"], "missing-codes.txt"),
        (["rfid", "--tag", "not-an-epc"], "neither hex nor an SGTIN URI"),
        (["rfid", "--model", "m9"], "--model"),
    ],
)
def test_bad_options_exit_2_before_serving(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["sim", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_codes_file_and_generate_exclude_each_other(tmp_path: Path) -> None:
    codes = tmp_path / "codes.txt"
    codes.write_text("96385074\n")
    result = runner.invoke(app, ["sim", "scanner", str(codes), "--generate", "3"])
    assert result.exit_code == 2
    assert "not both" in result.stderr


def test_link_never_replaces_a_file(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    result = runner.invoke(app, ["sim", "rfid", "--link", str(precious)])
    assert result.exit_code == 2
    assert "not a symlink" in result.stderr
    assert precious.read_text() == "keep me"
