"""An appender keeps its signer's open block (the leaves of the next block) between appends
instead of reading it back, and reads it again whenever another writer moved it on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import OrgKey
from gateway.ledger.store import AppendState
from tests.gateway.ledger.ledger_support import BRAND, SITE, event, fake_event_hash


def _blocks(ledger: Ledger) -> list[tuple[int, str, int, int, bytes, bytes]]:
    return [
        (b.block_no, b.signer, b.first_seq, b.last_seq, b.root, b.head_chain)
        for b in ledger.store.blocks()
    ]


def _record_states(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> list[AppendState]:
    """Every AppendState the ledger's store hands out from now on."""
    states: list[AppendState] = []
    store: Any = ledger.store
    append_state = store.append_state

    def spy(*args: Any) -> AppendState:
        state: AppendState = append_state(*args)
        states.append(state)
        return state

    monkeypatch.setattr(store, "append_state", spy)
    return states


def test_an_appender_does_not_read_back_the_open_block_it_left(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.append_batch([event(i) for i in range(3)], BRAND)  # open block: seqs 1–3
    states = _record_states(ledger, monkeypatch)
    ledger.append_batch([event(i) for i in range(3, 9)], BRAND)  # blocks 1–4, 5–8; open 9
    ledger.append_batch([event(i) for i in range(9, 11)], BRAND)  # open 9–11
    ledger.append_batch([event(i) for i in range(11, 14)], BRAND)  # block 9–12; open 13–14
    assert [(s.first_open, s.open_count, s.open_events) for s in states] == [
        (1, 3, []),
        (9, 1, []),
        (9, 3, []),
    ]
    assert [(b[2], b[3]) for b in _blocks(ledger)] == [(1, 4), (5, 8), (9, 12)]
    ledger.seal()
    assert ledger.audit(strict=True).ok


def test_an_open_block_moved_on_by_another_writer_is_read_again(
    open_ledger: Callable[[], Ledger], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = open_ledger(), open_ledger()
    first.append_batch([event(i) for i in range(3)], BRAND)  # first holds 1–3
    second.append_batch([event(i) for i in range(3, 6)], BRAND)  # block 1–4, open 5–6
    second.append_batch([event(i, "receiving", "in_progress") for i in range(2)], SITE)
    states = _record_states(first, monkeypatch)
    first.append_batch([event(i) for i in range(6, 9)], BRAND)  # seals 5, 6, 9, 10 (not 1–3)
    assert [(s.first_open, s.open_count, len(s.open_events)) for s in states] == [(5, 2, 2)]
    assert [(b[1], b[2], b[3]) for b in _blocks(first)] == [(BRAND, 1, 4), (BRAND, 5, 10)]
    first.seal()
    assert first.audit(strict=True).ok


def test_after_an_explicit_seal_the_next_append_starts_a_new_block(ledger: Ledger) -> None:
    ledger.append_batch([event(i) for i in range(3)], BRAND)
    ledger.seal(BRAND)  # block 1–3
    ledger.append_batch([event(i) for i in range(3, 8)], BRAND)  # block 4–7, open 8
    assert [(b[2], b[3]) for b in _blocks(ledger)] == [(1, 3), (4, 7)]
    assert ledger.store.open_block(BRAND) == (8, 1)
    ledger.seal()
    assert ledger.audit(strict=True).ok


def test_a_ledger_with_smaller_blocks_seals_an_open_block_a_bigger_one_left(
    ledger_url: str, keys: dict[str, OrgKey]
) -> None:
    with (
        Ledger.open(ledger_url, keys.values(), event_hash=fake_event_hash, block_size=8) as big,
        Ledger.open(ledger_url, keys.values(), event_hash=fake_event_hash, block_size=3) as small,
    ):
        big.append_batch([event(i) for i in range(6)], BRAND)  # open block: 1–6
        small.append(event(6), BRAND)  # 7 events open, more than its 3: sealed in threes
        assert [(b[2], b[3]) for b in _blocks(small)] == [(1, 3), (4, 6)]
        assert small.store.open_block(BRAND) == (7, 1)
        small.seal()
        assert small.audit(strict=True).ok
