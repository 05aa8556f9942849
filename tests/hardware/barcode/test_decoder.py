"""ScanDecoder: bytes to ScanEvents with normalised IDs; invalid reads are reported."""

from __future__ import annotations

import json

from hardware.barcode.config import SerialScannerConfig
from hardware.barcode.decoder import MISSING_AIM_ERROR, ScanDecoder, symbology_of

GOOD = "]d2010950600013435217261231" + "10ABC\x1d21S1"


def decoder(**overrides: object) -> ScanDecoder:
    fields: dict[str, object] = {"type": "serial_scanner", "port": "/dev/null", "name": "gate-1"}
    fields.update(overrides)
    return ScanDecoder(SerialScannerConfig.model_validate(fields))


def test_valid_read_becomes_a_scan_with_the_canonical_item() -> None:
    [event] = decoder().feed(GOOD.encode() + b"\r", 5.0, 1e9)
    assert event.valid
    assert event.item is not None
    assert event.item.key == "09506000134352/S1"
    assert event.item.batch == "ABC"
    assert event.raw == GOOD  # AIM ID and GS kept
    assert event.symbology == "]d2"
    assert (event.ts, event.wall_ts, event.device, event.source) == (5.0, 1e9, "gate-1", "barcode")


def test_bad_check_digit_is_an_invalid_scan_with_the_reason() -> None:
    d = decoder()
    [event] = d.feed(b"]C10109506000134353\r", 0.0, 0.0)
    assert not event.valid
    assert event.item is None
    assert event.error is not None
    assert "check digit" in event.error
    assert d.counters()["invalid_scans"] == 1


def test_unknown_application_identifier_is_an_invalid_scan() -> None:
    [event] = decoder().feed(b"]C10109506000134352\x1d991234\x1d2390X\r", 0.0, 0.0)
    assert not event.valid
    assert event.error


def test_read_without_aim_id_is_invalid_when_aim_is_required() -> None:
    d = decoder(require_aim=True)
    [event] = d.feed(b"0109506000134352\r", 0.0, 0.0)
    assert not event.valid
    assert event.error == MISSING_AIM_ERROR
    assert d.counters()["missing_aim"] == 1


def test_read_without_aim_id_is_parsed_when_aim_is_optional() -> None:
    [event] = decoder().feed(b"0109506000134352\r", 0.0, 0.0)
    assert event.valid
    assert event.symbology is None


def test_repeated_reads_within_the_window_are_one_scan() -> None:
    d = decoder(dedup_window_s=1.0)
    line = GOOD.encode() + b"\r"
    assert len(d.feed(line * 3, 0.0, 0.0)) == 1
    assert d.feed(line, 0.5, 0.0) == []
    assert len(d.feed(line, 2.0, 0.0)) == 1
    assert d.counters()["duplicates_suppressed"] == 3
    assert d.counters()["scans"] == 2


def test_partial_line_older_than_the_timeout_is_dropped_before_new_bytes() -> None:
    d = decoder(partial_line_timeout_s=0.1)
    assert d.feed(b"01095060", 1.0, 0.0) == []
    [event] = d.feed(b"0109506000134352\r", 1.5, 0.0)
    assert event.valid
    assert d.counters()["partial_discarded"] == 1


def test_partial_line_continued_within_the_timeout_is_kept() -> None:
    d = decoder(partial_line_timeout_s=0.1)
    d.feed(b"01095060", 1.0, 0.0)
    [event] = d.feed(b"00134352\r", 1.05, 0.0)
    assert event.raw == "0109506000134352"


def test_reset_stream_drops_the_partial_line_from_before_a_reconnect() -> None:
    d = decoder(partial_line_timeout_s=0)
    d.feed(b"01095060", 1.0, 0.0)
    assert d.reset_stream() is True
    [event] = d.feed(b"0109506000134352\r", 1.01, 0.0)
    assert event.valid


def test_counters_name_every_kind_of_loss() -> None:
    assert set(decoder().counters()) >= {
        "lines",
        "scans",
        "valid_scans",
        "invalid_scans",
        "overlong_discarded",
        "garbage_lines",
        "partial_discarded",
        "missing_prefix",
        "missing_aim",
        "empty_lines",
        "duplicates_suppressed",
    }


def test_scan_event_json_dict_has_source_raw_valid_error_and_item() -> None:
    [event] = decoder().feed(GOOD.encode() + b"\r", 0.0, 0.0)
    data = json.loads(json.dumps(event.as_json_dict()))
    assert data["source"] == "barcode"
    assert data["valid"] is True
    assert data["error"] is None
    assert data["item"]["gtin"] == "09506000134352"
    assert data["item"]["expiry"] == "2026-12-31"
    assert data["key"] == "09506000134352/S1"


def test_symbology_is_the_aim_identifier_or_none() -> None:
    assert symbology_of("]E04006381333931") == "]E0"
    assert symbology_of("]Q3https://id.gs1.org/01/09506000134352") == "]Q3"
    assert symbology_of("0109506000134352") is None
    assert symbology_of("]1x") is None
    assert symbology_of("]") is None
