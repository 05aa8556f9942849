"""The ThingMagic frame CRC: pinned against MercuryAPI's frames, and fast == reference."""

from __future__ import annotations

import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardware.rfid.crc import NIBBLE_TABLE, crc16, crc16_nibble

# Frames as MercuryAPI sends them: header, covered bytes, CRC (MSB first).
PINNED = [
    ("FF 00 03 1D 0C", "Get Version"),
    ("FF 00 04 1D 0B", "Boot Firmware"),
    ("FF 02 93 00 05 51 7D", "Set Protocol Gen2"),
    ("FF 00 67 1D 68", "Get Region"),
]


@pytest.mark.parametrize(("frame_hex", "name"), PINNED)
@pytest.mark.parametrize("crc", [crc16, crc16_nibble])
def test_crc_of_mercuryapi_frames_is_pinned(frame_hex: str, name: str, crc: object) -> None:
    assert callable(crc)
    frame = bytes.fromhex(frame_hex)
    assert crc(frame[1:-2]).to_bytes(2, "big") == frame[-2:], name


def test_it_is_not_crc16_ccitt_false() -> None:
    get_version = bytes.fromhex("0003")
    ccitt_false = binascii.crc_hqx(get_version, 0xFFFF)
    assert ccitt_false != 0x1D0C
    assert crc16(get_version) == 0x1D0C


def test_nibble_table_is_mercuryapis() -> None:
    assert NIBBLE_TABLE[:4] == (0x0000, 0x1021, 0x2042, 0x3063)
    assert NIBBLE_TABLE[-1] == 0xF1EF


@given(st.binary(max_size=300))
def test_fast_crc_equals_the_nibble_reference(data: bytes) -> None:
    assert crc16(data) == crc16_nibble(data)
    assert crc16(bytearray(data)) == crc16(memoryview(data)) == crc16(data)
