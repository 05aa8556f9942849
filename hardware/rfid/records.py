"""Tag records: what a streamed inventory reply (opcode 0x22) says about one tag read.

A streamed reply's data is ``88 10 SS SS MM MM 01 <record>``: singulation option (0x88,
absent on readers without multi-select), read option (0x10 = metadata follows), search
flags, metadata flags, tag count, then the record. The record holds, in this order, only
the fields whose bit is set in the metadata flags (see :data:`FIELDS`), then the EPC length
u16 in *bits* covering PC + EPC + tag CRC, the PC word (an XPC_W1 word follows when PC bit
0x0200 is set, and XPC_W2 when XPC_W1 bit 0x8000 is), the EPC, and the tag's CRC u16.

Decoding is strict: a record must end exactly where the frame does, so a reader that sends
a field this module does not expect is reported as a bad record, never misread as an EPC.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache
from operator import itemgetter
from typing import Any, Final, NamedTuple

from hardware.rfid.commands import GEN2_PROTOCOL, METADATA_ALL_UHF, STREAM_SEARCH_FLAGS
from hardware.rfid.commands import ProtocolError as ProtocolError

__all__ = [
    "FIELDS",
    "SUPPORTED_FLAGS",
    "ProtocolError",
    "TagRead",
    "decode_stream_reads",
    "decode_tag_buffer",
    "encode_stream_read",
    "encode_tag_record",
]

# (flag, struct code, name) in wire order; "data" (0x0080) is variable and handled apart.
FIELDS: Final = (
    (0x0001, "B", "read_count"),
    (0x0002, "b", "rssi"),
    (0x0004, "B", "antenna"),
    (0x0008, "BH", "frequency"),  # u24: high byte, low word
    (0x0010, "I", "timestamp"),
    (0x0020, "H", "phase"),
    (0x0040, "B", "protocol"),
    (0x0080, "", "data"),
    (0x0100, "B", "gpio"),
    (0x0200, "B", "gen2_q"),
    (0x0400, "B", "gen2_link_frequency"),
    (0x0800, "B", "gen2_target"),
    (0x1000, "2s", "brand_id"),
)
SUPPORTED_FLAGS: Final = 0x1FFF
"""Metadata flags this module decodes; 0x2000 (tag type, an EBV of HF/LF readers) is not."""
_DATA_FLAG: Final = 0x0080
_DATA_ERROR_BIT: Final = 0x8000  # "embedded tag op failed": 2 bytes of error code follow
_XPC_W1_HIGH: Final = 0x02  # PC bit 0x0200, in the PC's first byte
_XPC_W2_HIGH: Final = 0x80  # XPC_W1 bit 0x8000, in its first byte
_MULTI_SELECT: Final = 0x88
_OPTION_METADATA: Final = 0x10


class TagRead(NamedTuple):
    """One read of one tag, as the reader reported it (None: not in the metadata)."""

    epc: bytes
    pc: bytes
    """PC word, plus XPC_W1 (and XPC_W2) when present: 2, 4 or 6 bytes."""
    rssi: int | None
    """dBm."""
    antenna: int | None
    """Logical antenna: the receive port (1–16); readers here are monostatic."""
    read_count: int | None
    frequency_khz: int | None
    timestamp_ms: int | None
    """Milliseconds since the search started, by the reader's clock."""
    phase: int | None
    """Degrees, 0–180, as the reader reports it."""
    protocol: int | None
    tag_crc: int

    @property
    def epc_hex(self) -> str:
        """The EPC as upper-case hex (what :func:`gatewire.identity.parse_epc_hex` takes)."""
        return self.epc.hex().upper()


class _Layout(NamedTuple):
    fixed: struct.Struct  # metadata through the EPC length (no data field), or up to data
    has_data: bool
    tail_size: int  # with a data field: bytes of the fields after it
    pick: Callable[[tuple[Any, ...]], tuple[Any, ...]]
    """(rssi, antenna, read count, freq high, freq low, timestamp, phase, protocol)."""


_PICKED: Final = ("rssi", "antenna", "read_count", "freq_hi", "freq_lo", "timestamp", "phase")


@lru_cache(maxsize=64)
def _layout(flags: int) -> _Layout:
    if flags & ~SUPPORTED_FLAGS:
        raise ProtocolError(f"unsupported metadata flags 0x{flags:04X}")
    head = ""
    tail = ""
    for flag, code, _ in FIELDS:
        if flags & flag and flag != _DATA_FLAG:
            if flag < _DATA_FLAG:
                head += code
            else:
                tail += code
    names = [name for flag, _, name in FIELDS if flags & flag and flag < _DATA_FLAG]
    names = [
        n for name in names for n in (("freq_hi", "freq_lo") if name == "frequency" else (name,))
    ]
    has_data = bool(flags & _DATA_FLAG)
    fixed = struct.Struct(">" + (head if has_data else head + tail + "H"))  # + EPC bit length
    missing = len(fixed.unpack(bytes(fixed.size)))  # index of the None appended on decode
    pick = itemgetter(*(names.index(n) if n in names else missing for n in (*_PICKED, "protocol")))
    return _Layout(fixed, has_data, struct.calcsize(">" + tail), pick)


def decode_stream_reads(data: bytes) -> list[TagRead]:
    """Decode the tag records of one streamed 0x22 reply.

    Raises:
        ProtocolError: not a tag report, unsupported flags, or a record that does not
            fit the frame exactly.
    """
    n = len(data)
    at = 1 if n and data[0] == _MULTI_SELECT else 0
    if n < at + 6:
        raise ProtocolError(f"tag report too short ({n} bytes)")
    if not data[at] & _OPTION_METADATA:
        raise ProtocolError(f"not a tag report (read option 0x{data[at]:02X})")
    flags = data[at + 3] << 8 | data[at + 4]
    count = data[at + 5]
    layout = _layout(flags)
    i = at + 6
    reads = []
    for _ in range(count):
        read, i = _decode_record(data, i, layout)
        reads.append(read)
    if i != n:
        raise ProtocolError(f"tag report has {n - i} bytes after its records")
    return reads


def _decode_record(data: bytes, i: int, layout: _Layout) -> tuple[TagRead, int]:
    fixed = layout.fixed
    try:
        values = fixed.unpack_from(data, i)
    except struct.error as exc:
        raise ProtocolError("tag record truncated in its metadata") from exc
    i += fixed.size
    if layout.has_data:
        bits = int.from_bytes(data[i : i + 2], "big")
        i += 2 + (2 if bits & _DATA_ERROR_BIT else (bits + 7) >> 3) + layout.tail_size
        if i + 2 > len(data):
            raise ProtocolError("tag record truncated before the EPC length")
        covered_bits = data[i] << 8 | data[i + 1]
        i += 2
    else:
        covered_bits = values[-1]
    rssi, antenna, count, freq_hi, freq_lo, timestamp, phase, protocol = layout.pick(
        (*values, None)
    )
    remaining = ((covered_bits + 7) >> 3) - 2  # PC + EPC, without the tag CRC
    pc_len = 0
    if protocol is None or protocol == GEN2_PROTOCOL:
        pc_len = 2
        if i < len(data) and data[i] & _XPC_W1_HIGH:
            pc_len = 6 if i + 2 < len(data) and data[i + 2] & _XPC_W2_HIGH else 4
    epc_at = i + pc_len
    end = i + remaining + 2
    if remaining < pc_len or end > len(data):
        raise ProtocolError("tag record EPC length does not fit the frame")
    return (
        TagRead(
            data[epc_at : end - 2],
            data[i:epc_at],
            rssi,
            None if antenna is None else antenna & 0x0F or 16,  # RX port; 0 encodes 16
            count,
            None if freq_hi is None else freq_hi << 16 | freq_lo,
            timestamp,
            phase,
            protocol,
            data[end - 2] << 8 | data[end - 1],
        ),
        end,
    )


def decode_tag_buffer(data: bytes) -> list[TagRead]:
    """Decode a Get Tag Buffer (0x29) reply: flags u16, read option, count, records."""
    if len(data) < 4:
        raise ProtocolError(f"tag buffer reply too short ({len(data)} bytes)")
    layout = _layout(data[0] << 8 | data[1])
    i = 4
    reads = []
    for _ in range(data[3]):
        read, i = _decode_record(data, i, layout)
        reads.append(read)
    if i != len(data):
        raise ProtocolError(f"tag buffer reply has {len(data) - i} bytes after its records")
    return reads


def encode_tag_record(read: TagRead, flags: int = METADATA_ALL_UHF) -> bytes:
    """One tag record with the fields ``flags`` names (for simulators and tests).

    Fields the read lacks are sent as zero, Gen2 Q/link frequency/target as zero, and no
    embedded data. ``pc`` must already carry the EPC length in its top bits.
    """
    _layout(flags)  # rejects unsupported flags
    values: dict[str, tuple[object, ...]] = {
        "read_count": (read.read_count or 1,),
        "rssi": (read.rssi if read.rssi is not None else -60,),
        "antenna": (((read.antenna or 1) & 0x0F) * 0x11,),  # TX and RX port
        "frequency": ((read.frequency_khz or 0) >> 16, (read.frequency_khz or 0) & 0xFFFF),
        "timestamp": (read.timestamp_ms or 0,),
        "phase": (read.phase or 0,),
        "protocol": (read.protocol if read.protocol is not None else GEN2_PROTOCOL,),
        "data": (0,),
        "gpio": (0,),
        "gen2_q": (0,),
        "gen2_link_frequency": (0,),
        "gen2_target": (0,),
        "brand_id": (b"\x00\x00",),
    }
    record = b"".join(
        struct.pack(">" + (code or "H"), *values[name])  # "data": a zero bit length
        for flag, code, name in FIELDS
        if flags & flag
    )
    covered = read.pc + read.epc
    return (
        record
        + ((len(covered) + 2) * 8).to_bytes(2, "big")
        + covered
        + read.tag_crc.to_bytes(2, "big")
    )


def encode_stream_read(
    read: TagRead,
    flags: int = METADATA_ALL_UHF,
    search_flags: int = STREAM_SEARCH_FLAGS,
) -> bytes:
    """The data of a streamed 0x22 reply carrying ``read`` (for simulators and tests)."""
    return (
        bytes((_MULTI_SELECT, _OPTION_METADATA))
        + search_flags.to_bytes(2, "big")
        + flags.to_bytes(2, "big")
        + b"\x01"
        + encode_tag_record(read, flags)
    )
