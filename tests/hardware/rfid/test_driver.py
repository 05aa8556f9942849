"""The reader driver against the simulated reader, over real ptys and socket:// ports."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatewire.epc import encode_sgtin_hex
from hardware.health import DeviceState
from hardware.rfid.commands import Opcode, Region, VersionInfo
from hardware.rfid.config import ThingMagicConfig
from hardware.rfid.driver import ThingMagicReader
from hardware.rfid.frames import FrameParser, build_response
from hardware.rfid.sightings import TagSighting
from simulators.serial_endpoint import PtyEndpoint, SerialEndpoint, TcpEndpoint
from simulators.thingmagic import SimulatorSettings, ThingMagicSimulator
from tests.support.waiting import wait_until

ITEMS = [f"urn:epc:id:sgtin:0614141.812345.{serial}" for serial in (101, 102, 103)]
ITEM_HEX = {encode_sgtin_hex(uri) for uri in ITEMS}
SSCC_HEX = "3114257BF4499602D2000000"


class Rig:
    """A simulated reader and a driver connected to it; collects what the driver emits."""

    def __init__(self, endpoint: SerialEndpoint, settings: SimulatorSettings, **fields: object):
        self.sim = ThingMagicSimulator(endpoint, settings).start()
        self.sightings: list[TagSighting] = []
        self._lock = threading.Lock()
        config = {
            "type": "thingmagic_mercury",
            "port": endpoint.url,
            "window_s": 0.2,
            "command_timeout_s": 2.0,  # a loaded machine may take a while to answer
            "reconnect_initial_s": 0.02,
            "reconnect_max_s": 0.1,
            **fields,
        }
        self.reader = ThingMagicReader(
            ThingMagicConfig.model_validate(config), on_sighting=self._collect
        )

    def _collect(self, sighting: TagSighting) -> None:
        with self._lock:
            self.sightings.append(sighting)

    def finals(self) -> list[TagSighting]:
        with self._lock:
            return [s for s in self.sightings if s.final]

    def close(self) -> None:
        self.reader.stop()
        self.sim.close()


@pytest.fixture
def rig() -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(
        settings: SimulatorSettings | None = None,
        endpoint: SerialEndpoint | None = None,
        **fields: object,
    ) -> Rig:
        made.append(Rig(endpoint or PtyEndpoint(), settings or SimulatorSettings(), **fields))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_reader_is_configured_then_streams_one_sighting_per_tag_per_window(
    rig: Callable[..., Rig],
) -> None:
    r = rig(SimulatorSettings(read_rate_hz=600), region="EU3", read_power_dbm=25.5)
    for uri in ITEMS:
        r.sim.add_tag(uri, rssi_dbm=-50)
    r.reader.start()
    assert r.reader.wait_streaming(5)
    assert r.sim.region is Region.EU3
    assert r.sim.read_power_centi_dbm == 2550
    assert r.sim.antennas == (1,)
    version = r.reader.version
    assert isinstance(version, VersionInfo)
    assert version.model_name == "M6E_NANO"
    assert wait_until(lambda: {s.epc_hex for s in r.finals()} == ITEM_HEX)
    first = [s for s in r.sightings if not s.final]
    assert {s.epc_hex for s in first} == ITEM_HEX  # each tag announced at its first read
    for final in r.finals():
        assert final.ok
        assert final.outcome.item is not None
        assert final.outcome.item.epc_uri in ITEMS
        assert final.reads > 1
        assert final.rssi_peak is not None
        assert -53 <= final.rssi_peak <= -47
        assert final.antennas == (1,)
        assert final.last_seen - final.first_seen < 0.2
    health = r.reader.health()
    assert health.healthy
    assert health.counters["initialisations"] == 1
    assert health.counters["tag_reads"] >= 6
    assert health.counters.get("crc_errors", 0) == 0


def test_the_queue_delivers_the_same_sightings_as_the_callback(rig: Callable[..., Rig]) -> None:
    r = rig(SimulatorSettings(read_rate_hz=400))
    r.sim.add_tag(ITEMS[0])
    r.reader.start()
    got = r.reader.get(timeout=5)
    assert got is not None
    assert got.epc_hex == encode_sgtin_hex(ITEMS[0])
    assert not got.final
    assert r.sightings[0] == got


def test_stop_stops_the_inventory_and_emits_the_open_windows(rig: Callable[..., Rig]) -> None:
    r = rig(SimulatorSettings(read_rate_hz=400), window_s=30)
    r.sim.add_tag(ITEMS[0])
    r.reader.start()
    assert wait_until(lambda: len(r.sightings) == 1)
    r.reader.stop()
    assert r.sim.wait_streaming(2, streaming=False)
    (final,) = r.finals()
    assert final.reads >= 1
    assert r.reader.health().state is DeviceState.STOPPED


def test_corrupt_frames_and_garbage_are_counted_logged_once_and_no_wrong_id_is_accepted(
    rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    settings = SimulatorSettings(
        read_rate_hz=2000, multi_reads=2, corruption_rate=0.2, garbage_rate=0.2, seed=7
    )
    r = rig(settings)
    for uri in ITEMS:
        r.sim.add_tag(uri)
    r.reader.start()
    assert wait_until(lambda: r.sim.counters().get("tag_frames", 0) >= 1500)
    r.reader.stop()
    injected = r.sim.counters()
    counters = r.reader.health().counters
    assert injected["corrupted_frames"] > 100
    assert injected["garbage_bursts"] > 100
    # each corrupt frame is dropped and counted (crc, truncated, or inside garbage's span)
    dropped = injected["tag_frames"] - counters["tag_reads"]
    assert dropped >= injected["corrupted_frames"] * 0.9
    assert counters["crc_errors"] + counters.get("truncated_frames", 0) >= dropped * 0.5
    assert counters["discarded_bytes"] >= injected["garbage_bytes"]
    assert {s.epc_hex for s in r.sightings} == ITEM_HEX  # nothing but the real tags
    assert all(s.ok for s in r.sightings)
    noise_logs = [rec for rec in caplog.records if "corrupt input on the line" in rec.message]
    assert len(noise_logs) == 1  # one burst, one line


def test_a_tag_that_is_not_an_item_is_reported_invalid_and_counted(
    rig: Callable[..., Rig],
) -> None:
    r = rig(SimulatorSettings(read_rate_hz=400))
    r.sim.add_tag(SSCC_HEX)
    r.sim.add_tag("E2801160600002054C3A1B2F")  # a factory-default chip EPC
    r.reader.start()
    assert wait_until(lambda: len(r.finals()) >= 2)
    assert not any(s.ok for s in r.sightings)
    assert all(s.outcome.item is None and s.outcome.error for s in r.sightings)
    assert r.reader.health().counters["invalid_sightings"] >= 2


def test_unplug_and_replug_behind_a_symlink_resumes_without_restart(
    rig: Callable[..., Rig], tmp_path: Path
) -> None:
    link = tmp_path / "rfid0"
    r = rig(SimulatorSettings(read_rate_hz=400), endpoint=PtyEndpoint(link))
    r.sim.add_tag(ITEMS[0])
    r.reader.start()
    assert r.reader.wait_streaming(5)
    assert wait_until(lambda: bool(r.sightings))
    r.sim.unplug()  # USB pulled
    assert wait_until(lambda: r.reader.health().state is DeviceState.UNHEALTHY)
    assert not r.reader.wait_streaming(0)
    replugged_at = time.monotonic()
    r.sim.plug(PtyEndpoint(link))  # plugged back in: a fresh, unconfigured reader
    assert wait_until(lambda: r.reader.health().healthy)
    assert r.sim.streaming
    assert wait_until(lambda: any(s.first_seen > replugged_at for s in r.sightings))
    health = r.reader.health()
    assert health.reconnects == 1
    assert health.counters["initialisations"] == 2
    assert health.counters["disconnects"] == 1


def test_socket_url_works_and_a_connection_reset_reinitialises(rig: Callable[..., Rig]) -> None:
    endpoint = TcpEndpoint()
    r = rig(SimulatorSettings(read_rate_hz=400), endpoint=endpoint)
    r.sim.add_tag(ITEMS[1])
    r.reader.start()
    assert wait_until(lambda: bool(r.sightings))
    endpoint._drop()  # the device end resets the connection
    assert wait_until(lambda: r.reader.health().counters.get("initialisations") == 2)
    count = len(r.sightings)
    assert wait_until(lambda: len(r.sightings) > count)


def test_a_reader_in_its_bootloader_is_booted_first(rig: Callable[..., Rig]) -> None:
    r = rig(SimulatorSettings(start_in_bootloader=True))
    r.reader.start()
    assert r.reader.wait_streaming(5)
    opcodes = r.sim.opcodes
    assert opcodes.index(Opcode.BOOT_FIRMWARE) < opcodes.index(Opcode.SET_REGION)


def test_a_refused_setting_leaves_the_driver_unhealthy_with_the_reason(
    rig: Callable[..., Rig],
) -> None:
    r = rig(read_power_dbm=30)  # the Nano stops at 27 dBm
    r.reader.start()
    assert wait_until(lambda: r.reader.health().state is DeviceState.UNHEALTHY)
    health = r.reader.health()
    assert "POWER_TOO_HIGH" in (health.last_error or "")
    assert health.counters["init_failures"] >= 1
    assert not r.sim.streaming


def test_an_unexpected_module_is_reported_but_used(rig: Callable[..., Rig]) -> None:
    r = rig(SimulatorSettings(model="m7e"), model="m6e_nano")
    r.reader.start()
    assert r.reader.wait_streaming(5)
    assert r.reader.health().counters["model_mismatch"] == 1


def test_a_raising_callback_is_counted_and_the_reader_keeps_going(
    rig: Callable[..., Rig],
) -> None:
    r = rig(SimulatorSettings(read_rate_hz=400))
    r.sim.add_tag(ITEMS[0])

    def broken(_: TagSighting) -> None:
        raise RuntimeError("consumer bug")

    r.reader.on_sighting = broken
    r.reader.start()
    assert wait_until(lambda: r.reader.health().counters.get("callback_errors", 0) >= 2)
    assert r.reader.health().healthy
    assert r.reader.get(1) is not None


def test_a_device_spewing_random_bytes_is_unhealthy_counted_and_never_yields_an_id(
    tmp_path: Path,
) -> None:
    endpoint = PtyEndpoint()
    config = ThingMagicConfig(
        type="thingmagic_mercury", port=endpoint.url, command_timeout_s=0.2, window_s=0.1
    )
    reader = ThingMagicReader(config)
    rng = random.Random(3)
    reader.start()
    try:
        assert wait_until(lambda: reader.health().healthy or bool(reader.health().last_error))
        for _ in range(40):
            endpoint.write(rng.randbytes(200))
            time.sleep(0.01)
        assert wait_until(lambda: reader.health().counters.get("init_failures", 0) >= 1)
        health = reader.health()
        assert health.state is DeviceState.UNHEALTHY
        assert "no reply" in (health.last_error or "")
        assert health.counters["discarded_bytes"] > 4000
        assert reader.get(0) is None
    finally:
        reader.stop()
        endpoint.close()


def test_a_reply_behind_a_garbage_header_is_recovered_after_the_line_goes_quiet() -> None:
    """A stray ``FF F0`` claims a long frame; the real reply behind it is still found."""
    endpoint = PtyEndpoint()
    parser = FrameParser(responses=False)
    stop = threading.Event()
    version = bytes.fromhex("12120600300000002019072501090002 00000010")

    def respond() -> None:
        while not stop.is_set():
            for cmd in parser.feed(endpoint.read(0.05)):
                data = b"\x02" if cmd.opcode == Opcode.MULTI_PROTOCOL_SEARCH else b""
                if cmd.opcode == Opcode.VERSION:
                    endpoint.write(b"\xff\xf0" + build_response(cmd.opcode, version))
                    continue
                if cmd.opcode == Opcode.GET_REGION:
                    data = b"\x0d"
                if cmd.opcode == Opcode.GET_READ_POWER:
                    data = bytes.fromhex("0007D0")
                endpoint.write(build_response(cmd.opcode, data))

    responder = threading.Thread(target=respond, daemon=True)
    responder.start()
    reader = ThingMagicReader(
        ThingMagicConfig(type="thingmagic_mercury", port=endpoint.url, command_timeout_s=2)
    )
    reader.start()
    try:
        assert reader.wait_streaming(5)
        counters = reader.health().counters
        assert counters["truncated_frames"] == 1
        assert counters.get("command_timeouts", 0) == 0
    finally:
        reader.stop()
        stop.set()
        responder.join()
        endpoint.close()
