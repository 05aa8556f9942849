"""LineFramer: splitting on the suffix, overlong lines, prefixes, resync and line noise."""

from __future__ import annotations

import pytest

from hardware.barcode.framer import LineFramer

READ = b"]d201095060001343521726123110ABC\x1d21S1"
OTHER = b"]C10109506000134352\x1d21S2"


def feed_all(framer: LineFramer, *chunks: bytes) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


@pytest.mark.parametrize("suffix", [b"\r", b"\n", b"\r\n"])
def test_reads_split_on_the_suffix_wherever_the_chunks_break(suffix: bytes) -> None:
    stream = READ + suffix + OTHER + suffix
    for cut in range(len(stream) + 1):
        framer = LineFramer(suffix)
        assert feed_all(framer, stream[:cut], stream[cut:]) == [READ, OTHER], cut
        assert framer.stats.lines == 2


def test_one_byte_chunks_frame_like_one_big_chunk() -> None:
    stream = (READ + b"\r\n") * 3
    framer = LineFramer(b"\r\n")
    assert feed_all(framer, *(stream[i : i + 1] for i in range(len(stream)))) == [READ] * 3


def test_gs_separators_are_kept_in_the_read() -> None:
    assert LineFramer(b"\r").feed(READ + b"\r") == [READ]
    assert b"\x1d" in READ


def test_line_of_exactly_max_length_is_kept_and_one_longer_is_discarded() -> None:
    framer = LineFramer(b"\r", max_line_length=20)
    assert framer.feed(b"1" * 20 + b"\r" + b"2" * 21 + b"\r" + OTHER[:19] + b"\r") == [
        b"1" * 20,
        OTHER[:19],
    ]
    assert framer.stats.overlong_discarded == 1
    assert framer.stats.lines == 3


def test_unterminated_overlong_run_is_dropped_and_stream_resyncs_on_next_suffix() -> None:
    framer = LineFramer(b"\r", max_line_length=64)
    assert framer.feed(b"X" * 100) == []
    assert framer.pending == 0  # not buffered: memory stays bounded
    assert framer.feed(b"Y" * 100) == []
    assert framer.feed(b"tail\r" + READ + b"\r") == [READ]
    assert framer.stats.overlong_discarded == 1


def test_crlf_split_right_after_an_overlong_run_does_not_swallow_the_next_read() -> None:
    framer = LineFramer(b"\r\n", max_line_length=48)
    assert feed_all(framer, b"X" * 80 + b"\r", b"\n" + READ[:10], READ[10:] + b"\r\n") == [READ]
    assert framer.stats.overlong_discarded == 1


def test_stray_lf_from_a_crlf_scanner_on_a_cr_config_is_ignored() -> None:
    framer = LineFramer(b"\r")
    assert framer.feed(READ + b"\r\n" + OTHER + b"\r\n") == [READ, OTHER]
    assert framer.stats.garbage_lines == 0


def test_empty_lines_are_counted_not_returned() -> None:
    framer = LineFramer(b"\r")
    assert framer.feed(b"\r\r" + READ + b"\r") == [READ]
    assert framer.stats.empty_lines == 2


def test_prefix_is_stripped_and_a_line_without_it_is_discarded() -> None:
    framer = LineFramer(b"\r", prefix=b"\x02")
    assert framer.feed(b"\x02" + READ + b"\r" + OTHER + b"\r") == [READ]
    assert framer.stats.missing_prefix == 1


def test_read_starts_after_the_last_prefix_when_a_fragment_precedes_it() -> None:
    framer = LineFramer(b"\r", prefix=b"\x02")
    assert framer.feed(b"\x02" + OTHER[:9] + b"\x02" + READ + b"\r") == [READ]
    assert framer.stats.partial_discarded == 1


@pytest.mark.parametrize("fragment", [b"]", b"]d", b"]d2", OTHER[:12], b"\xff\x00noise"])
def test_fragment_before_an_aim_identifier_is_cut_off(fragment: bytes) -> None:
    framer = LineFramer(b"\r")
    assert framer.feed(fragment + READ + b"\r") == [READ]
    assert framer.stats.partial_discarded == 1
    assert framer.stats.garbage_lines == 0


def test_bracket_not_followed_by_an_aim_identifier_does_not_cut_the_line() -> None:
    assert LineFramer(b"\r").feed(b"abc]1x]\r") == [b"abc]1x]"]


@pytest.mark.parametrize(
    "line", [b"0109506000134352\x00", b"\xe9t\xe9", b"abc\tdef", b"\x7f", b"01\x1b[2J"]
)
def test_line_with_control_or_non_ascii_bytes_is_noise_discarded_and_counted(line: bytes) -> None:
    framer = LineFramer(b"\r")
    assert framer.feed(line + b"\r" + READ + b"\r") == [READ]
    assert framer.stats.garbage_lines == 1


def test_discarded_lines_are_reported_to_the_hook() -> None:
    seen: list[tuple[str, bytes]] = []
    framer = LineFramer(b"\r", max_line_length=16, on_discard=lambda k, d: seen.append((k, d)))
    framer.feed(b"\x00\r" + b"9" * 17 + b"\r")
    assert [kind for kind, _ in seen] == ["garbage_lines", "overlong_discarded"]


def test_drop_partial_forgets_a_pending_fragment_and_counts_it() -> None:
    framer = LineFramer(b"\r")
    framer.feed(OTHER[:10])
    assert framer.drop_partial() is True
    assert framer.feed(b"0109506000134352\r") == [b"0109506000134352"]
    assert framer.stats.partial_discarded == 1


def test_drop_partial_ignores_a_pending_stray_terminator() -> None:
    framer = LineFramer(b"\r\n")
    framer.feed(READ + b"\r\n\r")
    assert framer.drop_partial() is False
    assert framer.stats.partial_discarded == 0


def test_empty_suffix_is_refused() -> None:
    with pytest.raises(ValueError, match="suffix"):
        LineFramer(b"")
