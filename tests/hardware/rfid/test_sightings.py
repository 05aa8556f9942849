"""Window aggregation: one sighting per tag per window, emitted at first read and at close."""

from __future__ import annotations

import threading

import pytest

from gatewire.epc import encode_sgtin_hex
from gatewire.identity import ParseOutcome, parse_epc_hex
from hardware.rfid.records import TagRead
from hardware.rfid.sightings import SightingAggregator, SightingQueue, TagSighting

ITEM = bytes.fromhex(encode_sgtin_hex("urn:epc:id:sgtin:0614141.812345.6789"))
OTHER = bytes.fromhex(encode_sgtin_hex("urn:epc:id:sgtin:0614141.812345.42"))
SSCC = bytes.fromhex("3114257BF4499602D2000000")  # an SSCC-96: a pallet, not an item


def read(epc: bytes = ITEM, rssi: int = -60, antenna: int = 1, phase: int = 10) -> TagRead:
    return TagRead(epc, b"\x30\x00", rssi, antenna, 1, 915000, 0, phase, 5, 0)


def test_first_read_is_emitted_at_once_and_the_window_close_carries_totals() -> None:
    agg = SightingAggregator(0.5)
    (first,) = agg.observe(read(rssi=-60), 10.0)
    assert not first.final
    assert first.reads == 1
    assert first.ok
    assert first.outcome.item is not None
    assert first.outcome.item.serial == "6789"
    assert agg.observe(read(rssi=-48, antenna=2, phase=77), 10.2) == []
    assert agg.observe(read(rssi=-52, antenna=1), 10.4) == []
    assert agg.expire(10.49) == []
    (final,) = agg.expire(10.5)
    assert final.final
    assert final.reads == 3
    assert final.rssi_peak == -48
    assert final.antenna == 2  # the antenna and phase of the strongest read
    assert final.phase == 77
    assert final.antennas == (1, 2)
    assert (final.first_seen, final.last_seen) == (10.0, 10.4)
    assert final.epc_hex == ITEM.hex().upper()
    assert agg.open_windows == 0


def test_the_window_is_fixed_from_the_first_read_so_a_lingering_tag_sights_again() -> None:
    agg = SightingAggregator(0.5)
    agg.observe(read(), 0.0)
    agg.observe(read(), 0.45)
    closed, reopened = agg.observe(read(), 0.55)  # no tick in between: closes on this read
    assert (closed.final, closed.reads) == (True, 2)
    assert (reopened.final, reopened.reads, reopened.first_seen) == (False, 1, 0.55)


def test_reader_read_counts_add_up() -> None:
    agg = SightingAggregator(1.0, emit_first=False)
    agg.observe(read()._replace(read_count=4), 0.0)
    agg.observe(read()._replace(read_count=None), 0.1)
    (final,) = agg.close_all()
    assert final.reads == 5


def test_windows_close_in_the_order_they_opened() -> None:
    agg = SightingAggregator(1.0)
    agg.observe(read(ITEM), 0.0)
    agg.observe(read(OTHER), 0.5)
    agg.observe(read(ITEM), 0.9)
    assert [s.epc_hex for s in agg.expire(1.2)] == [ITEM.hex().upper()]
    assert [s.epc_hex for s in agg.expire(1.5)] == [OTHER.hex().upper()]


def test_without_first_read_emission_only_the_final_sighting_is_emitted() -> None:
    agg = SightingAggregator(0.2, emit_first=False)
    assert agg.observe(read(), 0.0) == []
    (final,) = agg.expire(0.3)
    assert final.final


def test_close_all_emits_every_open_window() -> None:
    agg = SightingAggregator(5.0)
    agg.observe(read(ITEM), 0.0)
    agg.observe(read(OTHER), 0.1)
    assert len(agg.close_all()) == 2
    assert agg.close_all() == []


def test_a_non_item_epc_is_sighted_as_invalid_never_as_an_id() -> None:
    agg = SightingAggregator(0.5)
    (first,) = agg.observe(read(SSCC), 0.0)
    assert not first.ok
    assert first.outcome.item is None
    assert first.outcome.error
    (garbage,) = agg.observe(read(b"\x01\x02"), 0.0)
    assert not garbage.ok


def test_the_epc_is_parsed_once_per_window_not_per_read() -> None:
    calls: list[str] = []

    def parse(epc_hex: str) -> ParseOutcome:
        calls.append(epc_hex)
        return parse_epc_hex(epc_hex)

    agg = SightingAggregator(1.0, parse=parse)
    for at in range(50):
        agg.observe(read(), at / 100)
    assert len(calls) == 1


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SightingAggregator(0)


def sighting(n: int) -> TagSighting:
    outcome = parse_epc_hex(ITEM.hex())
    return TagSighting(str(n), outcome, 1, None, None, (), 0.0, 0.0)


def test_queue_drops_the_oldest_when_full() -> None:
    queue = SightingQueue(2)
    assert queue.put(sighting(1))
    assert queue.put(sighting(2))
    assert not queue.put(sighting(3))
    assert len(queue) == 2
    got = [queue.get(0), queue.get(0)]
    assert [s.epc_hex for s in got if s is not None] == ["2", "3"]
    assert queue.get(0.01) is None


def test_queue_get_waits_for_a_sighting() -> None:
    queue = SightingQueue(4)
    timer = threading.Timer(0.05, queue.put, (sighting(7),))
    timer.start()
    got = queue.get(2.0)
    timer.join()
    assert got is not None
    assert got.epc_hex == "7"
