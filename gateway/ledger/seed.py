"""Deterministic demo data for the ledger: organisations, sellers and commissioned items.

``demo_batches(items, seed)`` yields ``(signer, events, items_done)`` batches ready for
``Ledger.append_batch``: each item is commissioned by its brand owner (ObjectEvent ADD,
bizStep commissioning, disposition active, the seller as a business transaction, the
``pg:`` extensions of the brand's own label check), and about half of them are then
received at the demo site (signed by the site). The same ``(items, seed)`` always gives
the same events, so the same event IDs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.ledger.epcis import SELLER_BTT, BizStep, Disposition, object_event, to_jsonld

__all__ = [
    "BRANDS",
    "SITE",
    "Organisation",
    "commissioning_event",
    "demo_batches",
    "demo_orgs",
    "seller_id",
]


@dataclass(frozen=True, slots=True)
class Organisation:
    """A demo organisation: its ledger signer name and GS1 company prefix."""

    org: str
    name: str
    company_prefix: str

    def sgln(self, location: str, extension: str = "0") -> str:
        """An SGLN EPC URI of one of this organisation's locations (5-digit reference)."""
        return f"urn:epc:id:sgln:{self.company_prefix}.{location}.{extension}"


#: Brand owners (7-digit GS1 company prefixes) who commission items.
BRANDS: tuple[Organisation, ...] = (
    Organisation("brand-acme", "Acme Sportswear", "4012345"),
    Organisation("brand-borealis", "Borealis Watches", "0614141"),
    Organisation("brand-cygnus", "Cygnus Audio", "9521141"),
)
#: The fulfilment site whose gate receives the items.
SITE = Organisation("site-dc1", "Provgate DC 1", "5012345")
SELLER_COUNT = 12
_START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
_PRODUCTS_PER_BRAND = 5


def demo_orgs() -> list[Organisation]:
    """Every organisation that signs demo events (brands first, then the site)."""
    return [*BRANDS, SITE]


def seller_id(number: int) -> str:
    """The business-transaction ID of demo seller ``number``."""
    return f"https://provgate.dev/seller/s-{number:02d}"


def commissioning_event(
    org: Organisation, epc: str, seller: str, when: datetime, **extensions: Any
) -> dict[str, Any]:
    """``org`` commissions one item sold through ``seller`` (an ObjectEvent ADD at its
    location 00001, JSON-LD); ``extensions`` are the ``pg:`` fields of :func:`object_event`."""
    return to_jsonld(
        object_event(
            [epc],
            action="ADD",
            biz_step=BizStep.COMMISSIONING,
            disposition=Disposition.ACTIVE,
            read_point=org.sgln("00001", "1"),
            biz_location=org.sgln("00001"),
            transactions=[(SELLER_BTT, seller)],
            event_time=when,
            **extensions,
        )
    )


def demo_batches(
    items: int, seed: int = 0, batch_size: int = 1000
) -> Iterator[tuple[str, list[dict[str, Any]], int]]:
    """``(signer, events, items_done)`` batches for ``items`` demo items.

    Items are produced in chunks of ``batch_size``; each chunk yields one batch per brand
    (its commissioning events) and then one for the site (its receiving events), so every
    batch has one signer. ``items_done`` counts the items finished so far.
    """
    if items < 0:
        raise ValueError(f"items must be ≥ 0, got {items}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    rng = random.Random(seed)
    products = {
        brand.org: [f"{rng.randint(1, 9)}{rng.randint(0, 99999):05d}" for _ in range(5)]
        for brand in BRANDS
    }
    site_gate = SITE.sgln("00005", "1")
    site = SITE.sgln("00005")
    done = 0
    while done < items:
        chunk = min(batch_size, items - done)
        commissioning: dict[str, list[dict[str, Any]]] = {b.org: [] for b in BRANDS}
        receiving: list[dict[str, Any]] = []
        for number in range(done, done + chunk):
            brand = BRANDS[rng.randrange(len(BRANDS))]
            item_ref = products[brand.org][rng.randrange(_PRODUCTS_PER_BRAND)]
            epc = f"urn:epc:id:sgtin:{brand.company_prefix}.{item_ref}.{100000 + number}"
            seller = seller_id(rng.randrange(1, SELLER_COUNT + 1))
            made = _START + timedelta(seconds=30 * number + rng.randrange(30))
            commissioning[brand.org].append(
                commissioning_event(
                    brand,
                    epc,
                    seller,
                    made,
                    vision_score=round(0.9 + rng.random() * 0.1, 3),
                    model_version="label-v3",
                    inspector=f"{brand.org}/qa-{rng.randrange(1, 4)}",
                    verdict="PASS",
                )
            )
            if rng.random() < 0.5:
                score = round(rng.random(), 3)
                ok = score >= 0.2
                receiving.append(
                    to_jsonld(
                        object_event(
                            [epc],
                            action="OBSERVE",
                            biz_step=BizStep.RECEIVING,
                            disposition=Disposition.IN_PROGRESS
                            if ok
                            else Disposition.NON_CONFORMANT,
                            read_point=site_gate,
                            biz_location=site,
                            transactions=[(SELLER_BTT, seller)],
                            event_time=made + timedelta(days=3, seconds=rng.randrange(3600)),
                            vision_score=score,
                            model_version="label-v3",
                            reason_codes=() if ok else ("VISION_LOW",),
                            verdict="PASS" if ok else "REJECT",
                        )
                    )
                )
        done += chunk
        last = [org for org, events in commissioning.items() if events]
        for org in last:
            finished = done if (org == last[-1] and not receiving) else done - chunk
            yield org, commissioning[org], finished
        if receiving:
            yield SITE.org, receiving, done
