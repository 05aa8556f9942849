"""Item records read from rows in place: the joined read gives what the plain read gives."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.items import ItemProjection, ItemRecord, ItemStatus, ProjectionError, _record
from gateway.ledger.ledger import Ledger
from gateway.rules import _FRESH_SQL
from tests.gateway.rules.rules_support import BRAND, commission, item

ROW = (
    "04012345000017/1",
    "04012345000017",
    "1",
    "4012345",
    "LOT-7",
    "2027-03-31",
    BRAND,
    "received",
    "seller-1",
    "urn:epc:id:sgln:1",
    "site-1",
    1_700_000_000.5,
    7,
    "received",
    1_700_000_000.5,
)


@pytest.mark.parametrize("at", [0, 1, 2])
def test_a_record_read_at_an_offset_is_the_record_of_the_rest_of_the_row(at: int) -> None:
    record = _record(("head",) * at + ROW, at)
    assert type(record) is ItemRecord
    assert record == ItemRecord(
        key="04012345000017/1",
        gtin="04012345000017",
        serial="1",
        company_prefix="4012345",
        batch="LOT-7",
        expiry=dt.date(2027, 3, 31),
        commissioned_by=BRAND,
        status=ItemStatus.RECEIVED,
        seller="seller-1",
        last_site="urn:epc:id:sgln:1",
        last_signer="site-1",
        last_seen=1_700_000_000.5,
        last_seq=7,
        place=ItemStatus.RECEIVED,
        moved_at=1_700_000_000.5,
    )
    assert record.status is ItemStatus.RECEIVED


def test_rows_this_code_cannot_read_are_refused() -> None:
    with pytest.raises(ValueError, match="gw_items row has 14 columns, not 15"):
        _record(("head", *ROW[:-1]), 1)
    with pytest.raises(KeyError):
        _record((*ROW[:7], "teleported", *ROW[8:]))
    with pytest.raises(ValueError, match="Invalid isoformat"):
        _record((*ROW[:5], "not a date", *ROW[6:]))


def test_the_joined_lookup_reads_what_the_plain_lookup_reads(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ilmd = {"cbvmda:lotNumber": "LOT-7", "cbvmda:itemExpirationDate": "2027-03-31"}
    ledger.append_batch([commission(n, ilmd=ilmd if n % 2 else None) for n in range(6)], BRAND)
    projection.sync()
    keys = [item(n).key for n in range(8)]  # 6 and 7 are unknown
    meta, joined = projection.lookup_with(_FRESH_SQL, keys)
    assert meta[0] is None  # the head: every event applied, nothing to sync
    assert joined == projection.lookup_many(keys)
    assert sorted(joined) == sorted(keys[:6])
    assert joined[item(1).key].expiry == dt.date(2027, 3, 31)


def test_a_joined_row_of_unknown_status_fails_as_a_projection_error(ledger: Ledger) -> None:
    projection = ItemProjection(ledger.store)
    ledger.append(commission(1), BRAND)
    projection.sync()
    ledger.store._execute("UPDATE gw_items SET status = 'teleported'")
    with pytest.raises(ProjectionError):
        projection.lookup_with(_FRESH_SQL, [item(1).key])
