"""Framing: building frames, and a parser that resyncs without losing valid frames."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hardware.rfid.crc import crc16
from hardware.rfid.frames import Frame, FrameParser, build_command, build_response

TAG = build_response(0x22, bytes(range(44)))
VERSION = build_response(0x03, bytes.fromhex("12120600300000002019072501090002 00000010"))


def parse_all(stream: bytes, chunk: int = 7, *, responses: bool = True) -> list[Frame]:
    parser = FrameParser(responses=responses)
    frames: list[Frame] = []
    for at in range(0, len(stream), chunk):
        frames += parser.feed(stream[at : at + chunk])
    return frames + parser.flush()


def test_command_frames_are_built_as_mercuryapi_sends_them() -> None:
    assert build_command(0x03) == bytes.fromhex("FF00031D0C")
    assert build_command(0x93, b"\x00\x05") == bytes.fromhex("FF0293000551 7D")


def test_response_frames_carry_a_status_covered_by_the_crc() -> None:
    frame = build_response(0x2F, b"\x02")
    assert frame[:6] == bytes.fromhex("FF012F000002")
    assert crc16(frame[1:-2]).to_bytes(2, "big") == frame[-2:]
    assert build_response(0x99, status=0x0101)[:5] == bytes.fromhex("FF00990101")


def test_oversized_data_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 255"):
        build_command(0x22, bytes(256))


def test_frames_split_anywhere_are_reassembled() -> None:
    stream = TAG + VERSION + TAG
    for chunk in (1, 2, 3, 50, 1000):
        assert [f.opcode for f in parse_all(stream, chunk)] == [0x22, 0x03, 0x22]
    parser = FrameParser()
    assert parser.feed(TAG[:10]) == []
    assert parser.pending == 10
    (frame,) = parser.feed(TAG[10:])
    assert frame == Frame(0x22, 0, bytes(range(44)))


def test_commands_parse_without_a_status() -> None:
    (frame,) = parse_all(build_command(0x97, b"\x0d"), responses=False)
    assert frame == Frame(0x97, 0, b"\x0d")


def test_bad_crc_resyncs_at_the_byte_after_its_header_not_after_its_length() -> None:
    # A corrupt frame whose length byte claims 0x40 bytes: skipping that length would
    # swallow the two valid frames behind it.
    corrupt = bytes.fromhex("FF4022000011")
    parser = FrameParser()
    frames = parser.feed(corrupt + TAG + VERSION + TAG)
    assert [f.opcode for f in frames] == [0x22, 0x03, 0x22]
    assert parser.crc_errors == 1
    assert parser.discarded_bytes == len(corrupt)


def test_a_flipped_byte_costs_only_its_own_frame() -> None:
    bad = bytearray(TAG)
    bad[20] ^= 0x40
    parser = FrameParser()
    frames = parser.feed(VERSION + bytes(bad) + TAG)
    assert [f.opcode for f in frames] == [0x03, 0x22]
    assert parser.crc_errors == 1


def test_truncated_frame_followed_by_valid_frames_loses_only_itself() -> None:
    parser = FrameParser()
    frames = parser.feed(TAG[:30] + VERSION + TAG)
    assert [f.opcode for f in frames] == [0x03, 0x22]


def test_garbage_between_frames_is_counted_and_skipped() -> None:
    parser = FrameParser()
    frames = parser.feed(b"\x00\x01noise" + TAG + b"\x13\x37" + VERSION)
    assert [f.opcode for f in frames] == [0x22, 0x03]
    assert parser.counters() == {
        "frames": 2,
        "crc_errors": 0,
        "discarded_bytes": 9,
        "truncated_frames": 0,
    }


def test_a_header_whose_length_reaches_past_the_data_waits_then_flush_recovers() -> None:
    parser = FrameParser()
    assert parser.feed(b"\xff\xf0" + VERSION) == []  # might still be a long frame
    assert [f.opcode for f in parser.flush()] == [0x03]
    assert parser.truncated_frames == 1
    assert parser.pending == 0


def test_reset_drops_buffered_bytes_as_discarded() -> None:
    parser = FrameParser()
    parser.feed(TAG[:12])
    parser.reset()
    assert parser.pending == 0
    assert parser.discarded_bytes == 12
    assert [f.opcode for f in parser.feed(VERSION)] == [0x03]


# --- property: any chopping of a stream with garbage yields the clean stream's frames ----

frames_st = st.lists(
    st.builds(
        lambda op, status, data: build_response(op, data, status),
        st.integers(0, 255),
        st.sampled_from([0, 0x0400, 0x0101]),
        st.binary(max_size=60),
    ),
    max_size=6,
)


@st.composite
def garbage_st(draw: st.DrawFn) -> bytes:
    """Random bytes (FF-rich), a truncated frame, or a frame with a changed byte."""
    frame = build_response(draw(st.integers(0, 255)), draw(st.binary(max_size=40)))
    kind = draw(st.sampled_from(["bytes", "truncated", "corrupt", "none"]))
    if kind == "bytes":
        return draw(st.binary(max_size=24).map(lambda b: b.replace(b"\x07", b"\xff")))
    if kind == "truncated":
        return frame[: draw(st.integers(1, len(frame) - 1))]
    if kind == "corrupt":
        at = draw(st.integers(1, len(frame) - 1))
        flip = draw(st.integers(1, 255))
        return frame[:at] + bytes((frame[at] ^ flip,)) + frame[at + 1 :]
    return b""


def accidental_frame_in(stream: bytes, spans: list[tuple[int, int]]) -> bool:
    """True if a candidate starting inside garbage happens to carry a valid CRC."""
    for start, end in spans:
        for at in range(start, end):
            if stream[at] != 0xFF or at + 1 >= len(stream):
                continue
            stop = at + 7 + stream[at + 1]
            if stop <= len(stream) and crc16(stream[at + 1 : stop - 2]) == int.from_bytes(
                stream[stop - 2 : stop], "big"
            ):
                return True
    return False


@settings(max_examples=150, deadline=None)
@given(frames_st, st.data())
def test_any_stream_chopped_anywhere_yields_the_frames_of_the_clean_stream(
    clean_frames: list[bytes], data: st.DataObject
) -> None:
    stream = b""
    garbage_spans = []
    for frame in [*clean_frames, b""]:
        garbage = data.draw(garbage_st())
        garbage_spans.append((len(stream), len(stream) + len(garbage)))
        stream += garbage + frame
    assume(not accidental_frame_in(stream, garbage_spans))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    parser = FrameParser()
    got: list[Frame] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += parser.feed(stream[start:end])
    got += parser.flush()
    expected = parse_all(b"".join(clean_frames), chunk=1000)
    assert got == expected
    assert len(got) == len(clean_frames)
    assert parser.frames == len(clean_frames)


@given(frames_st, st.lists(st.integers(1, 64), max_size=20))
def test_a_clean_stream_needs_no_flush_and_counts_no_errors(
    clean_frames: list[bytes], sizes: list[int]
) -> None:
    stream = b"".join(clean_frames)
    parser = FrameParser()
    got: list[Frame] = []
    at = 0
    for size in [*sizes, len(stream)]:
        got += parser.feed(stream[at : at + size])
        at += size
    assert len(got) == len(clean_frames)
    assert parser.pending == 0
    assert parser.crc_errors == parser.discarded_bytes == parser.truncated_frames == 0
