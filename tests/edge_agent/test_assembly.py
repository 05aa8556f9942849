"""Item assembly: windows per item, reads gathered and compared, never a crash."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.assembly import (
    READ_INVALID,
    READ_MISMATCH,
    READ_NONE,
    WINDOW_LATE_TRIGGER,
    AssembledItem,
    AssemblySettings,
    FrameRef,
    ItemAssembler,
    SourceRead,
)
from edge_agent.profile import TriggerMode
from gatewire.epc import encode_sgtin_hex, sgtin_uri
from gatewire.messages import MAX_ALSO_READ, ReadSource
from hardware.gate_io.interface import PhotoEyeEdge, PhotoEyeEvent

GTIN = "09506000134352"
PHOTO_EYE = AssemblySettings(TriggerMode.PHOTO_EYE, window_s=0.5, grace_s=0.02)
QUIET_GAP = AssemblySettings(TriggerMode.QUIET_GAP, window_s=0.5, quiet_gap_s=0.15, grace_s=0.02)


def barcode(serial: str, ts: float, extra: str = "") -> SourceRead:
    """A GS1 DataMatrix scan of the demo GTIN."""
    return SourceRead(ReadSource.BARCODE, f"]d201{GTIN}{extra}21{serial}", ts)


def tag(serial: str, ts: float) -> SourceRead:
    """An SGTIN-96 tag of the demo GTIN, as its EPC hex."""
    uri = sgtin_uri(GTIN, serial, 7)
    assert uri is not None
    return SourceRead(ReadSource.RFID, encode_sgtin_hex(uri), ts)


def garbage(ts: float, raw: str = "]d2not-an-id") -> SourceRead:
    return SourceRead(ReadSource.BARCODE, raw, ts)


def assembler(config: AssemblySettings = PHOTO_EYE) -> ItemAssembler:
    return ItemAssembler(config, id_prefix="t")


def keys(items: list[AssembledItem]) -> list[str | None]:
    return [None if i.item is None else i.item.key for i in items]


def test_several_items_in_flight_each_get_their_own_reads() -> None:
    asm = assembler()
    for n, t0 in enumerate((0.0, 0.6, 1.2), 1):
        asm.trigger(t0)
        asm.read(barcode(str(n), t0 + 0.1))
        asm.read(tag(str(n), t0 + 0.15))
    assert asm.advance(0.51) == []  # window 1 ends at 0.5, but reads may still trail by 20 ms
    first = asm.advance(0.53)
    assert keys(first) == [f"{GTIN}/1"]
    assert (first[0].opened_at, first[0].closed_at) == (0.0, 0.5)
    assert first[0].sources == (ReadSource.BARCODE, ReadSource.RFID)
    assert first[0].reasons == ()
    rest = asm.advance(2.0)
    assert keys(rest) == [f"{GTIN}/2", f"{GTIN}/3"]
    assert [i.window_id for i in first + rest] == ["t-00000001", "t-00000002", "t-00000003"]
    assert asm.open_windows == 0


def test_the_next_trigger_cuts_the_window_short() -> None:
    asm = assembler()
    asm.trigger(0.0)
    asm.trigger(0.3)  # items closer than the window length
    asm.read(barcode("1", 0.2))
    asm.read(barcode("2", 0.35))
    items = asm.advance(1.0)
    assert [(i.opened_at, i.closed_at) for i in items] == [(0.0, 0.3), (0.3, 0.8)]
    assert keys(items) == [f"{GTIN}/1", f"{GTIN}/2"]


def test_reads_out_of_order_and_late_still_land_while_their_window_is_open() -> None:
    asm = assembler()
    asm.trigger(0.0)
    asm.read(barcode("1", 0.20))
    asm.read(tag("1", 0.10))  # delivered after a newer read
    assert asm.advance(0.3) == []
    asm.read(tag("1", 0.05))  # older than what was already taken: its window is still open
    (item,) = asm.advance(1.0)
    assert [r.ts for r in item.reads] == [0.05, 0.10, 0.20]
    assert asm.counters["reads_late"] == 0
    asm.read(barcode("9", 0.4))  # its window was already returned
    assert asm.counters["reads_late"] == 1
    assert asm.flush() == []


def test_a_late_read_from_a_gap_does_not_join_the_open_window() -> None:
    asm = assembler()
    asm.trigger(0.0)
    asm.trigger(1.0)
    assert len(asm.advance(1.2)) == 1  # item 1 returned, item 2 open
    asm.read(barcode("stray", 0.7))  # from the gap, delivered 500 ms late
    (item,) = asm.advance(2.0)
    assert item.reads == ()
    assert asm.counters["reads_late"] == 1


def test_a_read_between_windows_belongs_to_no_item() -> None:
    asm = assembler()
    asm.trigger(0.0)
    asm.read(barcode("1", 0.1))
    asm.read(barcode("stray", 0.7))  # after window 1 (ends 0.5), before item 2
    asm.trigger(1.0)
    asm.read(barcode("2", 1.1))
    items = asm.advance(2.0)
    assert keys(items) == [f"{GTIN}/1", f"{GTIN}/2"]
    assert asm.counters["reads_unassigned"] == 1
    assert all(len(i.reads) == 1 for i in items)


def test_a_read_at_the_trigger_time_is_that_items() -> None:
    asm = assembler()
    asm.read(barcode("1", 1.0))
    asm.trigger(1.0)
    (item,) = asm.advance(2.0)
    assert keys([item]) == [f"{GTIN}/1"]


def test_the_window_lead_takes_reads_just_before_the_trigger() -> None:
    asm = assembler(AssemblySettings(TriggerMode.PHOTO_EYE, window_s=0.5, lead_s=0.1))
    asm.read(tag("1", 0.95))  # the RFID field reaches upstream of the photo eye
    asm.trigger(1.0)
    (item,) = asm.advance(2.0)
    assert item.opened_at == pytest.approx(0.9)
    assert item.sources == (ReadSource.RFID,)


def test_quiet_gap_mode_splits_items_on_silence_and_on_window_length() -> None:
    asm = assembler(QUIET_GAP)
    for ts in (0.0, 0.05, 0.1):
        asm.read(barcode("1", ts))
    asm.frame(FrameRef("label", 1, 0.12))
    asm.frame(FrameRef("label", 2, 0.3))  # between items: quiet
    for ts in (0.4, 0.45):
        asm.read(tag("2", ts))
    asm.trigger(0.42)  # no photo eye in this mode: ignored
    for k in range(8):  # one read every 100 ms for 0.8 s: the window ends after 0.5 s
        asm.read(barcode("3", 1.0 + k / 10))
    items = asm.advance(3.0)
    assert keys(items) == [f"{GTIN}/1", f"{GTIN}/2", f"{GTIN}/3", f"{GTIN}/3"]
    assert items[0].closed_at == pytest.approx(0.25)
    assert items[0].frames == (FrameRef("label", 1, 0.12),)
    assert items[0].trigger_ts is None
    assert items[2].closed_at == pytest.approx(1.5)
    assert len(items[2].reads) == 5
    assert asm.counters["frames_unassigned"] == 1
    assert asm.counters["triggers_ignored"] == 1


def test_barcode_and_rfid_that_disagree_are_a_mismatch() -> None:
    asm = assembler()
    asm.trigger(0.0)
    asm.read(tag("777", 0.05))
    asm.read(barcode("1", 0.1))
    (item,) = asm.advance(1.0)
    assert item.item is not None
    assert item.item.key == f"{GTIN}/1"
    assert item.reasons == (READ_MISMATCH,)
    assert [i.key for i in item.also_read] == [f"{GTIN}/777"]
    assert item.sources == (ReadSource.BARCODE,)
    assert item.reads_by_source() == {"barcode": [item.reads[1].raw], "rfid": [item.reads[0].raw]}


def test_reads_that_add_detail_agree_and_the_most_specific_id_is_the_item() -> None:
    asm = assembler()
    asm.trigger(0.0)
    asm.read(tag("1", 0.05))
    asm.read(SourceRead(ReadSource.BARCODE, f"]E0{GTIN[1:]}", 0.06))  # GTIN-13: product only
    asm.read(barcode("1", 0.1, extra="17261231" + "10LOT7\x1d"))
    asm.read(barcode("1", 0.2))
    (item,) = asm.advance(1.0)
    assert item.reasons == ()
    assert item.item is not None
    assert item.item.batch == "LOT7"
    assert item.sources == (ReadSource.BARCODE, ReadSource.RFID)


def test_many_other_ids_are_cut_to_the_wire_limit() -> None:
    asm = assembler()
    asm.trigger(0.0)
    for n in range(MAX_ALSO_READ + 3):
        asm.read(tag(str(100 + n), 0.01 * (n + 1)))
    (item,) = asm.advance(1.0)
    assert item.reasons == (READ_MISMATCH,)
    assert len(item.also_read) == MAX_ALSO_READ


@pytest.mark.parametrize(
    "raw",
    ["]d2not-an-id", "", "\x00\xff\x1d", "9" * 5000, "urn:epc:id:sgtin:garbage", "(01)123"],
)
def test_unparsable_reads_are_counted_and_never_crash(raw: str) -> None:
    asm = assembler()
    asm.trigger(0.0)
    asm.read(garbage(0.1, raw))
    asm.read(SourceRead(ReadSource.RFID, raw, 0.2))
    (item,) = asm.advance(1.0)
    assert item.item is None
    assert item.reasons == (READ_NONE, READ_INVALID)
    assert item.invalid_reads == 2
    assert asm.counters["reads_invalid"] == 2


def test_garbage_beside_a_good_read_does_not_hide_the_item() -> None:
    asm = assembler()
    asm.trigger(0.0)
    asm.read(garbage(0.1))
    asm.read(barcode("1", 0.2))
    (item,) = asm.advance(1.0)
    assert keys([item]) == [f"{GTIN}/1"]
    assert (item.reasons, item.invalid_reads) == ((), 1)


def test_a_window_with_only_camera_frames_has_no_item() -> None:
    asm = assembler()
    asm.trigger(0.0)
    frames = [FrameRef("label-a", seq, seq / 30) for seq in range(1, 14)]
    for frame in reversed(frames):
        asm.frame(frame)
    (item,) = asm.advance(1.0)
    assert item.item is None
    assert item.reasons == (READ_NONE,)
    assert item.frames == tuple(f for f in frames if f.ts < 0.5)


def test_photo_eye_events_trigger_on_enter_only() -> None:
    asm = assembler()
    asm.photo_eye(PhotoEyeEvent(PhotoEyeEdge.ENTER, 0.0, 1e9, 1))
    asm.photo_eye(PhotoEyeEvent(PhotoEyeEdge.LEAVE, 0.1, 1e9, 1, blocked_s=0.1))
    assert len(asm.advance(1.0)) == 1
    assert asm.counters["triggers"] == 1


def test_a_late_trigger_still_opens_a_window_and_says_so() -> None:
    asm = assembler()
    asm.read(barcode("1", 0.1))
    asm.advance(0.5)  # the read is taken with no window: unassigned
    asm.trigger(0.05)  # the edge arrives 450 ms late
    (item,) = asm.advance(1.0)
    assert item.item is None
    assert item.reasons == (READ_NONE, WINDOW_LATE_TRIGGER)
    assert asm.counters["triggers_late"] == 1


def test_bad_timestamps_are_counted_and_ignored() -> None:
    asm = assembler()
    asm.trigger(math.nan)
    asm.read(barcode("1", math.inf))
    asm.frame(FrameRef("cam", 0, -math.inf))
    assert asm.advance(math.nan) == []
    assert asm.flush() == []
    assert asm.counters["inputs_bad_time"] == 3


def test_flush_closes_every_open_window_once() -> None:
    asm = assembler()
    asm.trigger(0.0)
    asm.trigger(0.2)
    asm.read(barcode("2", 0.3))
    items = asm.flush()
    assert keys(items) == [None, f"{GTIN}/2"]
    assert asm.flush() == []
    assert asm.counters["windows_opened"] == asm.counters["windows_closed"] == 2


def test_window_ids_default_to_a_random_prefix() -> None:
    first, second = ItemAssembler(PHOTO_EYE), ItemAssembler(PHOTO_EYE)
    assert first.id_prefix != second.id_prefix


# --- invariants ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    kind: str  # trigger, read or frame
    ts: float
    delay: float  # how much later than ts it is delivered
    n: int


_events = st.lists(
    st.builds(
        _Event,
        kind=st.sampled_from(["trigger", "read", "read", "frame"]),
        ts=st.floats(0, 5, allow_nan=False).map(lambda t: round(t, 3)),
        delay=st.one_of(st.just(0.0), st.floats(0, 0.08)),
        n=st.integers(0, 3),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(events=_events, mode=st.sampled_from([TriggerMode.PHOTO_EYE, TriggerMode.QUIET_GAP]))
def test_every_read_lands_once_at_most_and_every_window_closes_once(
    events: list[_Event], mode: TriggerMode
) -> None:
    config = AssemblySettings(mode, window_s=0.4, lead_s=0.03, quiet_gap_s=0.1, grace_s=0.02)
    asm = ItemAssembler(config, id_prefix="p")
    out: list[AssembledItem] = []
    raws: list[str] = []
    arrivals = sorted(enumerate(events), key=lambda ie: (ie[1].ts + ie[1].delay, ie[0]))
    for index, event in arrivals:
        now = event.ts + event.delay
        if event.kind == "trigger":
            asm.trigger(event.ts)
        elif event.kind == "frame":
            asm.frame(FrameRef("cam", index, event.ts))
        else:
            read = barcode(f"{index}", event.ts) if event.n else garbage(event.ts, f"x{index}")
            raws.append(read.raw)
            asm.read(read)
        out.extend(asm.advance(now))
    out.extend(asm.flush())

    landed = [r.raw for item in out for r in item.reads]
    assert len(landed) == len(set(landed))  # no read in two windows
    counters = asm.counters
    assert len(landed) + counters["reads_unassigned"] + counters["reads_late"] == len(raws)
    ids = [item.window_id for item in out]
    assert len(ids) == len(set(ids)) == counters["windows_opened"] == counters["windows_closed"]
    assert asm.open_windows == 0
    if mode is TriggerMode.PHOTO_EYE:
        assert len(out) == sum(e.kind == "trigger" for e in events)  # one window per item
    frames = [f.seq for item in out for f in item.frames]
    assert len(frames) == len(set(frames))
    for item in out:
        assert item.opened_at <= item.closed_at
        assert all(item.opened_at <= r.ts < item.closed_at for r in item.reads)
        assert (item.item is None) == (READ_NONE in item.reasons)
