"""The behaviour of a simulated ThingMagic reader, without I/O: commands in, bytes out.

:class:`SimulatedReader` is the protocol model behind
:class:`simulators.thingmagic.ThingMagicSimulator` (which adds the serial endpoint, the
thread and locking). It is not thread-safe.
"""

from __future__ import annotations

import binascii
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from gatewire.epc import encode_sgtin_hex
from hardware.rfid.commands import (
    GEN2_PROTOCOL,
    Model,
    Opcode,
    ProtocolError,
    Region,
    Status,
    VersionInfo,
)
from hardware.rfid.frames import Frame, FrameParser, build_response
from hardware.rfid.records import (
    SUPPORTED_FLAGS,
    TagRead,
    encode_stream_read,
    encode_tag_record,
)

__all__ = [
    "MODELS",
    "ModelName",
    "SimulatedModel",
    "SimulatedReader",
    "SimulatorSettings",
    "epc_bytes",
]

ModelName = Literal["m6e", "m6e_nano", "m7e"]


@dataclass(frozen=True, slots=True)
class SimulatedModel:
    """What distinguishes one module family in the simulator."""

    hardware: Model
    antenna_ports: int
    max_power_centi_dbm: int


MODELS: Final[dict[str, SimulatedModel]] = {
    "m6e": SimulatedModel(Model.M6E, 4, 3150),
    "m6e_nano": SimulatedModel(Model.M6E_NANO, 1, 2700),
    "m7e": SimulatedModel(Model.M7E, 1, 3000),
}
_MAX_BATCH: Final = 256  # tag-read frames written at once when behind schedule
_START, _STOP = 0x01, 0x02
_STREAMING_FLAG: Final = 0x0008


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """How the simulated reader behaves."""

    model: ModelName = "m6e_nano"
    read_rate_hz: float = 200.0
    """Tag-read frames per second while streaming, all tags together."""
    multi_reads: int = 3
    """Frames per visit of one tag (the same tag read several times in a row)."""
    corruption_rate: float = 0.0
    """Probability that a streamed frame goes out with one byte changed."""
    garbage_rate: float = 0.0
    """Probability of 1–16 random bytes before a streamed frame."""
    dwell_s: float | None = None
    """Each tag leaves the field this long after it entered; None: until removed."""
    seed: int = 0
    start_in_bootloader: bool = False
    """Answer Get Version with no protocols until Boot Firmware (0x04) arrives."""

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(MODELS)}")
        if self.read_rate_hz <= 0 or self.multi_reads < 1:
            raise ValueError("read_rate_hz must be positive and multi_reads at least 1")
        if not (0 <= self.corruption_rate <= 1 and 0 <= self.garbage_rate <= 1):
            raise ValueError("corruption_rate and garbage_rate are probabilities (0..1)")


@dataclass(slots=True)
class _Tag:
    epc: bytes
    rssi_dbm: int
    antenna: int
    entered_at: float
    pc: bytes = field(init=False)
    crc: int = field(init=False)

    def __post_init__(self) -> None:
        self.pc = (len(self.epc) // 2 << 11).to_bytes(2, "big")  # EPC length in words
        self.crc = ~binascii.crc_hqx(self.pc + self.epc, 0xFFFF) & 0xFFFF  # Gen2 CRC-16


def epc_bytes(epc: str) -> bytes:
    """EPC memory from hex, or from an SGTIN URI (``urn:epc:id:sgtin:…``, filter 1)."""
    text = epc.strip()
    if text.lower().startswith("urn:epc:"):
        text = encode_sgtin_hex(text)
    try:
        data = bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError(f"EPC {epc!r} is neither hex nor an SGTIN URI") from exc
    if len(data) % 2 or len(data) > 62:
        raise ValueError(f"EPC {epc!r} must be whole 16-bit words, at most 31 of them")
    return data


class SimulatedReader:
    """A reader's state and answers. Feed it command bytes; ask it for due tag reads."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.model = MODELS[settings.model]
        self.counts: dict[str, int] = {}
        self.opcodes: list[int] = []
        self.tags: dict[bytes, _Tag] = {}
        self._rng = random.Random(settings.seed)
        self.power_up()

    def power_up(self) -> None:
        """Back to power-on state (the tags in the field stay)."""
        self.parser = FrameParser(responses=False)
        self.in_bootloader = self.settings.start_in_bootloader
        self.region: Region | int = Region.NA2
        self.power = 2000
        self.antennas: tuple[int, ...] = (1,)
        self.streaming = False
        self._flags = 0
        self._search_flags = 0
        self._buffer: list[TagRead] = []
        self._credit = 0.0
        self._last_credit = time.monotonic()
        self._search_started = time.monotonic()
        self._visit: tuple[_Tag, int] | None = None
        self._rr = 0

    def add_tag(self, epc: str, rssi_dbm: int = -55, antenna: int = 1) -> bytes:
        """Put a tag in the field; return its EPC."""
        data = epc_bytes(epc)
        self.tags[data] = _Tag(data, rssi_dbm, antenna, time.monotonic())
        return data

    def receive(self, data: bytes) -> bytes:
        """Parse command bytes; return the replies to the complete commands."""
        return b"".join(self._answer(frame) for frame in self.parser.feed(data))

    def next_wait(self, idle: float) -> float:
        """How long the I/O loop may wait before tag reads are due (at most ``idle``)."""
        if not self.streaming:
            return idle
        return min(idle, max(0.0005, (1 - self._credit) / self.settings.read_rate_hz))

    def _count(self, name: str, amount: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount

    def _answer(self, cmd: Frame) -> bytes:
        self.opcodes.append(cmd.opcode)
        self._count("commands")
        handler = _HANDLERS.get(cmd.opcode)
        if handler is None or (self.in_bootloader and cmd.opcode not in _BOOTLOADER_OPCODES):
            self._count("unknown_commands")
            return build_response(cmd.opcode, status=Status.INVALID_OPCODE)
        try:
            status, data = handler(self, cmd.data)
        except (IndexError, ValueError, ProtocolError):
            status, data = Status.WRONG_NUMBER_OF_DATA, b""
        return build_response(cmd.opcode, data, status)

    def _version(self, _data: bytes) -> tuple[int, bytes]:
        protocols = 0 if self.in_bootloader else 1 << (GEN2_PROTOCOL - 1)
        version = VersionInfo(
            bytes.fromhex("12120600"),
            bytes((self.model.hardware, 0, 0, 0)),
            bytes.fromhex("20190725"),
            bytes.fromhex("01090002"),
            protocols,
        )
        return Status.OK, version.encode()

    def _boot(self, _data: bytes) -> tuple[int, bytes]:
        self.in_bootloader = False
        return Status.OK, b""

    def _get_region(self, _data: bytes) -> tuple[int, bytes]:
        return Status.OK, bytes((self.region,))

    def _set_region(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 1:
            return Status.WRONG_NUMBER_OF_DATA, b""
        try:
            self.region = Region(data[0])
        except ValueError:
            return Status.INVALID_REGION, b""
        return Status.OK, b""

    def _set_protocol(self, data: bytes) -> tuple[int, bytes]:
        if int.from_bytes(data, "big") != GEN2_PROTOCOL:
            return Status.INVALID_PARAMETER, b""
        return Status.OK, b""

    def _get_power(self, _data: bytes) -> tuple[int, bytes]:
        return Status.OK, b"\x00" + self.power.to_bytes(2, "big", signed=True)

    def _set_power(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 2:
            return Status.WRONG_NUMBER_OF_DATA, b""
        power = int.from_bytes(data, "big", signed=True)
        if power > self.model.max_power_centi_dbm:
            return Status.POWER_TOO_HIGH, b""
        if power < 0:
            return Status.POWER_TOO_LOW, b""
        self.power = power
        return Status.OK, b""

    def _set_antenna(self, data: bytes) -> tuple[int, bytes]:
        if data[:1] == b"\x02":  # logical antenna search list: (tx, rx) pairs
            ports = data[1::2]
            if not ports or len(data) % 2 == 0 or data[1::2] != data[2::2]:
                return Status.INVALID_PARAMETER, b""
            if any(not 1 <= p <= self.model.antenna_ports for p in ports):
                return Status.INVALID_PARAMETER, b""
            self.antennas = tuple(ports)
        return Status.OK, b""

    def _detect_antennas(self, _data: bytes) -> tuple[int, bytes]:
        pairs = (b for port in range(1, self.model.antenna_ports + 1) for b in (port, 1))
        return Status.OK, bytes((0x05, *pairs))

    def _multi_protocol_search(self, data: bytes) -> tuple[int, bytes]:
        option = data[2]
        if option == _STOP:
            self.streaming = False
            return Status.OK, bytes((_STOP,))
        if option != _START or data[3] != Opcode.READ_TAG_MULTIPLE or data[6] != GEN2_PROTOCOL:
            return Status.INVALID_PARAMETER, b""
        embedded = data[9 : 9 + data[7]]  # after the embedded 0x22 opcode
        at = 1 if embedded[:1] == b"\x88" else 0
        self._search_flags = int.from_bytes(embedded[at + 1 : at + 3], "big")
        self._flags = int.from_bytes(embedded[-2:], "big")
        if self._flags & ~SUPPORTED_FLAGS:
            return Status.INVALID_PARAMETER, b""
        self._search_started = self._last_credit = time.monotonic()
        self._credit = 0.0
        self.streaming = True
        return Status.OK, data[:3]

    def _read_tag_multiple(self, data: bytes) -> tuple[int, bytes]:
        at = 1 if data[:1] == b"\x88" else 0
        if int.from_bytes(data[at + 1 : at + 3], "big") & _STREAMING_FLAG:
            return Status.UNIMPLEMENTED_OPCODE, b""  # old-style streaming: use 0x2F
        now = time.monotonic()
        self._search_started = now
        self._buffer = [self._read_of(tag, now, self.settings.multi_reads) for tag in self._field()]
        if not self._buffer:
            return Status.NO_TAGS_FOUND, b""
        return Status.OK, data[: at + 3] + len(self._buffer).to_bytes(4, "big")

    def _get_tag_buffer(self, data: bytes) -> tuple[int, bytes]:
        flags = int.from_bytes(data[:2], "big")
        records = [encode_tag_record(read, flags) for read in self._buffer[:255]]
        return Status.OK, data[:2] + bytes((0, len(records))) + b"".join(records)

    def _clear_tag_buffer(self, _data: bytes) -> tuple[int, bytes]:
        self._buffer = []
        return Status.OK, b""

    # --- streaming --------------------------------------------------------------------

    def _field(self) -> list[_Tag]:
        dwell = self.settings.dwell_s
        if dwell is not None:
            now = time.monotonic()
            for epc in [e for e, t in self.tags.items() if now - t.entered_at >= dwell]:
                del self.tags[epc]
        return list(self.tags.values())

    def _read_of(self, tag: _Tag, now: float, count: int = 1) -> TagRead:
        rng = self._rng
        hop = _hop_table(self.region)
        return TagRead(
            epc=tag.epc,
            pc=tag.pc,
            rssi=max(-127, min(0, tag.rssi_dbm + rng.randint(-3, 3))),
            antenna=tag.antenna if tag.antenna in self.antennas else self.antennas[0],
            read_count=count,
            frequency_khz=hop[rng.randrange(len(hop))],
            timestamp_ms=int((now - self._search_started) * 1000) & 0xFFFFFFFF,
            phase=rng.randrange(181),
            protocol=GEN2_PROTOCOL,
            tag_crc=tag.crc,
        )

    def stream(self) -> bytes:
        """Tag-read frames due now at the read rate (faults included); b"" if none."""
        now = time.monotonic()
        self._credit += (now - self._last_credit) * self.settings.read_rate_hz
        self._last_credit = now
        due = int(self._credit)
        if due <= 0:
            return b""
        self._credit = 0.0 if due > _MAX_BATCH else self._credit - due
        out = bytearray()
        for _ in range(min(due, _MAX_BATCH)):
            tag = self._next_tag()
            if tag is None:
                self._credit = 0.0
                break
            out += self._with_faults(
                build_response(
                    Opcode.READ_TAG_MULTIPLE,
                    encode_stream_read(self._read_of(tag, now), self._flags, self._search_flags),
                )
            )
        return bytes(out)

    def _next_tag(self) -> _Tag | None:
        if self._visit is not None and self._visit[1] > 0 and self._visit[0].epc in self.tags:
            tag, left = self._visit
        else:
            tags = self._field()
            if not tags:
                return None
            self._rr = (self._rr + 1) % len(tags)
            tag, left = tags[self._rr], self.settings.multi_reads
        self._visit = (tag, left - 1)
        return tag

    def _with_faults(self, frame: bytes) -> bytes:
        rng = self._rng
        self._count("tag_frames")
        out = b""
        if self.settings.garbage_rate and rng.random() < self.settings.garbage_rate:
            out = rng.randbytes(rng.randint(1, 16))
            self._count("garbage_bursts")
            self._count("garbage_bytes", len(out))
        if self.settings.corruption_rate and rng.random() < self.settings.corruption_rate:
            corrupt = bytearray(frame)
            corrupt[rng.randrange(1, len(corrupt))] ^= rng.randint(1, 255)
            self._count("corrupted_frames")
            return out + bytes(corrupt)
        return out + frame


def _hop_table(region: Region | int) -> tuple[int, ...]:
    name = getattr(region, "name", "")
    if name.startswith("EU"):
        return (865700, 866300, 866900, 867500)
    if name.startswith("NA"):
        return tuple(range(902750, 927251, 500))
    return (915000, 915250, 915500, 915750)


_Handler = Callable[[SimulatedReader, bytes], tuple[int, bytes]]
_HANDLERS: Final[dict[int, _Handler]] = {
    Opcode.VERSION: SimulatedReader._version,
    Opcode.BOOT_FIRMWARE: SimulatedReader._boot,
    Opcode.GET_REGION: SimulatedReader._get_region,
    Opcode.SET_REGION: SimulatedReader._set_region,
    Opcode.SET_PROTOCOL: SimulatedReader._set_protocol,
    Opcode.GET_READ_POWER: SimulatedReader._get_power,
    Opcode.SET_READ_POWER: SimulatedReader._set_power,
    Opcode.SET_ANTENNA: SimulatedReader._set_antenna,
    Opcode.ANTENNA_DETECT: SimulatedReader._detect_antennas,
    Opcode.MULTI_PROTOCOL_SEARCH: SimulatedReader._multi_protocol_search,
    Opcode.READ_TAG_MULTIPLE: SimulatedReader._read_tag_multiple,
    Opcode.GET_TAG_BUFFER: SimulatedReader._get_tag_buffer,
    Opcode.CLEAR_TAG_BUFFER: SimulatedReader._clear_tag_buffer,
}
_BOOTLOADER_OPCODES: Final = frozenset((Opcode.VERSION, Opcode.BOOT_FIRMWARE))
