"""Command builders and reply decoders, pinned to the bytes MercuryAPI exchanges."""

from __future__ import annotations

import pytest

from hardware.rfid.commands import (
    Model,
    Opcode,
    ProtocolError,
    Region,
    VersionInfo,
    antenna_search_list,
    command,
    continuous_read_start,
    continuous_read_stop,
    decode_read_power,
    decode_region,
    decode_version,
    is_stop_reply,
    set_protocol_gen2,
    set_read_power,
    set_region,
    status_text,
)

NANO_VERSION = bytes.fromhex("1212060030000000201907250109000200000010")


def test_continuous_read_start_is_exactly_what_readasync_sends() -> None:
    expected = "2F 00 00 01 22 00 00 05 0A 22 88 10 04 1B 00 FA 00 00 0F FF"
    frame = command(Opcode.MULTI_PROTOCOL_SEARCH, continuous_read_start())
    assert frame[2:-2] == bytes.fromhex(expected)


def test_continuous_read_start_carries_on_and_off_time() -> None:
    data = continuous_read_start(on_time_ms=500, off_time_ms=1000, metadata_flags=0x0057)
    assert data[-6:] == bytes.fromhex("01F4 03E8 0057")
    assert data[7] == len(data) - 9  # embedded length excludes its own 0x22 opcode


def test_stop_is_option_two_and_its_reply_carries_0x02() -> None:
    assert command(Opcode.MULTI_PROTOCOL_SEARCH, continuous_read_stop())[1:6] == bytes.fromhex(
        "032F000002"
    )
    assert is_stop_reply(b"\x02")
    assert not is_stop_reply(b"\x00\x00\x01")
    assert not is_stop_reply(b"")


def test_set_commands_encode_their_parameters() -> None:
    assert command(Opcode.SET_PROTOCOL, set_protocol_gen2()) == bytes.fromhex("FF029300 05517D")
    assert set_region(Region.NA2) == b"\x0d"
    assert set_region(Region.EU3) == b"\x08"
    assert set_read_power(2700) == bytes.fromhex("0A8C")
    assert set_read_power(-100) == bytes.fromhex("FF9C")
    assert antenna_search_list([1, 2]) == bytes.fromhex("02 0101 0202")
    with pytest.raises(ValueError, match=r"1\.\.16"):
        antenna_search_list([17])


def test_version_reply_names_the_module_and_its_protocols() -> None:
    version = decode_version(NANO_VERSION)
    assert version.model is Model.M6E_NANO
    assert version.model_name == "M6E_NANO"
    assert version.supports_gen2
    assert not version.in_bootloader
    assert version.firmware == "01.09.00.02 (2019-07-25)"
    assert version.encode() == NANO_VERSION


def test_version_reply_of_a_bootloader_has_no_protocols() -> None:
    version = decode_version(NANO_VERSION[:16] + bytes(4))
    assert version.in_bootloader
    assert not version.supports_gen2


def test_unknown_hardware_is_named_by_its_code() -> None:
    version = VersionInfo(bytes(4), b"\x99\x00\x00\x00", bytes(4), bytes(4), 0x10)
    assert version.model is None
    assert version.model_name == "hardware 0x99"


def test_short_replies_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        decode_version(NANO_VERSION[:19])
    with pytest.raises(ProtocolError):
        decode_read_power(b"\x00\x0a")
    with pytest.raises(ProtocolError):
        decode_region(b"")


def test_region_and_power_replies_decode() -> None:
    assert decode_region(b"\x01") is Region.NA
    assert decode_region(b"\x63") == 0x63
    assert decode_read_power(bytes.fromhex("00 0A8C")) == 2700


def test_status_text_names_known_codes() -> None:
    assert status_text(0x0103) == "0x0103 POWER_TOO_HIGH"
    assert status_text(0x7F00) == "0x7F00"
