"""The held open block (``Ledger._open_leaves``): an appender's copy of its signer's
open block must never make it seal a block over leaves the database does not hold."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from gateway.ledger.ledger import Appended, Ledger, LedgerError
from gateway.ledger.signing import OrgKey
from gateway.ledger.store import SqlStore
from tests.gateway.ledger.ledger_support import (
    BRAND,
    SITE,
    aggregation,
    epc,
    event,
    fake_event_hash,
)


def _block_rows(store: SqlStore) -> list[tuple[Any, ...]]:
    """Block rows without their sealing time (Ed25519 signatures are deterministic)."""
    rows = store._execute(
        "SELECT block_no, signer, key_id, first_seq, last_seq, leaf_count, root, head_chain, "
        "signature, tree FROM blocks ORDER BY block_no"
    )
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]


def _contents(store: SqlStore) -> tuple[list[tuple[Any, ...]], ...]:
    events = store._execute("SELECT seq, event_id, signer, chain FROM events ORDER BY seq")
    opened = store._execute(
        "SELECT signer, first_seq, event_count FROM open_blocks ORDER BY signer"
    )
    return (
        [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in events],
        _block_rows(store),
        [tuple(r) for r in opened],
    )


class _RollbackError(Exception):
    """Raised inside an outer write transaction to undo it."""


def _append_then_roll_back(ledger: Ledger, events: list[dict[str, Any]]) -> None:
    with ledger.store.write():
        ledger.append_batch(events, SITE)
        raise _RollbackError


def test_an_append_rolled_back_with_its_outer_transaction_is_not_held(
    open_ledger: Callable[[], Ledger],
) -> None:
    """gateway/ingest.py (and commission, inspections) append inside their own store.write();
    when that outer transaction rolls back, the appender must not keep the leaves of the
    events that were never committed."""
    gateway, importer = open_ledger(), open_ledger()
    with pytest.raises(_RollbackError):  # e.g. EventIngestor.ingest failing after its append
        _append_then_roll_back(gateway, [event(i) for i in range(2)])  # seqs 1-2
    assert gateway.store.event_count() == 0
    # Another worker appends as many site events: the open block is (1, 2) again.
    importer.append_batch([event(i, "receiving", "in_progress") for i in range(10, 12)], SITE)
    gateway.append_batch([event(i) for i in range(2, 4)], SITE)  # fills block 1-4
    gateway.seal()
    report = gateway.audit(strict=True)
    assert report.ok, report.summary()


# ---- randomized: the held open block against a ledger that never holds it -------------------


class _Uncached(Ledger):
    """A ledger that reads the open block under the lock on every append (the reference)."""

    def _append(self, *args: Any) -> list[Appended]:
        self._open_leaves.clear()
        return super()._append(*args)


_BAD: Mapping[str, Any] = {"type": "ObjectEvent", "epcList": [""]}


def _ops(rng: random.Random, steps: int) -> Iterator[tuple[str, int, str, list[Any]]]:
    """(operation, writer, signer, events) steps: appends (single, batch, stream), failed
    appends, seals, by two writers and two signers."""
    n = 0
    for _ in range(steps):
        writer, signer = rng.randrange(2), rng.choice((BRAND, SITE))
        kind = rng.choices(("batch", "stream", "fail", "seal", "seal_all"), (6, 2, 2, 1, 1))[0]
        size = rng.randint(1, 6)
        events: list[Any] = []
        for _ in range(size):
            n += 1
            events.append(aggregation([epc(n), epc(n + 1)]) if n % 7 == 0 else event(n, t=n))
        if kind == "fail":
            events.insert(rng.randrange(len(events) + 1), _BAD)
        yield kind, writer, signer, events


def _run(ledgers: Sequence[Ledger], ops: list[tuple[str, int, str, list[Any]]]) -> None:
    for kind, writer, signer, events in ops:
        ledger = ledgers[writer]
        if kind == "batch":
            ledger.append_batch(events, signer)
        elif kind == "stream":
            half = len(events) // 2
            list(ledger.append_batches([events[:half], events[half:], events[:1]], signer))
        elif kind == "fail":
            with pytest.raises(LedgerError):
                ledger.append_batch(events, signer)
        elif kind == "seal":
            ledger.seal(signer)
        else:
            ledger.seal()


@pytest.mark.parametrize("sizes", [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (2, 5), (4, 3)], ids=str)
def test_random_appends_seal_the_blocks_a_ledger_without_the_held_block_seals(
    ledger_url: str, twin_url: str, keys: dict[str, OrgKey], sizes: tuple[int, int]
) -> None:
    """Two writers (block sizes ``sizes``), two signers, appends, streams, failed appends
    and seals: the same rows as ledgers that read the open block on every append."""
    ops = list(_ops(random.Random(sizes[0] * 7919 + sizes[1]), 40))
    opened: list[Ledger] = []
    try:
        for url, cls in ((ledger_url, Ledger), (twin_url, _Uncached)):
            ledgers = [
                cls.open(url, keys.values(), event_hash=fake_event_hash, block_size=size)
                for size in sizes
            ]
            opened += ledgers
            _run(ledgers, ops)
        cached, reference = opened[0], opened[2]
        assert _contents(cached.store) == _contents(reference.store)
        cached.seal()
        report = cached.audit(strict=True)
        assert report.ok, report.summary()
    finally:
        for ledger in opened:
            ledger.close()
