"""What the API writes reads as intended by the item projection the verifier uses."""

from __future__ import annotations

import datetime as dt

from gateway.items import ItemProjection, ItemRecord, ItemStatus
from gateway.ledger.store import open_store
from tests.gateway.api.conftest import ACME, SELLER, Api

GTIN = "04012345000016"


def _statuses(api: Api) -> dict[str, ItemRecord]:
    with open_store(api.settings.ledger_url) as store:
        projection = ItemProjection(store)
        projection.sync()
        return projection.lookup_many([f"{GTIN}/1", f"{GTIN}/2"])


def test_commissioned_then_inspected_items_as_the_projection_reads_them(api: Api) -> None:
    reply = api.client.post(
        "/v1/commissioning",
        json={
            "seller": SELLER,
            "items": [
                {"gtin": GTIN, "serial": "1", "batch": "L1", "expiry": "2027-06-30"},
                {"gtin": GTIN, "serial": "2"},
            ],
        },
        headers=api.headers("acme"),
    )
    assert reply.status_code == 201, reply.text
    records = _statuses(api)
    first = records[f"{GTIN}/1"]
    assert (first.status, first.commissioned_by, first.seller) == (
        ItemStatus.COMMISSIONED,
        ACME,
        SELLER,
    )
    assert (first.batch, first.expiry) == ("L1", dt.date(2027, 6, 30))

    for serial, result in (("1", "counterfeit"), ("2", "genuine")):
        reply = api.client.post(
            "/v1/inspections",
            json={"item": f"(01){GTIN}(21){serial}", "inspector": "ann", "result": result},
            headers=api.headers("operator"),
        )
        assert reply.status_code == 201, reply.text
    records = _statuses(api)
    assert records[f"{GTIN}/1"].status is ItemStatus.QUARANTINED
    assert records[f"{GTIN}/2"].status is ItemStatus.COMMISSIONED
