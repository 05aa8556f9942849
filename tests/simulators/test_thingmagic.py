"""The simulated reader answers as MercuryAPI's client expects, and streams its field."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from gatewire.epc import encode_sgtin_hex
from hardware.rfid.commands import (
    Model,
    Opcode,
    Region,
    Status,
    continuous_read_start,
    continuous_read_stop,
    decode_version,
)
from hardware.rfid.frames import Frame, FrameParser, build_command
from hardware.rfid.records import TagRead, decode_stream_reads, decode_tag_buffer
from simulators.serial_endpoint import PtyEndpoint, TcpEndpoint
from simulators.thingmagic import SimulatorSettings, ThingMagicSimulator, run

ITEM = "urn:epc:id:sgtin:0614141.812345.6789"
ITEM_HEX = encode_sgtin_hex(ITEM)
OTHER_HEX = encode_sgtin_hex("urn:epc:id:sgtin:0614141.812345.42")


class Client:
    """A bare host: writes command frames, reads response frames."""

    def __init__(self, url: str) -> None:
        self.port = serial.serial_for_url(url, baudrate=115200, timeout=0.05)
        self.parser = FrameParser()
        self.frames: list[Frame] = []

    def send(self, opcode: int, data: bytes = b"") -> None:
        self.port.write(build_command(opcode, data))

    def receive(self, count: int = 1, timeout: float = 3.0) -> list[Frame]:
        deadline = time.monotonic() + timeout
        while len(self.frames) < count and time.monotonic() < deadline:
            self.frames += self.parser.feed(self.port.read(4096))
        got, self.frames = self.frames[:count], self.frames[count:]
        assert len(got) == count, f"wanted {count} frames, got {got}"
        return got

    def ask(self, opcode: int, data: bytes = b"") -> Frame:
        self.send(opcode, data)
        while True:
            (frame,) = self.receive()
            if frame.opcode == opcode:
                return frame

    def raw(self, size: int, timeout: float = 3.0) -> bytes:
        out = b""
        deadline = time.monotonic() + timeout
        while len(out) < size and time.monotonic() < deadline:
            out += self.port.read(size - len(out))
        return out

    def close(self) -> None:
        self.port.close()


@pytest.fixture
def sim() -> Iterator[ThingMagicSimulator]:
    simulator = ThingMagicSimulator(PtyEndpoint(), SimulatorSettings(read_rate_hz=500)).start()
    yield simulator
    simulator.close()


@pytest.fixture
def client(sim: ThingMagicSimulator) -> Iterator[Client]:
    host = Client(sim.url)
    yield host
    host.close()


def test_version_reply_is_20_bytes_naming_an_m6e_nano_with_gen2(client: Client) -> None:
    reply = client.ask(Opcode.VERSION)
    assert reply.status == Status.OK
    assert len(reply.data) == 20
    assert reply.data[4] == 0x30
    version = decode_version(reply.data)
    assert version.model is Model.M6E_NANO
    assert version.protocols == 0x00000010


def test_get_version_answers_with_the_exact_mercuryapi_bytes(client: Client) -> None:
    client.port.write(bytes.fromhex("FF00031D0C"))
    raw = client.raw(27)
    assert raw[:5] == bytes.fromhex("FF14030000")  # 20 data bytes, opcode 03, status 0


def test_unknown_opcode_gets_an_error_status_reply(client: Client) -> None:
    reply = client.ask(0x7E)
    assert reply.status == Status.INVALID_OPCODE
    assert reply.data == b""


def test_settings_are_kept_and_bad_ones_refused(sim: ThingMagicSimulator, client: Client) -> None:
    assert client.ask(Opcode.SET_REGION, bytes((Region.EU3,))).status == Status.OK
    assert client.ask(Opcode.GET_REGION).data == bytes((Region.EU3,))
    assert client.ask(Opcode.SET_REGION, b"\x63").status == Status.INVALID_REGION
    assert client.ask(Opcode.SET_PROTOCOL, b"\x00\x05").status == Status.OK
    assert client.ask(Opcode.SET_PROTOCOL, b"\x00\x03").status == Status.INVALID_PARAMETER
    assert client.ask(Opcode.SET_READ_POWER, (2700).to_bytes(2, "big")).status == Status.OK
    assert client.ask(Opcode.GET_READ_POWER, b"\x00").data == bytes.fromhex("00 0A8C")
    assert client.ask(Opcode.SET_READ_POWER, (2701).to_bytes(2, "big")).status == (
        Status.POWER_TOO_HIGH
    )
    assert client.ask(Opcode.SET_ANTENNA, bytes.fromhex("02 0202")).status == (
        Status.INVALID_PARAMETER  # the Nano has one port
    )
    assert client.ask(Opcode.ANTENNA_DETECT, b"\x05").data == bytes.fromhex("05 0101")
    assert sim.region is Region.EU3
    assert sim.read_power_centi_dbm == 2700


def test_continuous_read_streams_the_tags_in_the_field_and_stop_replies_0x02(
    sim: ThingMagicSimulator, client: Client
) -> None:
    sim.add_tag(ITEM, rssi_dbm=-40)
    reply = client.ask(Opcode.MULTI_PROTOCOL_SEARCH, continuous_read_start())
    assert (reply.status, reply.data) == (Status.OK, b"\x00\x00\x01")
    assert sim.wait_streaming(2)
    tags = client.receive(10)
    assert all(f.opcode == Opcode.READ_TAG_MULTIPLE for f in tags)
    assert tags[0].data[:7] == bytes.fromhex("88 10 041B 0FFF 01")
    reads = [read for frame in tags for read in decode_stream_reads(frame.data)]
    assert {r.epc_hex for r in reads} == {ITEM_HEX}
    assert all(-43 <= (r.rssi or 0) <= -37 and r.antenna == 1 for r in reads)
    assert all(r.pc == b"\x30\x00" for r in reads)
    stop = client.ask(Opcode.MULTI_PROTOCOL_SEARCH, continuous_read_stop())
    assert stop.data[0] == 0x02
    assert sim.wait_streaming(2, streaming=False)


def test_stop_reply_bytes_are_what_the_client_checks(client: Client) -> None:
    client.port.write(build_command(Opcode.MULTI_PROTOCOL_SEARCH, continuous_read_stop()))
    assert client.raw(8)[:6] == bytes.fromhex("FF012F000002")


def epcs_until(client: Client, done: Callable[[list[str]], bool], limit: int = 300) -> list[str]:
    """EPCs of the streamed frames received until ``done(epcs)`` holds (at most ``limit``)."""
    epcs: list[str] = []
    while not done(epcs):
        assert len(epcs) < limit, f"condition not met within {limit} frames"
        (frame,) = client.receive()
        epcs += [read.epc_hex for read in decode_stream_reads(frame.data)]
    return epcs


def test_tags_can_enter_and_leave_the_field_while_streaming(
    sim: ThingMagicSimulator, client: Client
) -> None:
    client.ask(Opcode.MULTI_PROTOCOL_SEARCH, continuous_read_start())
    sim.add_tag(ITEM)
    assert set(epcs_until(client, lambda e: len(e) >= 3)) == {ITEM_HEX}
    sim.add_tag(OTHER_HEX)
    assert sim.tags == [ITEM_HEX, OTHER_HEX]
    epcs_until(client, lambda e: {ITEM_HEX, OTHER_HEX} <= set(e[-12:]))
    assert sim.remove_tag(ITEM)
    assert not sim.remove_tag(ITEM)
    epcs_until(client, lambda e: e[-20:] == [OTHER_HEX] * 20)  # ITEM is gone for good


def test_synchronous_read_fills_the_tag_buffer(sim: ThingMagicSimulator, client: Client) -> None:
    assert client.ask(Opcode.READ_TAG_MULTIPLE, bytes.fromhex("88 10 0000 03E8 0057")).status == (
        Status.NO_TAGS_FOUND
    )
    sim.add_tag(ITEM)
    sim.add_tag(OTHER_HEX)
    reply = client.ask(Opcode.READ_TAG_MULTIPLE, bytes.fromhex("88 10 0000 03E8 0057"))
    assert reply.data == bytes.fromhex("88 10 0000 00000002")
    buffer = client.ask(Opcode.GET_TAG_BUFFER, bytes.fromhex("0057 00"))
    reads = decode_tag_buffer(buffer.data)
    assert sorted(r.epc_hex for r in reads) == sorted([ITEM_HEX, OTHER_HEX])
    assert all(r.read_count == 3 for r in reads)
    assert client.ask(Opcode.CLEAR_TAG_BUFFER).status == Status.OK
    assert decode_tag_buffer(client.ask(Opcode.GET_TAG_BUFFER, b"\x00\x57\x00").data) == []


def test_a_bootloader_answers_only_version_and_boot(client: Client) -> None:
    simulator = ThingMagicSimulator(PtyEndpoint(), SimulatorSettings(start_in_bootloader=True))
    with simulator:
        host = Client(simulator.url)
        try:
            assert decode_version(host.ask(Opcode.VERSION).data).in_bootloader
            assert host.ask(Opcode.GET_REGION).status == Status.INVALID_OPCODE
            assert host.ask(Opcode.BOOT_FIRMWARE).status == Status.OK
            assert not decode_version(host.ask(Opcode.VERSION).data).in_bootloader
        finally:
            host.close()


def stream_of(settings: SimulatorSettings, frames: int) -> tuple[list[TagRead], dict[str, int]]:
    simulator = ThingMagicSimulator(PtyEndpoint(), settings, tags=[ITEM, OTHER_HEX])
    with simulator:
        host = Client(simulator.url)
        try:
            host.send(Opcode.MULTI_PROTOCOL_SEARCH, continuous_read_start())
            reads: list[TagRead] = []
            raw = b""
            deadline = time.monotonic() + 10
            while simulator.counters().get("tag_frames", 0) < frames:
                assert time.monotonic() < deadline
                raw += host.port.read(65536)
            simulator.clear_tags()
            while chunk := host.port.read(65536):
                raw += chunk
            for frame in host.parser.feed(raw) + host.parser.flush():
                if frame.opcode == Opcode.READ_TAG_MULTIPLE:
                    reads += decode_stream_reads(frame.data)
            return reads, {**simulator.counters(), **host.parser.counters()}
        finally:
            host.close()


def test_faults_are_injected_at_the_set_rates_and_only_into_tag_frames() -> None:
    settings = SimulatorSettings(read_rate_hz=3000, corruption_rate=0.1, garbage_rate=0.1, seed=1)
    reads, counts = stream_of(settings, 1000)
    assert 50 < counts["corrupted_frames"] < 200
    assert 50 < counts["garbage_bursts"] < 200
    assert counts["crc_errors"] >= counts["corrupted_frames"] * 0.5
    assert len(reads) + counts["corrupted_frames"] >= counts["tag_frames"] * 0.97
    assert {r.epc_hex for r in reads} == {ITEM_HEX, OTHER_HEX}


def test_the_same_seed_gives_the_same_reads() -> None:
    settings = SimulatorSettings(read_rate_hz=3000, multi_reads=2, seed=42)
    first, _ = stream_of(settings, 60)
    second, _ = stream_of(settings, 60)

    def key(r: TagRead) -> tuple[object, ...]:
        return (r.epc, r.rssi, r.phase, r.frequency_khz)

    assert [key(r) for r in first[:60]] == [key(r) for r in second[:60]]
    assert [r.epc for r in first[:4]] == [first[0].epc] * 2 + [first[2].epc] * 2  # multi-reads


def test_tags_leave_the_field_after_their_dwell_time(client: Client) -> None:
    # a dwell long enough that a stalled test thread still sees the tag in the field first
    simulator = ThingMagicSimulator(PtyEndpoint(), SimulatorSettings(dwell_s=0.5), tags=[ITEM])
    assert simulator.tags == [ITEM_HEX]
    time.sleep(0.55)
    host = Client(simulator.url)
    with simulator:
        try:
            assert host.ask(
                Opcode.READ_TAG_MULTIPLE, bytes.fromhex("88 10 0000 0064 0057")
            ).status == (Status.NO_TAGS_FOUND)
        finally:
            host.close()


def test_unplug_hangs_up_and_plug_serves_a_freshly_powered_reader(tmp_path: Path) -> None:
    link = tmp_path / "reader"
    simulator = ThingMagicSimulator(PtyEndpoint(link)).start()
    try:
        host = Client(str(link))
        host.ask(Opcode.SET_REGION, bytes((Region.EU3,)))
        host.ask(Opcode.MULTI_PROTOCOL_SEARCH, continuous_read_start())
        simulator.unplug()
        assert not link.exists()
        with pytest.raises(RuntimeError, match="unplugged"):
            _ = simulator.url
        host.close()
        simulator.plug(PtyEndpoint(link))
        host = Client(str(link))
        assert host.ask(Opcode.GET_REGION).data == bytes((Region.NA2,))
        assert not simulator.streaming
        host.close()
    finally:
        simulator.close()


def test_run_serves_on_tcp_for_its_duration_and_reports_counters() -> None:
    urls: list[str] = []
    ready = threading.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    result: dict[str, int] = {}
    stop = threading.Event()
    thread = threading.Thread(
        target=lambda: result.update(
            run("tcp", tags=[ITEM], read_rate_hz=500, on_ready=on_ready, stop=stop, duration_s=20)
        )
    )
    thread.start()
    try:
        assert ready.wait(5)
        assert urls[0].startswith("socket://127.0.0.1:")
        host = Client(urls[0])
        try:
            host.send(Opcode.MULTI_PROTOCOL_SEARCH, continuous_read_start())
            frames = host.receive(5)
            assert {r.epc_hex for f in frames[1:] for r in decode_stream_reads(f.data)} == {
                ITEM_HEX
            }
        finally:
            host.close()
    finally:
        stop.set()
        thread.join(5)
    assert result["tag_frames"] >= 4
    assert result["commands"] == 1


def test_run_on_a_pty_creates_the_symlink_and_ends_after_its_duration(tmp_path: Path) -> None:
    link = tmp_path / "rfid-sim"
    seen: list[str] = []
    started = time.monotonic()
    counters = run("pty", link=link, duration_s=0.2, on_ready=seen.append)
    assert seen == [str(link)]
    assert time.monotonic() - started < 3
    assert counters.get("commands", 0) == 0
    assert not link.exists()


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        SimulatorSettings(model="m5e")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probabilities"):
        SimulatorSettings(corruption_rate=2)
    endpoint = TcpEndpoint()
    try:
        with pytest.raises(ValueError, match="whole 16-bit words"):
            ThingMagicSimulator(endpoint, tags=["ABCDEF"])
        with pytest.raises(ValueError, match="neither hex nor an SGTIN URI"):
            ThingMagicSimulator(endpoint, tags=["tag-1"])
    finally:
        endpoint.close()
