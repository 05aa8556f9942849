"""Full audit: recompute every event hash, the chain, every block's Merkle root and
signature, and the item index, and name the first event that does not verify.

What it catches, by construction:

- an edited event: its recomputed event hash differs from the stored ID, or (if the ID
  was rewritten too) the chain from that event on, or (if the chain was rewritten too)
  its block's Merkle root and the signed ``head_chain``;
- a deleted event: a gap in seq, and the chain of the next event;
- an inserted event: seqs shifted to make room break the chain at the insert; an event
  appended after the last sealed block of its signer is only protected by the chain,
  so ``strict=True`` treats every unsealed event as a failure (see docs/ledger.md);
- reordered events: the chain at the first moved event;
- a changed items/item_events row: the index check.

When a block's root or signature fails, the event named is the block's first event
(the root cannot say which leaf changed).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import struct
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.pool import AsyncResult
from typing import Any

from gateway.ledger import merkle
from gateway.ledger.chain import GENESIS, leaf_data
from gateway.ledger.ledger import HashFn, ItemKeysFn, LedgerError, derive_state, item_keys
from gateway.ledger.signing import BlockHeader, KeyStoreError, key_id, load_public, verify_signature
from gateway.ledger.store import (
    BlockRow,
    EventRow,
    SqlStore,
    StoreError,
    item_index_mismatches,
)

MAX_FAILURES = 100
_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class Failure:
    """One thing that does not verify, located at an event."""

    seq: int
    event_id: str | None
    reason: str
    #: For a block-level failure (root, count, signature): the block's seq range.
    block_range: tuple[int, int] | None = None

    def __str__(self) -> str:
        name = f"event seq {self.seq}" + (f" ({self.event_id})" if self.event_id else "")
        return f"{name}: {self.reason}"


@dataclass
class AuditReport:
    """The audit's verdict: ``ok``, and the first failing event if not."""

    events: int = 0
    blocks: int = 0
    items: int = 0
    unsealed: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when everything verified."""
        return not self.failures

    @property
    def first(self) -> Failure | None:
        """The failure at the lowest seq.

        A block-level failure names the block's first event; when an event-level failure
        lies inside the same block's range it names the culprit exactly, so it wins.
        """
        precise = [f for f in self.failures if f.block_range is None]
        candidates = [
            f
            for f in self.failures
            if f.block_range is None
            or not any(f.block_range[0] <= p.seq <= f.block_range[1] for p in precise)
        ]
        return min(candidates, key=lambda f: f.seq) if candidates else None

    def summary(self) -> str:
        """One line for people."""
        if self.ok:
            return (
                f"ledger OK: {self.events} events, {self.blocks} blocks, {self.items} items, "
                f"{self.unsealed} events not yet sealed"
            )
        return f"ledger FAILS audit at {self.first} ({len(self.failures)} problems found)"


_Examined = tuple[str | None, str | None, list[str] | None, str | None, bytes | None]
"""Per event: (recomputed event hash, error, item keys, derived item state, Merkle leaf
hash of the stored (seq, event_id) or None if it cannot be computed here)."""

CHUNK = 2000
_U64 = struct.Struct(">Q").pack
PARALLEL_FROM = 20_000
_worker_fns: tuple[HashFn, ItemKeysFn] | None = None


def _examine(
    rows: list[tuple[int, str, str]], hash_fn: HashFn, keys_fn: ItemKeysFn
) -> list[_Examined]:
    """The CPU-heavy part of the audit: parse, re-hash, derive index and state."""
    out: list[_Examined] = []
    append = out.append
    loads = json.loads
    sha256 = hashlib.sha256
    for seq, event_id, text in rows:
        leaf: bytes | None
        try:  # merkle.leaf_hash(leaf_data(seq, event_id)), inlined
            leaf = sha256(b"\x00" + _U64(seq) + event_id.encode("utf-8")).digest()
        except Exception:  # a tampered seq or ID: the auditor recomputes it and reports
            leaf = None
        try:
            event = loads(text)
            if not isinstance(event, dict):
                raise ValueError("not a JSON object")
            keys = keys_fn(event)
        except (ValueError, LedgerError) as exc:
            append((None, f"stored event does not parse: {exc}", None, None, leaf))
            continue
        state = derive_state(event, seq, event_id) if keys else None
        try:
            recomputed = hash_fn(event)
        except Exception as exc:  # the hash function's own errors, whatever their type
            append((None, f"event hash cannot be computed: {exc}", keys, state, leaf))
            continue
        append((recomputed, None, keys, state, leaf))
    return out


def _init_worker(hash_fn: HashFn, keys_fn: ItemKeysFn) -> None:
    global _worker_fns
    _worker_fns = (hash_fn, keys_fn)


def _examine_in_worker(rows: list[tuple[int, str, str]]) -> list[_Examined]:
    assert _worker_fns is not None
    return _examine(rows, *_worker_fns)


def _chunks(events: Iterator[EventRow]) -> Iterator[list[EventRow]]:
    chunk: list[EventRow] = []
    for row in events:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _examined_chunks(
    events: Iterator[EventRow], hash_fn: HashFn, keys_fn: ItemKeysFn, workers: int
) -> Iterator[tuple[list[EventRow], list[_Examined]]]:
    """Event rows in seq order with their examination, done in ``workers`` processes
    (forked, so the hash function need not be picklable) or inline when 0. Only this
    thread touches the database."""
    if workers <= 0:
        for chunk in _chunks(events):
            yield chunk, _examine([(r[0], r[1], r[2]) for r in chunk], hash_fn, keys_fn)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(hash_fn, keys_fn)) as pool:
        pending: deque[tuple[list[EventRow], AsyncResult[list[_Examined]]]] = deque()
        for chunk in _chunks(events):
            job = pool.apply_async(_examine_in_worker, ([(r[0], r[1], r[2]) for r in chunk],))
            pending.append((chunk, job))
            if len(pending) > 2 * workers:
                done, result = pending.popleft()
                yield done, result.get()
        while pending:
            done, result = pending.popleft()
            yield done, result.get()


class _Peek:
    """An iterator with one item of look-ahead."""

    def __init__(self, it: Iterator[tuple[Any, ...]]) -> None:
        self._it = it
        self.head: tuple[Any, ...] | None = next(it, None)

    def pop(self) -> tuple[Any, ...]:
        assert self.head is not None
        item, self.head = self.head, next(self._it, None)
        return item

    def advance(self) -> tuple[Any, ...] | None:
        """Drop the head; the new head."""
        head = self.head = next(self._it, None)
        return head


@dataclass
class _SignerBlocks:
    blocks: list[BlockRow]
    index: int = 0
    leaves: list[bytes] = field(default_factory=list)
    first_seen: int | None = None
    last_seen: int | None = None
    head_chain: bytes | None = None


class _Auditor:
    def __init__(
        self,
        store: SqlStore,
        hash_fn: HashFn,
        item_keys_fn: ItemKeysFn,
        strict: bool,
        trusted_keys: Mapping[str, bytes] | None,
    ) -> None:
        self.store = store
        self.hash_fn = hash_fn
        self.item_keys_fn = item_keys_fn
        self.strict = strict
        self.trusted_keys = trusted_keys
        self.report = AuditReport()

    def fail(
        self,
        seq: int,
        event_id: str | None,
        reason: str,
        block: BlockRow | None = None,
    ) -> None:
        if len(self.report.failures) < MAX_FAILURES:
            span = None if block is None else (block.first_seq, block.last_seq)
            self.report.failures.append(Failure(seq, event_id, reason, span))

    def fail_block(self, block: BlockRow, seq: int, event_id: str | None, reason: str) -> None:
        self.fail(seq, event_id, reason, block)

    # ---- blocks ----------------------------------------------------------------------

    def check_block_headers(self) -> dict[str, _SignerBlocks]:
        blocks = self.store.blocks()
        self.report.blocks = len(blocks)
        registered = self.store.public_keys()
        per_signer: dict[str, _SignerBlocks] = {}
        for block in blocks:
            per_signer.setdefault(block.signer, _SignerBlocks([])).blocks.append(block)
            self.check_signature(block, registered)
        for signer, sb in per_signer.items():
            sb.blocks.sort(key=lambda b: b.first_seq)
            previous = 0
            for block in sb.blocks:
                if block.first_seq > block.last_seq or block.first_seq <= previous:
                    self.fail_block(
                        block,
                        block.first_seq,
                        None,
                        f"block {block.block_no} of {signer!r} overlaps or runs backwards "
                        f"(seq {block.first_seq}–{block.last_seq} after {previous})",
                    )
                previous = max(previous, block.last_seq)
        return per_signer

    def check_signature(self, block: BlockRow, registered: dict[str, tuple[str, bytes]]) -> None:
        raw: bytes | None
        if self.trusted_keys is not None:
            raw = self.trusted_keys.get(block.key_id)
            org = block.signer if raw is not None else None
        else:
            org, raw = registered.get(block.key_id, (None, None))
        if raw is None:
            self.fail_block(
                block, block.first_seq, None, f"block {block.block_no}: unknown key {block.key_id}"
            )
            return
        if org != block.signer:
            self.fail_block(
                block,
                block.first_seq,
                None,
                f"block {block.block_no}: key {block.key_id} belongs to {org!r}, "
                f"not the block's signer {block.signer!r}",
            )
            return
        try:
            public = load_public(raw)
        except KeyStoreError as exc:
            self.fail_block(block, block.first_seq, None, f"block {block.block_no}: {exc}")
            return
        if key_id(raw) != block.key_id:
            self.fail_block(
                block, block.first_seq, None, f"block {block.block_no}: key ID does not match key"
            )
            return
        header = BlockHeader(
            block.block_no,
            block.signer,
            block.key_id,
            block.first_seq,
            block.last_seq,
            block.leaf_count,
            block.root,
            block.head_chain,
        )
        if not verify_signature(public, block.signature, header.statement()):
            self.fail_block(
                block,
                block.first_seq,
                None,
                f"block {block.block_no}: signature by {block.signer!r} does not verify",
            )

    def finish_block(self, sb: _SignerBlocks) -> None:
        block = sb.blocks[sb.index]
        first = sb.first_seen if sb.first_seen is not None else block.first_seq
        if len(sb.leaves) != block.leaf_count:
            self.fail_block(
                block,
                first,
                None,
                f"block {block.block_no} signs {block.leaf_count} events of {block.signer!r} "
                f"but {len(sb.leaves)} are stored in seq {block.first_seq}–{block.last_seq}",
            )
        elif not sb.leaves or (levels := merkle.tree_levels(sb.leaves))[-1][0] != block.root:
            self.fail_block(
                block,
                first,
                None,
                f"block {block.block_no}: Merkle root of its stored events does not match "
                "the signed root (an event in the block was changed)",
            )
        elif sb.first_seen != block.first_seq or sb.last_seen != block.last_seq:
            self.fail_block(
                block, first, None, f"block {block.block_no}: first/last event seq differ"
            )
        elif b"".join(node for level in levels for node in level) != block.tree:
            self.fail_block(
                block,
                first,
                None,
                f"block {block.block_no}: its stored Merkle tree (used for proofs) differs "
                "from the tree of its events",
            )
        elif sb.head_chain != block.head_chain:
            self.fail_block(
                block,
                block.last_seq,
                None,
                f"block {block.block_no}: chain value at seq {block.last_seq} differs from "
                "the signed head (events before it were rewritten)",
            )
        sb.index += 1
        sb.leaves = []
        sb.first_seen = sb.last_seen = None
        sb.head_chain = None

    # ---- events ----------------------------------------------------------------------

    def run(self, workers: int) -> AuditReport:
        per_signer = self.check_block_headers()
        index_rows = _Peek(self.store.iter_item_events())
        item_rows = _Peek(self.store.iter_items())
        self._chain = GENESIS
        self._expected_seq = 1
        for chunk, examined in _examined_chunks(
            self.store.iter_events(), self.hash_fn, self.item_keys_fn, workers
        ):
            for row, result in zip(chunk, examined, strict=True):
                self.check_event(row, result, per_signer, index_rows, item_rows)
        for sb in per_signer.values():
            while sb.index < len(sb.blocks):
                self.finish_block(sb)
        self.finish_index(index_rows, item_rows)
        return self.report

    def check_event(
        self,
        row: EventRow,
        examined: _Examined,
        per_signer: dict[str, _SignerBlocks],
        index_rows: _Peek,
        item_rows: _Peek,
    ) -> None:
        seq, event_id, _, signer, stored_chain = row
        recomputed, error, keys, state, leaf = examined
        report = self.report
        report.events += 1
        if seq != self._expected_seq:
            self.fail(
                self._expected_seq,
                None,
                f"missing: seq {self._expected_seq}–{seq - 1} deleted (next stored is {seq})",
            )
        self._expected_seq = seq + 1
        if error is not None:
            self.fail(seq, event_id, error)
        elif recomputed != event_id:
            self.fail(seq, event_id, f"event hash of the stored JSON is {recomputed}")
        # next_chain(self._chain, event_id), inlined
        chain = self._chain = _sha256(self._chain + event_id.encode("utf-8")).digest()
        if chain != stored_chain:
            self.fail(
                seq,
                event_id,
                "chain value differs (events before it deleted, "
                "inserted or reordered, or this one changed)",
            )
        self.check_index(seq, event_id, state, keys, index_rows, item_rows)
        sb = per_signer.get(signer)
        if sb is not None:
            while sb.index < len(sb.blocks) and sb.blocks[sb.index].last_seq < seq:
                self.finish_block(sb)
        if sb is None or sb.index >= len(sb.blocks):
            report.unsealed += 1
            if self.strict:
                self.fail(seq, event_id, f"not in any signed block of {signer!r}")
            return
        block = sb.blocks[sb.index]
        if seq < block.first_seq:
            self.fail(seq, event_id, f"event of {signer!r} between its signed blocks")
            return
        sb.leaves.append(leaf if leaf is not None else merkle.leaf_hash(leaf_data(seq, event_id)))
        if sb.first_seen is None:
            sb.first_seen = seq
        sb.last_seen = seq
        if seq == block.last_seq:
            sb.head_chain = chain
            self.finish_block(sb)

    def check_index(
        self,
        seq: int,
        event_id: str,
        state: str | None,
        keys: list[str] | None,
        index_rows: _Peek,
        item_rows: _Peek,
    ) -> None:
        head = index_rows.head
        while head is not None and head[0] < seq:
            self.fail(head[0], None, f"item index names {head[1]!r} at a missing event")
            head = index_rows.advance()
        indexed = []
        while head is not None and head[0] == seq:
            indexed.append(head[1])
            head = index_rows.advance()
        if keys is not None and indexed != keys:
            self.fail(seq, event_id, f"item index lists {indexed} but the event names {keys}")
        head = item_rows.head
        while head is not None and head[0] < seq:
            self.fail(head[0], None, f"item {head[1]!r} points at a missing event")
            head = item_rows.advance()
        while head is not None and head[0] == seq:
            _, item, stored_state = head
            self.report.items += 1
            if keys is not None and item not in keys:
                self.fail(seq, event_id, f"item {item!r} points at an event that does not name it")
            elif keys is not None and state != stored_state:
                self.fail(seq, event_id, f"current state of item {item!r} was changed")
            head = item_rows.advance()

    def finish_index(self, index_rows: _Peek, item_rows: _Peek) -> None:
        while index_rows.head is not None:
            orphan = index_rows.pop()
            self.fail(orphan[0], None, f"item index names {orphan[1]!r} at a missing event")
        while item_rows.head is not None:
            orphan = item_rows.pop()
            self.fail(orphan[0], None, f"item {orphan[1]!r} points at a missing event")
        for item, last_seq, latest in item_index_mismatches(self.store):
            self.fail(
                latest if last_seq is None else last_seq,
                None,
                f"item {item!r}: current state is from seq {last_seq}, "
                f"its latest event is {latest}",
            )


def audit(
    store: SqlStore,
    hash_fn: HashFn,
    *,
    item_keys_fn: ItemKeysFn = item_keys,
    strict: bool = False,
    trusted_keys: Mapping[str, bytes] | None = None,
    workers: int | None = None,
) -> AuditReport:
    """Audit the whole ledger. ``trusted_keys`` (key ID → raw public key) pins the keys
    instead of trusting the ``org_keys`` table; ``strict`` fails on unsealed events.

    ``workers`` processes re-hash events in parallel (default: one per CPU when the
    ledger holds at least 20,000 events, else none); the verdict is the same either way.
    """
    try:
        with store.snapshot():
            if workers is None:
                many = store.event_count() >= PARALLEL_FROM
                workers = (os.cpu_count() or 1) if many else 0
            return _Auditor(store, hash_fn, item_keys_fn, strict, trusted_keys).run(workers)
    except StoreError as exc:
        report = AuditReport()
        report.failures.append(Failure(0, None, f"cannot read the ledger: {exc}"))
        return report
