"""Mercury serial commands a gate needs, and decoders for their replies.

Layouts follow ThingMagic's MercuryAPI (``serial_reader_l3.c``) as summarised in
``docs/hardware-rfid.md``. Builders return command *data* (the frame is built by
:func:`hardware.rfid.frames.build_command`) except :func:`command`, which does both.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from hardware.rfid.frames import build_command

__all__ = [
    "GEN2_PROTOCOL",
    "METADATA_ALL_UHF",
    "STREAM_SEARCH_FLAGS",
    "Model",
    "Opcode",
    "ProtocolError",
    "Region",
    "Status",
    "VersionInfo",
    "antenna_search_list",
    "command",
    "continuous_read_start",
    "continuous_read_stop",
    "decode_read_power",
    "decode_region",
    "decode_version",
    "is_stop_reply",
    "set_protocol_gen2",
    "set_read_power",
    "set_region",
    "status_text",
]


class Opcode(IntEnum):
    """Opcodes of the commands used here."""

    VERSION = 0x03
    BOOT_FIRMWARE = 0x04
    READ_TAG_MULTIPLE = 0x22
    GET_TAG_BUFFER = 0x29
    CLEAR_TAG_BUFFER = 0x2A
    MULTI_PROTOCOL_SEARCH = 0x2F
    ANTENNA_DETECT = 0x61
    GET_READ_POWER = 0x62
    GET_REGION = 0x67
    SET_ANTENNA = 0x91
    SET_READ_POWER = 0x92
    SET_PROTOCOL = 0x93
    SET_REGION = 0x97


class Status(IntEnum):
    """Reply status codes (MercuryAPI ``tmr_status.h``) this package names."""

    OK = 0x0000
    WRONG_NUMBER_OF_DATA = 0x0100
    INVALID_OPCODE = 0x0101
    UNIMPLEMENTED_OPCODE = 0x0102
    POWER_TOO_HIGH = 0x0103
    INVALID_PARAMETER = 0x0105
    POWER_TOO_LOW = 0x0106
    INVALID_REGION = 0x010B
    NO_TAGS_FOUND = 0x0400
    ANTENNA_NOT_CONNECTED = 0x0503
    TEMPERATURE_EXCEEDED = 0x0504


def status_text(status: int) -> str:
    """``0x0103 POWER_TOO_HIGH``-style text for a status code."""
    try:
        return f"0x{status:04X} {Status(status).name}"
    except ValueError:
        return f"0x{status:04X}"


class Region(IntEnum):
    """Regulatory regions (MercuryAPI ``TMR_Region``); the name is what config uses."""

    NA = 1
    EU = 2
    KR = 3
    IN = 4
    JP = 5
    PRC = 6
    EU2 = 7
    EU3 = 8
    KR2 = 9
    PRC2 = 10
    AU = 11
    NZ = 12
    NA2 = 13
    NA3 = 14
    IS = 15
    MY = 16
    ID = 17
    PH = 18
    TW = 19
    MO = 20
    RU = 21
    SG = 22
    JP2 = 23
    JP3 = 24
    VN = 25
    TH = 26
    OPEN = 0xFF


class Model(IntEnum):
    """Module families by ``hardware[0]`` of the version reply."""

    M6E = 0x18
    M6E_NANO = 0x30
    M7E = 0x38


GEN2_PROTOCOL: Final = 5
METADATA_ALL_UHF: Final = 0x0FFF
"""Read count … Gen2 target: every UHF metadata field (what MercuryAPI's readasync asks)."""
STREAM_SEARCH_FLAGS: Final = 0x041B
"""Configured antenna list | tag streaming | large population | duty cycle (on/off time)."""
_START: Final = 0x01
_STOP: Final = 0x02
_SINGULATION_MULTI_SELECT: Final = 0x88
_OPTION_METADATA: Final = 0x10


class ProtocolError(ValueError):
    """A reply that does not have the layout its opcode promises."""


def command(opcode: int, data: bytes = b"") -> bytes:
    """A whole command frame."""
    return build_command(opcode, data)


def set_region(region: Region) -> bytes:
    """Data of Set Region (0x97)."""
    return bytes((region,))


def set_protocol_gen2() -> bytes:
    """Data of Set Protocol (0x93) for Gen2: ``00 05``."""
    return GEN2_PROTOCOL.to_bytes(2, "big")


def set_read_power(centi_dbm: int) -> bytes:
    """Data of Set Read TX Power (0x92): s16 centi-dBm."""
    return centi_dbm.to_bytes(2, "big", signed=True)


def antenna_search_list(ports: list[int] | tuple[int, ...]) -> bytes:
    """Data of Set Antenna (0x91) option 2: the (tx, rx) list searched, monostatic."""
    if not ports or any(not 1 <= p <= 16 for p in ports):
        raise ValueError("antenna ports must be 1..16, at least one")
    return bytes((0x02, *(b for p in ports for b in (p & 0x0F, p & 0x0F))))


def continuous_read_start(
    on_time_ms: int = 250, off_time_ms: int = 0, metadata_flags: int = METADATA_ALL_UHF
) -> bytes:
    """Data of Multi-Protocol Search (0x2F) starting a streamed Gen2 inventory.

    With the defaults this is exactly what MercuryAPI's ``readasync`` sends:
    ``00 00 01 22 00 00 05 0A 22 88 10 04 1B 00 FA 00 00 0F FF``.
    """
    embedded = (
        bytes((_SINGULATION_MULTI_SELECT, _OPTION_METADATA))
        + STREAM_SEARCH_FLAGS.to_bytes(2, "big")
        + on_time_ms.to_bytes(2, "big")
        + off_time_ms.to_bytes(2, "big")
        + metadata_flags.to_bytes(2, "big")
    )
    return (
        b"\x00\x00"  # timeout: none, the reader streams until stopped
        + bytes((_START, Opcode.READ_TAG_MULTIPLE))
        + b"\x00\x00"  # search flags of the multi-protocol search itself
        + bytes((GEN2_PROTOCOL, len(embedded), Opcode.READ_TAG_MULTIPLE))
        + embedded
    )


def continuous_read_stop() -> bytes:
    """Data of Multi-Protocol Search (0x2F) stopping the stream: ``00 00 02``."""
    return bytes((0x00, 0x00, _STOP))


def is_stop_reply(data: bytes) -> bool:
    """True for the reply to a stop (MercuryAPI checks data[0] == 0x02)."""
    return len(data) >= 1 and data[0] == _STOP


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """The Get Version (0x03) reply."""

    bootloader: bytes
    hardware: bytes
    firmware_date: bytes
    firmware_version: bytes
    protocols: int

    @property
    def model(self) -> Model | None:
        """The module family, or None for one this package does not know."""
        try:
            return Model(self.hardware[0])
        except ValueError:
            return None

    @property
    def model_name(self) -> str:
        """``M6E_NANO``-style name, or ``hardware 0xNN``."""
        model = self.model
        return model.name if model is not None else f"hardware 0x{self.hardware[0]:02X}"

    @property
    def in_bootloader(self) -> bool:
        """True when the application firmware is not running (no protocols)."""
        return self.protocols == 0

    @property
    def supports_gen2(self) -> bool:
        """True when protocol 5 (Gen2) is in the supported-protocols bitmask."""
        return bool(self.protocols & (1 << (GEN2_PROTOCOL - 1)))

    @property
    def firmware(self) -> str:
        """Firmware version and BCD date as text, e.g. ``01.09.00.02 (2019-10-07)``."""
        version = ".".join(f"{b:02X}" for b in self.firmware_version)
        date = self.firmware_date.hex()
        return f"{version} ({date[:4]}-{date[4:6]}-{date[6:8]})"

    def encode(self) -> bytes:
        """The 20 reply bytes (for simulators)."""
        return (
            self.bootloader
            + self.hardware
            + self.firmware_date
            + self.firmware_version
            + self.protocols.to_bytes(4, "big")
        )


def decode_version(data: bytes) -> VersionInfo:
    """Decode the 20-byte Get Version reply."""
    if len(data) < 20:
        raise ProtocolError(f"version reply has {len(data)} bytes, expected 20")
    return VersionInfo(
        data[0:4], data[4:8], data[8:12], data[12:16], int.from_bytes(data[16:20], "big")
    )


def decode_region(data: bytes) -> Region | int:
    """Decode the Get Region (0x67) reply: the region, or its code if unknown."""
    if len(data) < 1:
        raise ProtocolError("region reply is empty")
    try:
        return Region(data[0])
    except ValueError:
        return data[0]


def decode_read_power(data: bytes) -> int:
    """Decode the Get Read TX Power (0x62, option 0) reply: centi-dBm."""
    if len(data) < 3:
        raise ProtocolError(f"read power reply has {len(data)} bytes, expected 3")
    return int.from_bytes(data[1:3], "big", signed=True)
