"""Property tests: any byte stream, chopped anywhere, yields the valid scans of the clean
reads it contains, and nothing else; framing never depends on chunk boundaries."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware.barcode.config import SUFFIX_BYTES, SerialScannerConfig
from hardware.barcode.decoder import ScanDecoder
from hardware.barcode.framer import ALLOWED_BYTES, LineFramer
from simulators.scanner import generate_items, with_aim

MAX_LINE = 256
POOL = [with_aim(code) for code in generate_items(24, seed=42)] + [
    "]C10109506000134352\x1d21A1",
    "]E04006381333931",
    "]E496385074",
    "]Q1https://id.gs1.org/01/09506000134352/21/Q1",
]
TERMINATOR_BYTES = b"\r\n"
NOISE_KINDS = ["garbage", "overlong", "fragment", "glued", "empty"]
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def noise_piece() -> st.SearchStrategy[bytes]:
    """Bytes that are not a read: at least one byte no scanner sends, no terminators."""
    return st.tuples(st.binary(max_size=24), st.sampled_from([0x00, 0x07, 0x1B, 0x7F, 0xFF])).map(
        lambda t: t[0].translate(None, TERMINATOR_BYTES) + bytes([t[1]])
    )


@st.composite
def dirty_stream(draw: st.DrawFn, suffix: bytes, prefix: bytes) -> tuple[bytes, list[str]]:
    """A stream of clean reads with noise of every kind around them; and the clean reads."""
    reads = draw(st.lists(st.sampled_from(POOL), max_size=12))
    out = bytearray()
    for read in reads:
        encoded = prefix + read.encode() + suffix
        kinds = draw(st.lists(st.sampled_from(NOISE_KINDS), max_size=3))
        # A fragment must run into the next read: one whose terminator survived is a
        # shorter read, which no framing can tell apart (see docs/hardware-barcode.md).
        for kind in sorted(kinds, key=lambda k: k == "fragment"):
            if kind == "garbage":  # a terminated line of noise
                out += draw(noise_piece()) + suffix
            elif kind == "overlong":  # a terminated line longer than the limit
                junk = draw(st.binary(min_size=MAX_LINE + 1, max_size=MAX_LINE + 40))
                junk = junk.translate(None, TERMINATOR_BYTES).ljust(MAX_LINE + 1, b"X")
                out += junk + suffix
            elif kind == "fragment":  # a read cut short, its terminator lost
                other = prefix + draw(st.sampled_from(POOL)).encode()
                out += other[: draw(st.integers(1, len(other) - 1))]
            elif kind == "glued":  # unterminated noise right before the read
                out += draw(noise_piece())
            else:
                out += suffix
        out += encoded
    return bytes(out), reads


def chop(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def decoder_for(suffix: str, prefix: str) -> ScanDecoder:
    config = SerialScannerConfig.model_validate(
        {
            "type": "serial_scanner",
            "port": "/dev/null",
            "suffix": suffix,
            "prefix": prefix,
            "max_line_length": MAX_LINE,
            "dedup_window_s": 0,
            "partial_line_timeout_s": 0,
            "require_aim": True,
        }
    )
    return ScanDecoder(config)


@PROPERTY_SETTINGS
@given(
    data=st.data(),
    suffix=st.sampled_from(list(SUFFIX_BYTES)),
    prefix=st.sampled_from(["", "\x02", "S:"]),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
)
def test_valid_scans_of_a_dirty_stream_are_exactly_its_clean_reads(
    data: st.DataObject, suffix: str, prefix: str, cuts: list[int]
) -> None:
    stream, reads = data.draw(dirty_stream(SUFFIX_BYTES[suffix], prefix.encode()))
    decoder = decoder_for(suffix, prefix)
    events = []
    for chunk in chop(stream, cuts):
        events += decoder.feed(chunk, 0.0, 0.0)
    assert [e.raw for e in events if e.valid] == reads
    assert decoder.counters()["scans"] == len(events)


@PROPERTY_SETTINGS
@given(stream=st.binary(max_size=2000), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_framing_does_not_depend_on_where_the_chunks_break(stream: bytes, cuts: list[int]) -> None:
    for suffix in SUFFIX_BYTES.values():
        whole = LineFramer(suffix, b"", 64)
        expected = whole.feed(stream)
        chunked = LineFramer(suffix, b"", 64)
        got: list[bytes] = []
        for chunk in chop(stream, cuts):
            got += chunked.feed(chunk)
        assert got == expected
        assert chunked.stats == whole.stats


@PROPERTY_SETTINGS
@given(stream=st.binary(max_size=3000), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_arbitrary_bytes_never_raise_and_scans_are_printable_ascii(
    stream: bytes, cuts: list[int]
) -> None:
    decoder = decoder_for("CR", "")
    for chunk in chop(stream, cuts):
        for event in decoder.feed(chunk, 0.0, 0.0):
            assert not event.raw.encode("latin-1").translate(None, ALLOWED_BYTES)
            assert event.valid == (event.error is None)
    counts = decoder.counters()
    assert counts["scans"] == counts["valid_scans"] + counts["invalid_scans"]
