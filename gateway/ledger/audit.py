"""Full audit: recompute every event hash, every chain link, every block's Merkle root and
signature, and the item index, and name the first event that does not verify.

What it catches, by construction:

- an edited event: its recomputed event hash differs from the stored ID, or (if the ID
  was rewritten too) the chain link at that event, or (if the chain was rewritten too)
  its block's Merkle root and the signed ``head_chain``;
- a deleted event: a gap in seq, and the chain link of the next event;
- an inserted event: seqs shifted to make room break the chain at the insert; an event
  appended after the last sealed block of its signer is only protected by the chain,
  so ``strict=True`` treats every unsealed event as a failure (see docs/ledger.md);
- reordered events: the chain link at the first moved event;
- a changed, added or removed item index entry (an event row's ``item_key``, an
  ``item_events`` row): the index check.

The ledger is cut into seq ranges audited independently (in worker processes on a big
ledger, each with its own database connection): a range checks each stored chain value
against the one stored before it (``chain_i == H(chain_{i-1} ‖ id_i)``), which holds for
every i exactly when the whole chain recomputes from genesis. Blocks that lie inside one
range are finished there; the leaves of blocks that straddle ranges are joined here.

When a block's root or signature fails, the event named is the block's first event
(the root cannot say which leaf changed).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import multiprocessing
import os
import pickle
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway.ledger import merkle
from gateway.ledger.chain import GENESIS
from gateway.ledger.ledger import (
    _ITEM_LIST_FIELDS,
    HashFn,
    ItemKeysFn,
    LedgerError,
    item_keys,
)
from gateway.ledger.signing import BlockHeader, KeyStoreError, key_id, load_public, verify_signature
from gateway.ledger.store import BlockRow, SqlStore, StoreError

MAX_FAILURES = 100
#: Events per range (one unit of work for a worker process).
RANGE_SIZE = 25_000
#: Ranges at least this big are split in four at the end of a parallel audit.
SPLIT_FROM = 4_000
#: Below this many events the audit runs in this process (workers cost ~0.5 s to start).
PARALLEL_FROM = 40_000
#: 0x00 ‖ u64 big-endian(seq): a leaf hash's input before the event ID (merkle.leaf_hash of
#: chain.leaf_data).
_LEAF_HEAD = struct.Struct(">xQ").pack
#: The fields besides epcList that item_keys reads.
_OTHER_ITEM_FIELDS = frozenset(_ITEM_LIST_FIELDS).difference(["epcList"]).union(["parentID"])
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
    #: Item index rows checked against the events that name them.
    index_rows: int = 0
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
                f"ledger OK: {self.events} events, {self.blocks} blocks, "
                f"{self.index_rows} item index rows, {self.unsealed} events not yet sealed"
            )
        return f"ledger FAILS audit at {self.first} ({len(self.failures)} problems found)"

    def add(self, failure: Failure) -> None:
        """Record a failure (the first MAX_FAILURES are kept)."""
        if len(self.failures) < MAX_FAILURES:
            self.failures.append(failure)


@dataclass(frozen=True, slots=True)
class _Block:
    """What a range needs of a sealed block (its stored tree only as a digest)."""

    block_no: int
    signer: str
    first_seq: int
    last_seq: int
    leaf_count: int
    root: bytes
    head_chain: bytes
    tree_digest: bytes


@dataclass(slots=True)
class _Leaves:
    """The leaves of one block found so far, in seq order."""

    leaves: list[bytes] = field(default_factory=list)
    first_seen: int | None = None
    last_seen: int | None = None
    head_chain: bytes | None = None

    def extend(self, other: _Leaves) -> None:
        self.leaves += other.leaves
        if self.first_seen is None:
            self.first_seen = other.first_seen
        if other.last_seen is not None:
            self.last_seen = other.last_seen
        if other.head_chain is not None:
            self.head_chain = other.head_chain


@dataclass
class _RangeResult:
    report: AuditReport
    #: Leaves of blocks that reach outside the range, by block number.
    partial: dict[int, _Leaves]
    finished: list[int]


def _block_failure(block: _Block, seq: int, reason: str) -> Failure:
    return Failure(seq, None, reason, (block.first_seq, block.last_seq))


def _finish_block(block: _Block, found: _Leaves) -> Failure | None:
    """Check a block's stored events (``found``) against what it signs."""
    first = found.first_seen if found.first_seen is not None else block.first_seq
    n = block.block_no
    if len(found.leaves) != block.leaf_count:
        return _block_failure(
            block,
            first,
            f"block {n} signs {block.leaf_count} events of {block.signer!r} "
            f"but {len(found.leaves)} are stored in seq {block.first_seq}–{block.last_seq}",
        )
    levels = merkle.tree_levels(found.leaves) if found.leaves else None
    if levels is None or levels[-1][0] != block.root:
        return _block_failure(
            block,
            first,
            f"block {n}: Merkle root of its stored events does not match the signed root "
            "(an event in the block was changed)",
        )
    if found.first_seen != block.first_seq or found.last_seen != block.last_seq:
        return _block_failure(block, first, f"block {n}: first/last event seq differ")
    packed = b"".join(node for level in levels for node in level)
    if _sha256(packed).digest() != block.tree_digest:
        return _block_failure(
            block,
            first,
            f"block {n}: its stored Merkle tree (used for proofs) differs from the tree of "
            "its events",
        )
    if found.head_chain != block.head_chain:
        return _block_failure(
            block,
            block.last_seq,
            f"block {n}: chain value at seq {block.last_seq} differs from the signed head "
            "(events before it were rewritten)",
        )
    return None


def _coerced(row: tuple[Any, ...]) -> tuple[int, str, str, str, bytes, str | None]:
    """A stored event row with each column forced to its type (to go on auditing)."""
    chain = row[4]
    return (
        int(row[0]),
        str(row[1]),
        str(row[2]),
        str(row[3]),
        bytes(chain) if isinstance(chain, bytes | bytearray | memoryview) else b"",
        None if row[5] is None else str(row[5]),
    )


_scan_once: Any = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009 - untyped attribute


def _parse_object(text: str) -> dict[str, Any]:
    """``json.loads(text)`` for a JSON object (the C scanner, without the two wrapper
    layers); ValueError for anything else."""
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        value, end = json.loads(text), len(text)  # leading whitespace, or json says why not
    if end != len(text):
        value = json.loads(text)  # trailing whitespace is fine; json says what else is wrong
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


class _RangeAuditor:
    """Audits the events with ``first ≤ seq ≤ last`` on its own."""

    def __init__(
        self,
        store: SqlStore,
        blocks: Mapping[str, list[_Block]],
        hash_fn: HashFn,
        keys_fn: ItemKeysFn,
        strict: bool,
    ) -> None:
        self.store = store
        self.blocks = blocks
        self.starts = {s: [b.first_seq for b in bs] for s, bs in blocks.items()}
        self.hash_fn = hash_fn
        self.keys_fn = keys_fn
        self.strict = strict

    def _item_events(self, first: int, last: int) -> dict[int, list[str]]:
        """seq → keys of the range's item_events rows (read before the events: on
        PostgreSQL the event rows then stream over the same connection)."""
        rows: dict[int, list[str]] = {}
        for seq, key in self.store.iter_item_events_between(first, last):
            rows.setdefault(seq, []).append(key)
        return rows

    def run(self, first: int, last: int) -> _RangeResult:
        report = AuditReport()
        fail = report.add
        found: dict[int, _Leaves] = {}
        cursor: dict[str, int] = {}
        #: signer → (last_seq, leaves) of the block its latest event went into
        current: dict[str, tuple[int, _Leaves]] = {}
        before = self.store.chain_before(first)
        chain = before[1] if before is not None else GENESIS
        multi = self._item_events(first, last)
        expected = first
        events = index_rows = 0
        hash_fn, keys_fn, sha256, leaf_head = self.hash_fn, self.keys_fn, _sha256, _LEAF_HEAD
        parse, others = _parse_object, _OTHER_ITEM_FIELDS
        # with the standard item_keys, an event whose only item field is an epcList of its
        # row's key needs no call: item_keys would return exactly [item_key]
        standard_keys = keys_fn is item_keys
        # rows come in seq order (ORDER BY the primary key)
        for row in self.store.raw_events_between(first, last):
            seq, event_id, text, signer, stored_chain, item_key = row
            if not (
                type(event_id) is str
                and type(text) is str
                and type(signer) is str
                and type(stored_chain) is bytes
                and (item_key is None or type(item_key) is str)
            ):
                seq, event_id, text, signer, stored_chain, item_key = _coerced(row)
                fail(Failure(seq, event_id, f"stored row has wrong column types: {row!r:.120}"))
            events += 1
            if seq != expected:
                fail(
                    Failure(
                        expected,
                        None,
                        f"missing: seq {expected}–{seq - 1} deleted (next stored is {seq})",
                    )
                )
            expected = seq + 1
            id_bytes = event_id.encode("utf-8")
            # ---- the item index entries of this event: one item's key in its own row
            # (or, written by a schema 2 appender, in item_events: lookups read both),
            # several items' in item_events rows
            extra = multi.pop(seq, None) if multi else None
            if item_key is not None:
                index_rows += 1
            if extra is not None:
                index_rows += len(extra)
            keys: list[str] | None = None
            try:
                event = parse(text)
                if not (
                    standard_keys
                    and item_key
                    and extra is None
                    and event.get("epcList") == [item_key]
                    and event.keys().isdisjoint(others)
                ):
                    keys = keys_fn(event)
            except (ValueError, LedgerError) as exc:
                fail(Failure(seq, event_id, f"stored event does not parse: {exc}"))
            else:
                try:
                    recomputed = hash_fn(event)
                except Exception as exc:  # the hash function's own errors, whatever their type
                    fail(Failure(seq, event_id, f"event hash cannot be computed: {exc}"))
                else:
                    if recomputed != event_id:
                        fail(
                            Failure(seq, event_id, f"event hash of the stored JSON is {recomputed}")
                        )
            if sha256(chain + id_bytes).digest() != stored_chain:
                fail(
                    Failure(
                        seq,
                        event_id,
                        "chain value differs (events before it deleted, inserted or "
                        "reordered, or this one changed)",
                    )
                )
            chain = stored_chain
            if keys is not None:  # else its row names the one item it names, or no parse
                indexed = [] if item_key is None else [item_key]
                if extra is not None:
                    indexed += extra
                if indexed != keys or (item_key is not None and len(keys) != 1):
                    where = "its row" if item_key is not None else "item_events"
                    fail(
                        Failure(
                            seq,
                            event_id,
                            f"item index lists {indexed} (in {where}) but the event names {keys}",
                        )
                    )
            # ---- the block that signs this event
            block = current.get(signer)
            if block is not None and seq <= block[0]:
                leaves = block[1]
                leaves.leaves.append(sha256(leaf_head(seq) + id_bytes).digest())
                leaves.last_seen = seq
                if seq == block[0]:
                    leaves.head_chain = stored_chain
            else:
                self._place(
                    report, found, cursor, current, seq, event_id, signer, id_bytes, stored_chain
                )
        report.events = events
        report.index_rows = index_rows
        if expected <= last and events:
            fail(Failure(expected, None, f"missing: seq {expected}–{last} deleted"))
        elif not events:
            fail(Failure(first, None, f"missing: seq {first}–{last} deleted"))
        for seq in sorted(multi):  # item_events rows of events not stored
            for key in multi[seq]:
                fail(Failure(seq, None, f"item index names {key!r} at a missing event"))
        return self._close_blocks(report, found, first, last)

    def _place(
        self,
        report: AuditReport,
        found: dict[int, _Leaves],
        cursor: dict[str, int],
        current: dict[str, tuple[int, _Leaves]],
        seq: int,
        event_id: str,
        signer: str,
        id_bytes: bytes,
        chain: bytes,
    ) -> None:
        blocks = self.blocks.get(signer)
        if blocks is None:
            report.unsealed += 1
            if self.strict:
                report.add(Failure(seq, event_id, f"not in any signed block of {signer!r}"))
            return
        i = cursor.get(signer)
        if i is None:
            i = max(0, bisect.bisect_right(self.starts[signer], seq) - 1)
        while i < len(blocks) and blocks[i].last_seq < seq:
            i += 1
        cursor[signer] = i
        if i >= len(blocks):
            report.unsealed += 1
            if self.strict:
                report.add(Failure(seq, event_id, f"not in any signed block of {signer!r}"))
            return
        block = blocks[i]
        if seq < block.first_seq:
            report.add(Failure(seq, event_id, f"event of {signer!r} between its signed blocks"))
            return
        leaves = found.get(block.block_no)
        if leaves is None:
            leaves = found[block.block_no] = _Leaves(first_seen=seq)
        current[signer] = (block.last_seq, leaves)
        leaves.leaves.append(_sha256(_LEAF_HEAD(seq) + id_bytes).digest())
        leaves.last_seen = seq
        if seq == block.last_seq:
            leaves.head_chain = chain

    def _close_blocks(
        self, report: AuditReport, found: dict[int, _Leaves], first: int, last: int
    ) -> _RangeResult:
        partial: dict[int, _Leaves] = {}
        finished: list[int] = []
        for blocks in self.blocks.values():
            lo = max(0, bisect.bisect_right(self.starts[blocks[0].signer], first) - 1)
            for block in blocks[lo:]:
                if block.first_seq > last:
                    break
                if block.last_seq < first:
                    continue
                leaves = found.get(block.block_no, _Leaves())
                if block.first_seq >= first and block.last_seq <= last:
                    failure = _finish_block(block, leaves)
                    if failure is not None:
                        report.add(failure)
                    finished.append(block.block_no)
                else:
                    partial[block.block_no] = leaves
        return _RangeResult(report, partial, finished)


# ---- worker processes -------------------------------------------------------------

_worker: tuple[_RangeAuditor, SqlStore] | None = None


def _init_worker(
    reopen: Callable[[], SqlStore],
    blocks: Mapping[str, list[_Block]],
    hash_fn: HashFn,
    keys_fn: ItemKeysFn,
    strict: bool,
) -> None:
    global _worker
    store = reopen()
    _worker = (_RangeAuditor(store, blocks, hash_fn, keys_fn, strict), store)


def _run_range(span: tuple[int, int]) -> _RangeResult:
    assert _worker is not None
    auditor, store = _worker
    with store.snapshot():
        return auditor.run(*span)


def _picklable(*objects: Any) -> bool:
    try:
        pickle.dumps(objects)
    except Exception:  # any reason it cannot travel to a worker
        return False
    return True


# ---- the audit ----------------------------------------------------------------------


def _spans(last: int, size: int, workers: int) -> list[tuple[int, int]]:
    """Seq ranges of ``size`` events covering 1…``last``; with several workers and ranges
    of at least SPLIT_FROM events, the events of the last ``workers`` ranges go in ranges
    of a quarter of that, so that the workers finish at about the same time (none idles
    long while another ends a big range)."""
    split = workers > 1 and size >= SPLIT_FROM
    tail = min(last, workers * size) // size * size if split else 0
    spans = [(a, min(a + size - 1, last - tail)) for a in range(1, last - tail + 1, size)]
    small = max(1, size // 4)
    spans += [(a, min(a + small - 1, last)) for a in range(last - tail + 1, last + 1, small)]
    return spans


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

    def block_lists(self, stored: list[tuple[BlockRow, bytes]]) -> dict[str, list[_Block]]:
        """Each signer's blocks (with their trees' digests) in seq order, what the ranges
        check events against; a block that overlaps another of its signer's or runs
        backwards fails."""
        self.report.blocks = len(stored)
        per_signer: dict[str, list[_Block]] = {}
        for row, tree_digest in stored:
            per_signer.setdefault(row.signer, []).append(
                _Block(
                    row.block_no,
                    row.signer,
                    row.first_seq,
                    row.last_seq,
                    row.leaf_count,
                    row.root,
                    row.head_chain,
                    tree_digest,
                )
            )
        for signer, blocks in per_signer.items():
            blocks.sort(key=lambda b: (b.first_seq, b.last_seq))
            previous = 0
            for block in blocks:
                if block.first_seq > block.last_seq or block.first_seq <= previous:
                    self.report.add(
                        _block_failure(
                            block,
                            block.first_seq,
                            f"block {block.block_no} of {signer!r} overlaps or runs backwards "
                            f"(seq {block.first_seq}–{block.last_seq} after {previous})",
                        )
                    )
                previous = max(previous, block.last_seq)
        return per_signer

    def check_signatures(self, stored: list[tuple[BlockRow, bytes]]) -> None:
        """Every block's key and signature."""
        registered = self.store.public_keys()
        for row, _ in stored:
            self.check_signature(row, registered)

    def check_signature(self, block: BlockRow, registered: dict[str, tuple[str, bytes]]) -> None:
        def fail(reason: str) -> None:
            self.report.add(
                Failure(block.first_seq, None, reason, (block.first_seq, block.last_seq))
            )

        raw: bytes | None
        if self.trusted_keys is not None:
            raw = self.trusted_keys.get(block.key_id)
            org = block.signer if raw is not None else None
        else:
            org, raw = registered.get(block.key_id, (None, None))
        if raw is None:
            fail(f"block {block.block_no}: unknown key {block.key_id}")
            return
        if org != block.signer:
            fail(
                f"block {block.block_no}: key {block.key_id} belongs to {org!r}, "
                f"not the block's signer {block.signer!r}"
            )
            return
        try:
            public = load_public(raw)
        except KeyStoreError as exc:
            fail(f"block {block.block_no}: {exc}")
            return
        if key_id(raw) != block.key_id:
            fail(f"block {block.block_no}: key ID does not match key")
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
            fail(f"block {block.block_no}: signature by {block.signer!r} does not verify")

    def run(self, workers: int, range_size: int) -> AuditReport:
        stored = self.store.blocks_with_tree_digests()
        blocks = self.block_lists(stored)
        last = self.store.max_seq()
        for table, seq, what in self.store.rows_outside(last):
            where = "an event" if table == "events" else f"item index row for {what!r}"
            self.report.add(Failure(seq, None, f"{where} at seq {seq}, outside 1–{last}"))
        signed_up_to = max((b.last_seq for bs in blocks.values() for b in bs), default=0)
        if signed_up_to > last:
            self.report.add(
                Failure(
                    last + 1,
                    None,
                    f"missing: seq {last + 1}–{signed_up_to} deleted (signed blocks cover "
                    f"events up to seq {signed_up_to})",
                )
            )
        spans = _spans(last, range_size, workers)
        partial: dict[int, _Leaves] = {}
        finished: set[int] = set()
        with self._range_results(spans, blocks, workers) as results:
            self.check_signatures(stored)  # while the workers (if any) audit the events
            del stored
            for result in results:
                self.merge(result.report)
                finished.update(result.finished)
                for block_no, leaves in result.partial.items():
                    partial.setdefault(block_no, _Leaves()).extend(leaves)
        for signer_blocks in blocks.values():
            for block in signer_blocks:
                if block.block_no not in finished:
                    failure = _finish_block(block, partial.get(block.block_no, _Leaves()))
                    if failure is not None:
                        self.report.add(failure)
        return self.report

    @contextmanager
    def _range_results(
        self, spans: list[tuple[int, int]], blocks: dict[str, list[_Block]], workers: int
    ) -> Iterator[Iterator[_RangeResult]]:
        """The ranges' results in order: from worker processes, which start on entry, or
        computed here as they are read."""
        reopen = self.store.reopener()
        args = (blocks, self.hash_fn, self.item_keys_fn, self.strict)
        if workers <= 0 or len(spans) < 2 or reopen is None or not _picklable(reopen, *args):
            auditor = _RangeAuditor(self.store, *args)
            yield (auditor.run(*span) for span in spans)
            return
        # fork is quick and needs no importable __main__, but is unsafe once the caller
        # has threads (an API server, an MQTT loop): then spawn.
        method = "fork" if threading.active_count() == 1 else "spawn"
        ctx = multiprocessing.get_context(method)
        with ctx.Pool(min(workers, len(spans)), _init_worker, (reopen, *args)) as pool:
            yield pool.imap(_run_range, spans)

    def merge(self, part: AuditReport) -> None:
        report = self.report
        report.events += part.events
        report.index_rows += part.index_rows
        report.unsealed += part.unsealed
        for failure in part.failures:
            report.add(failure)


def audit(
    store: SqlStore,
    hash_fn: HashFn,
    *,
    item_keys_fn: ItemKeysFn = item_keys,
    strict: bool = False,
    trusted_keys: Mapping[str, bytes] | None = None,
    workers: int | None = None,
    range_size: int = RANGE_SIZE,
) -> AuditReport:
    """Audit the whole ledger. ``trusted_keys`` (key ID → raw public key) pins the keys
    instead of trusting the ``org_keys`` table; ``strict`` fails on unsealed events.

    ``workers`` processes audit seq ranges in parallel, each on its own connection
    (default: one per CPU when the ledger holds at least PARALLEL_FROM events, else
    none); the verdict is the same either way. Workers need a database other processes
    can open and picklable hash and item-key functions; otherwise the audit runs here.
    ``range_size`` events make one unit of work.
    """
    if range_size < 1:
        raise ValueError(f"range_size must be ≥ 1, got {range_size}")
    try:
        with store.snapshot():
            if workers is None:
                many = store.max_seq() >= PARALLEL_FROM
                workers = (os.cpu_count() or 1) if many else 0
            return _Auditor(store, hash_fn, item_keys_fn, strict, trusted_keys).run(
                workers, range_size
            )
    except StoreError as exc:
        report = AuditReport()
        report.failures.append(Failure(0, None, f"cannot read the ledger: {exc}"))
        return report
