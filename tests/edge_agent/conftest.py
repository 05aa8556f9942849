"""Fixtures and helpers for the journal and outbox tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.journal import GateIdentity, Journal
from gatewire.auth import derive_gate_key
from gatewire.item import CanonicalItemId, IdKind
from gatewire.messages import Decision

SITE_SECRET = bytes(range(32))
IDENTITY = GateIdentity("demo", "in-01", derive_gate_key(SITE_SECRET, "demo", "in-01"))
DECISIONS = (Decision.PASS, Decision.REJECT, Decision.HOLD)


def item_id(serial: str) -> CanonicalItemId:
    """A serialised item id of the demo GTIN."""
    gtin = "09506000134352"
    return CanonicalItemId(
        gtin=gtin,
        serial=serial,
        digital_link=f"https://id.gs1.org/01/{gtin}/21/{serial}",
        kind=IdKind.GS1_ELEMENT_STRING,
    )


def record(journal: Journal, n: int, *, decide: bool = True, t0: float = 1764355200.0) -> str:
    """Journal item ``w{n}`` (and decide it PASS/REJECT/HOLD by ``n % 3``); its window id."""
    window = f"w{n}"
    journal.record_item(
        window,
        scanned_at=t0 + n,
        deadline=t0 + n + 1.5,
        reads={"barcode": [f"(01)09506000134352(21)S{n}"], "rfid": []},
        item=item_id(f"S{n}"),
        seller="acme-beauty",
    )
    if decide:
        journal.record_decision(window, DECISIONS[n % 3], ["ledger.ok"], decided_at=t0 + n + 0.01)
    return window


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


@pytest.fixture
def journal(journal_path: Path) -> Iterator[Journal]:
    with Journal.open(journal_path, IDENTITY) as opened:
        yield opened
