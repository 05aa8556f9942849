"""What an append stores reads back exactly as it was given, whatever characters the text
holds (PostgreSQL's COPY text format escapes backslashes, tabs, newlines and carriage
returns, and reads an unescaped ``\\N`` as NULL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.ledger.event_json import encode_event
from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import OrgKey
from tests.gateway.ledger.conftest import BLOCK_SIZE
from tests.gateway.ledger.ledger_support import BRAND, event, fake_event_hash

AWKWARD = ["a\tb", "line\nbreak", "cr\rlf\r\n", "back\\slash", "\\N", "\\", "\\x41", "é ✓ \u2028"]


def odd_event_hash(event: Mapping[str, Any]) -> str:
    """An event ID with every character COPY's text format treats specially."""
    return "id\t\\N\n" + fake_event_hash(event) + "\r\\"


def _stored(ledger: Ledger) -> list[tuple[Any, ...]]:
    rows = ledger.store._execute(
        "SELECT seq, event_id, event_json, signer, item_key FROM events ORDER BY seq"
    )
    return [tuple(r) for r in rows]


def test_awkward_text_reads_back_exactly(ledger_url: str, keys: dict[str, OrgKey]) -> None:
    events = [event(i, items=[key]) for i, key in enumerate(AWKWARD)]
    events.append(event(99) | {"pg:note": 'quote " backslash \\ tab \t newline \n'})
    events.append(event(98, items=[AWKWARD[0], AWKWARD[3]]))  # several items: item_events
    with Ledger.open(
        ledger_url, keys.values(), event_hash=odd_event_hash, block_size=BLOCK_SIZE
    ) as ledger:
        appended = ledger.append_batch(events, BRAND)
        one_item = [e["epcList"][0] if len(e["epcList"]) == 1 else None for e in events]
        assert _stored(ledger) == [
            (a.seq, odd_event_hash(e), encode_event(e)[0], BRAND, key)
            for a, e, key in zip(appended, events, one_item, strict=True)
        ]
        for key in AWKWARD:
            assert ledger.history(key)[0].event["epcList"][0] == key
        assert [h.seq for h in ledger.history(AWKWARD[0])] == [1, 10]
        assert ledger.item_state("\\N") is not None
        ledger.seal()
        report = ledger.audit(strict=True)
        assert report.ok, report.summary()
