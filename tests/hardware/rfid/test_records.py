"""Tag records: field order by metadata flags, EPC length in bits, XPC, strictness."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardware.rfid.records import (
    FIELDS,
    ProtocolError,
    TagRead,
    decode_stream_reads,
    decode_tag_buffer,
    encode_stream_read,
    encode_tag_record,
)

EPC = bytes.fromhex("3074257BF7194E4000001A85")
READ = TagRead(EPC, b"\x30\x00", -55, 2, 3, 915250, 1234, 90, 5, 0xABCD)
ALL_FLAGS = 0x1FFF


def test_streamed_record_with_every_uhf_field_decodes() -> None:
    data = bytes.fromhex(
        "88 10 041B 0FFF 01"  # multi-select, metadata, search flags, metadata flags, 1 tag
        "03 C9 22 0DF732 000004D2 005A 05"  # count, RSSI -55, antenna 2/2, 915250 kHz, ts, phase
        "0000 00 00 00 00"  # no data, GPIO, Q, link frequency, target
        "0080 3000"  # 128 bits = PC + 12-byte EPC + CRC; PC says 6 words
        "3074257BF7194E4000001A85 ABCD"
    )
    (read,) = decode_stream_reads(data)
    assert read == READ
    assert read.epc_hex == "3074257BF7194E4000001A85"


def test_record_without_the_multi_select_byte_decodes() -> None:
    data = encode_stream_read(READ)[1:]
    assert decode_stream_reads(data) == [READ]


flag_sets = st.integers(0, ALL_FLAGS)


@given(flag_sets)
def test_fields_follow_the_flags_in_wire_order(flags: int) -> None:
    (read,) = decode_stream_reads(encode_stream_read(READ, flags))
    assert read.epc == EPC
    assert read.tag_crc == 0xABCD
    assert (read.rssi is not None) == bool(flags & 0x0002)
    assert (read.antenna is not None) == bool(flags & 0x0004)
    assert (read.phase is not None) == bool(flags & 0x0020)
    assert (read.frequency_khz is not None) == bool(flags & 0x0008)
    assert (read.timestamp_ms is not None) == bool(flags & 0x0010)
    if flags & 0x0002:
        assert read.rssi == -55


def test_field_sizes_match_the_protocol() -> None:
    sizes = {name: len(encode_tag_record(READ, flag)) - 18 for flag, _, name in FIELDS}
    assert sizes == {
        "read_count": 1,
        "rssi": 1,
        "antenna": 1,
        "frequency": 3,
        "timestamp": 4,
        "phase": 2,
        "protocol": 1,
        "data": 2,
        "gpio": 1,
        "gen2_q": 1,
        "gen2_link_frequency": 1,
        "gen2_target": 1,
        "brand_id": 2,
    }


def test_embedded_data_is_skipped_by_its_bit_length() -> None:
    record = encode_tag_record(READ, 0x0080 | 0x0002)
    # replace the zero data length with 12 bits (2 bytes) of data
    with_data = record[:1] + b"\x00\x0c\xaa\xbb" + record[3:]
    data = bytes.fromhex("88 10 041B 0082 01") + with_data
    (read,) = decode_stream_reads(data)
    assert read.epc == EPC
    failed_op = record[:1] + b"\x80\x00\x04\x20" + record[3:]  # 0x8000: 2-byte error code
    assert decode_stream_reads(bytes.fromhex("88 10 041B 0082 01") + failed_op)[0].epc == EPC


def test_xpc_words_are_not_part_of_the_epc() -> None:
    xpc_w1 = READ._replace(pc=bytes.fromhex("3200 0001"))
    assert decode_stream_reads(encode_stream_read(xpc_w1)) == [xpc_w1]
    xpc_w2 = READ._replace(pc=bytes.fromhex("3200 8001 0002"))
    (read,) = decode_stream_reads(encode_stream_read(xpc_w2))
    assert read.pc == bytes.fromhex("320080010002")
    assert read.epc == EPC


def test_antenna_byte_is_tx_and_rx_and_zero_means_port_16() -> None:
    data = bytearray(encode_stream_read(READ, 0x0004))
    data[7] = 0x00
    assert decode_stream_reads(bytes(data))[0].antenna == 16
    data[7] = 0x33
    assert decode_stream_reads(bytes(data))[0].antenna == 3


def test_a_non_gen2_protocol_has_no_pc_word() -> None:
    other = READ._replace(protocol=3, pc=b"")
    (read,) = decode_stream_reads(encode_stream_read(other, 0x0040))
    assert read.protocol == 3
    assert read.pc == b""
    assert read.epc == EPC


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: d + b"\x00", "after its records"),
        (lambda d: d[:-1], "does not fit"),
        (lambda d: d[:12], "truncated"),
        (lambda d: d[:4] + b"\x20" + d[5:], "unsupported metadata flags"),
        (lambda d: d[:1] + b"\x00" + d[2:], "not a tag report"),
        (lambda d: d[:4], "too short"),
    ],
)
def test_malformed_records_are_refused_not_misread(mangle: object, message: str) -> None:
    assert callable(mangle)
    data = encode_stream_read(READ, 0x0057)
    with pytest.raises(ProtocolError, match=message):
        decode_stream_reads(mangle(data))


def test_an_epc_length_shorter_than_the_pc_is_refused() -> None:
    data = bytearray(encode_stream_read(READ, 0x0000))
    data[7:9] = (16).to_bytes(2, "big")  # 16 bits: only the CRC
    with pytest.raises(ProtocolError, match="does not fit"):
        decode_stream_reads(bytes(data))


def test_tag_buffer_reply_holds_several_records() -> None:
    other = READ._replace(epc=bytes.fromhex("E2000017221101441890"), pc=b"\x28\x00")
    flags = 0x0057
    data = (
        flags.to_bytes(2, "big")
        + b"\x00\x02"
        + encode_tag_record(READ, flags)
        + encode_tag_record(other, flags)
    )
    reads = decode_tag_buffer(data)
    assert [r.epc for r in reads] == [EPC, other.epc]
