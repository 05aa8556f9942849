"""The ledger facade: append events, seal signed blocks, look up items, audit, prove."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, islice, repeat
from typing import TYPE_CHECKING, Any, NamedTuple

from gateway.ledger import merkle
from gateway.ledger.chain import GENESIS
from gateway.ledger.event_json import encode_event
from gateway.ledger.signing import BlockHeader, OrgKey, check_org_name, raw_public
from gateway.ledger.store import (
    AppendState,
    BlockRow,
    CommitWork,
    HeldBlock,
    NewEventRow,
    SqlStore,
    StoreError,
    open_store,
)

if TYPE_CHECKING:
    from gateway.ledger.audit import AuditReport

HashFn = Callable[[Mapping[str, Any]], str]
ItemKeysFn = Callable[[Mapping[str, Any]], list[str]]

DEFAULT_BLOCK_SIZE = 256
_U64 = struct.Struct(">Q")
MAX_BATCH = 100_000
#: Events prepared ahead between two looks at whether the commit is done.
_AHEAD_STEP = 16
#: Event fields that make up an item's current state.
STATE_FIELDS = ("type", "eventTime", "action", "bizStep", "disposition", "readPoint", "bizLocation")
_ITEM_LIST_FIELDS = ("epcList", "childEPCs", "inputEPCList", "outputEPCList")


class LedgerError(ValueError):
    """An event or request the ledger cannot accept; the message says what is wrong."""


def default_event_hash() -> HashFn:
    """The CBV 2.0 event hash from gateway.ledger.event_hash (imported on first use)."""
    try:
        from gateway.ledger import event_hash as module  # type: ignore[attr-defined,unused-ignore]
    except ImportError as exc:
        raise LedgerError(
            "no event hash function: gateway.ledger.event_hash is missing; pass event_hash="
        ) from exc
    fn: HashFn = module.event_hash
    return fn


_UNSTORABLE = "not a non-empty string without NUL or lone surrogates"


def storable_text(text: str) -> bool:
    """Whether ``text`` is an ID both backends store and read back as it is: not empty, no
    NUL (PostgreSQL's text refuses it, SQLite stores it) and Unicode (no lone surrogate,
    which UTF-8 cannot encode)."""
    if not text or "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def item_keys(event: Mapping[str, Any]) -> list[str]:
    """Item IDs an EPCIS event names: epcList, childEPCs, parentID, input/outputEPCList."""
    keys: list[str] = []
    get = event.get
    for field in _ITEM_LIST_FIELDS:
        value = get(field)
        if value is None:
            continue
        if not isinstance(value, list):
            raise LedgerError(f"{field} must be a list of non-empty strings, got {value!r:.80}")
        for v in value:
            if not isinstance(v, str) or not v:
                raise LedgerError(f"{field} must be a list of non-empty strings, got {value!r:.80}")
        keys += value
    parent = get("parentID")
    if parent is not None:
        if not isinstance(parent, str) or not parent:
            raise LedgerError(f"parentID must be a non-empty string, got {parent!r:.80}")
        keys.append(parent)
    if len(keys) == 1:
        return keys
    return sorted(set(keys))


def state_of(event: Mapping[str, Any], seq: int, event_id: str) -> dict[str, Any]:
    """An item's current state after ``event``: its STATE_FIELDS plus seq and eventID."""
    state: dict[str, Any] = {k: event[k] for k in STATE_FIELDS if k in event}
    state["seq"] = seq
    state["eventID"] = event_id
    return state


class Appended(NamedTuple):
    """Where an event landed. (A named tuple: one is made per appended event, and a frozen
    dataclass took several times as long to build.)"""

    seq: int
    event_id: str


@dataclass(frozen=True, slots=True)
class ItemState:
    """An item's latest state (from its latest event)."""

    item_key: str
    last_seq: int
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One stored event."""

    seq: int
    event_id: str
    event: dict[str, Any]
    signer: str
    chain: bytes


_Prepared = tuple[str, str, list[str]]
"""(event ID, event JSON, item keys) of one event about to be appended."""


def _prepare(
    index: int, event: Mapping[str, Any], hash_fn: HashFn, keys_fn: ItemKeysFn
) -> _Prepared:
    """``event``'s ID, JSON text and item keys; LedgerError naming event ``index`` if it
    cannot be appended."""
    if type(event) is not dict and not isinstance(event, Mapping):
        raise LedgerError(f"event {index} is a {type(event).__name__}, not a JSON object")
    try:
        text, plain = encode_event(event)
    except (TypeError, ValueError, RecursionError) as exc:
        raise LedgerError(f"event {index} is not JSON-serialisable: {exc}") from exc
    if not plain:  # ID and keys from what is stored, as the audit will read it back
        event = json.loads(text)
    try:
        event_id = hash_fn(event)
    except Exception as exc:  # the hash function's own errors, whatever their type
        raise LedgerError(f"event {index}: cannot compute its event hash: {exc}") from exc
    # (a caller's hash or item_keys_fn may return anything)
    if type(event_id) is not str or not storable_text(event_id):
        raise LedgerError(f"event {index}: the event hash gave {event_id!r:.80}: {_UNSTORABLE}")
    try:
        keys = keys_fn(event)
    except LedgerError as exc:
        raise LedgerError(f"event {index}: {exc}") from exc
    except Exception as exc:  # a caller's item_keys_fn's own errors
        raise LedgerError(f"event {index}: cannot compute its item IDs: {exc}") from exc
    if type(keys) is not list:
        raise LedgerError(f"event {index}: item IDs must come as a list, got {keys!r:.80}")
    for key in keys:
        if type(key) is not str or not storable_text(key):
            raise LedgerError(f"event {index}: item ID {key!r:.80}: {_UNSTORABLE}")
    return event_id, text, keys


Leaf = tuple[int, str, bytes]
"""(seq, event ID, chain value) of an event in a signer's block."""


class _Batch:
    """The rows of one append under the write lock: events chained after the head,
    their index rows, and the signer's blocks sealed as they fill."""

    def __init__(
        self,
        state: AppendState,
        signer: str,
        key: OrgKey,
        block_size: int,
        count: int,
        url: str,
        held: list[Leaf] | None,
    ) -> None:
        self._state = state
        self._signer = signer
        self._key = key
        self._block_size = block_size
        #: Whether this batch fills the signer's open block.
        self._seals = state.open_count + count >= block_size
        #: Whether the open block's leaves are in hand (then they are kept up to date).
        self.tracks = True
        if held is not None:  # the appender's own leaves of this very open block
            self._leaves = held
        elif not state.open_count:
            self._leaves = []
        elif self._seals:
            if len(state.open_events) != state.open_count:
                raise StoreError(
                    f"{url}: {signer!r} should have {state.open_count} unsealed events "
                    f"from seq {state.first_open}, found {len(state.open_events)} "
                    "(open_blocks out of step)"
                )
            self._leaves = list(state.open_events)
        else:
            self._leaves, self.tracks = [], False
        self.index_rows: list[tuple[str, int]] = []
        self.blocks: list[BlockRow] = []
        self.appended: list[Appended] = []

    def rows(self, prepared: Iterable[_Prepared]) -> Iterator[NewEventRow]:
        """Event rows, each chained to the one before (a single item's key in the row, several
        items' in index_rows); fills index_rows, blocks, appended."""
        seq, chain = self._state.head if self._state.head is not None else (0, GENESIS)
        signer, block_size, tracks = self._signer, self._block_size, self.tracks
        leaves, index_rows, appended = self._leaves, self.index_rows, self.appended
        sha256 = hashlib.sha256
        for event_id, text, keys in prepared:
            seq += 1
            chain = sha256(chain + event_id.encode()).digest()  # chain.next_chain, inlined
            item_key = keys[0] if len(keys) == 1 else None
            if item_key is None:
                for key in keys:
                    index_rows.append((key, seq))
            appended.append(Appended(seq, event_id))
            if tracks:  # (a batch that fills the block always tracks)
                leaves.append((seq, event_id, chain))
                # (more than block_size only when a writer with bigger blocks left it so:
                # sealed in blocks of this ledger's size, as seal() would)
                while len(leaves) >= block_size:
                    block_no = self._state.last_block_no + len(self.blocks) + 1
                    block = leaves[:block_size]
                    self.blocks.append(Ledger.seal_block(self._key, block_no, block))
                    leaves = self._leaves = leaves[block_size:]
            yield seq, event_id, text, signer, chain, item_key

    @property
    def leaves(self) -> list[Leaf]:
        """The signer's open block after this batch (when it :attr:`tracks` it)."""
        return self._leaves

    def open_block(self) -> tuple[int, int]:
        """The signer's open block after this batch: (first seq, event count)."""
        if self.tracks:
            return (self._leaves[0][0], len(self._leaves)) if self._leaves else (0, 0)
        state = self._state
        first = state.first_open if state.open_count else self.appended[0].seq
        return first, state.open_count + len(self.appended)


def now_iso() -> str:
    """Current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Ledger:
    """Append-only, hash-chained, block-signed event ledger over a SqlStore.

    ``keys`` are the signing keys of the organisations this process writes for; their
    public keys are registered in the ledger. Events of each signer go into that
    signer's open block, sealed (Merkle root signed) when it reaches ``block_size``
    events or on :meth:`seal`.
    """

    def __init__(
        self,
        store: SqlStore,
        keys: Iterable[OrgKey] = (),
        *,
        event_hash: HashFn | None = None,
        item_keys_fn: ItemKeysFn = item_keys,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        if not isinstance(block_size, int) or not 1 <= block_size <= 1_000_000:
            raise LedgerError(f"block_size must be an integer 1–1,000,000, got {block_size!r}")
        self.store = store
        self.block_size = block_size
        self.item_keys_fn = item_keys_fn
        self._event_hash = event_hash
        self._keys: dict[str, OrgKey] = {}
        #: Each signer's open block as this ledger's last append left it (its leaves).
        self._open_leaves: dict[str, list[Leaf]] = {}
        for key in keys:
            self.add_signer(key)

    @classmethod
    def open(cls, url: str, keys: Iterable[OrgKey] = (), **kwargs: Any) -> Ledger:
        """A ledger on ``url`` (a path, ``sqlite:///…`` or ``postgresql://…``)."""
        store = open_store(url)
        try:
            return cls(store, keys, **kwargs)
        except BaseException:
            store.close()
            raise

    @property
    def event_hash(self) -> HashFn:
        """The event hash function (CBV 2.0 unless injected)."""
        if self._event_hash is None:
            self._event_hash = default_event_hash()
        return self._event_hash

    def add_signer(self, key: OrgKey) -> str:
        """Use ``key`` to sign ``key.org``'s blocks and register its public key; its key ID."""
        check_org_name(key.org)
        with self.store.write() as tx:
            tx.register_key(key.key_id, key.org, raw_public(key.public_key), now_iso())
        self._keys[key.org] = key
        return key.key_id

    # ---- appending -------------------------------------------------------------------

    def append(self, event: Mapping[str, Any], signer: str) -> Appended:
        """Append one event signed by ``signer``; committed when this returns."""
        return self.append_batch([event], signer)[0]

    def append_batch(self, events: Sequence[Mapping[str, Any]], signer: str) -> list[Appended]:
        """Append events in one transaction, all or none; committed when this returns."""
        self._check_batch(events, signer)
        return self._append(events, signer, [], None) if events else []

    def append_batches(
        self, batches: Iterable[Sequence[Mapping[str, Any]]], signer: str
    ) -> Iterator[list[Appended]]:
        """Append each batch in a transaction of its own, in order, yielding what each one
        appended once it is committed (what :meth:`append_batch` would return).

        For streams of batches (seeding, imports, bulk loads): while one batch commits, the
        next one's events are prepared (on PostgreSQL), so the client does not wait idle
        while the server flushes its log. The next batch is taken from ``batches`` before
        the current one is yielded (each batch list is copied as it is taken; the events in
        it must not change). A batch that cannot be appended raises as :meth:`append_batch`
        would, and the batches before it stay committed; if ``batches`` itself raises, the
        batch in hand is appended and yielded first.
        """
        pending = iter(batches)
        events = self._own(next(pending, None), signer)
        ready: list[_Prepared] = []  # the first events of ``events``, already prepared
        while events is not None:
            try:
                following = next(pending, None)
            except Exception:  # the caller's producer failed: the batch in hand still goes
                yield self._append(events, signer, ready, None) if events else []
                raise
            ahead: list[_Prepared] = []
            work = self._prepare_ahead(following, ahead)
            yield self._append(events, signer, ready, work) if events else []
            events, ready = self._own(following, signer), ahead

    def _own(
        self, events: Sequence[Mapping[str, Any]] | None, signer: str
    ) -> list[Mapping[str, Any]] | None:
        """A batch of a stream, checked, as a list of its own (a producer may refill the
        list it handed over); None at the end of the stream."""
        if events is None:
            return None
        self._check_batch(events, signer)
        return list(events)

    def _check_batch(self, events: Sequence[Mapping[str, Any]], signer: str) -> None:
        """LedgerError unless ``events`` is a batch ``signer`` may append."""
        if signer not in self._keys:
            raise LedgerError(
                f"no signing key for organisation {signer!r}: add it with add_signer() "
                f"(keys loaded: {sorted(self._keys) or 'none'})"
            )
        if isinstance(events, Mapping) or not isinstance(events, Sequence):
            raise LedgerError("append_batch wants a sequence of event objects")
        if len(events) > MAX_BATCH:
            raise LedgerError(f"batch of {len(events)} events; at most {MAX_BATCH} per batch")

    def _append(
        self,
        events: Sequence[Mapping[str, Any]],
        signer: str,
        ready: list[_Prepared],
        while_committing: CommitWork | None,
    ) -> list[Appended]:
        """Append a checked, non-empty batch whose first events are ``ready``."""
        rest = map(
            _prepare,
            range(len(ready), len(events)),
            islice(events, len(ready), None),
            repeat(self.event_hash),
            repeat(self.item_keys_fn),
        )
        prepared: Iterable[_Prepared] = chain(ready, rest) if ready else rest
        # A store that sends rows while they are produced (PostgreSQL's COPY) gets the
        # events prepared as they are sent, under the lock: the server stores one part of
        # the batch while the next is hashed (client and server overlap, on two cores).
        # Any other store gets them prepared before the lock is taken.
        if not self.store.streams_inserts:
            prepared = list(prepared)
        # The signer's open block as this ledger left it: not read again if still current
        # (taken out until the commit: a failed append leaves no half-updated copy).
        held = self._open_leaves.pop(signer, None)
        known = HeldBlock(held[0][0], len(held), held[-1][0], held[-1][2]) if held else None
        with self.store.write(while_committing=while_committing) as tx:
            state = tx.append_state(signer, len(events), self.block_size, known)
            if not state.held_current:
                held = None  # moved on by another writer or a seal, or rolled back
            batch = _Batch(
                state, signer, self._keys[signer], self.block_size, len(events), tx.url, held
            )
            tx.insert_events(batch.rows(prepared))
            if len(batch.appended) != len(events):  # a store that left rows unread
                raise StoreError(f"{tx.url}: {len(batch.appended)} of {len(events)} rows stored")
            if batch.index_rows:
                tx.insert_item_events(batch.index_rows)
            tx.insert_blocks(batch.blocks)
            tx.set_open_block(signer, *batch.open_block())
        if batch.tracks:
            self._open_leaves[signer] = batch.leaves
        return batch.appended

    def _prepare_ahead(self, events: object, ahead: list[_Prepared]) -> CommitWork | None:
        """Work for the commit before ``events`` (on a store whose commit waits on a
        server): prepare them into ``ahead``, in order, until the commit is done. An event
        that cannot be prepared stops it; its batch's own turn names the error."""
        if (
            not self.store.streams_inserts
            or isinstance(events, Mapping)
            or not isinstance(events, Sequence)
            or len(events) > MAX_BATCH
        ):
            return None
        hash_fn, keys_fn = self.event_hash, self.item_keys_fn

        def work(committed: Callable[[], bool]) -> None:
            done, total = 0, len(events)
            while done < total:
                stop = min(done + _AHEAD_STEP, total)
                for index in range(done, stop):
                    try:
                        ahead.append(_prepare(index, events[index], hash_fn, keys_fn))
                    except Exception:  # raised again in the batch's own turn, not here
                        return
                done = stop
                if committed():
                    return

        return work

    # ---- sealing ---------------------------------------------------------------------

    def seal(self, signer: str | None = None) -> list[BlockRow]:
        """Seal the open blocks (of ``signer``, or of every signer whose key is loaded)."""
        sealed: list[BlockRow] = []
        with self.store.write() as tx:
            signers = [signer] if signer is not None else tx.unsealed_signers()
            for org in signers:
                if org in self._keys:
                    sealed += self._seal_locked(org)
                elif signer is not None:
                    raise LedgerError(f"no signing key for organisation {org!r}")
        return sealed

    def _seal_locked(self, signer: str) -> list[BlockRow]:
        """Seal the signer's open events in blocks of up to block_size (under the lock)."""
        key = self._keys[signer]
        store = self.store
        sealed: list[BlockRow] = []
        self._open_leaves.pop(signer, None)
        first_open, open_count = store.open_block(signer)
        while True:
            if open_count == 0:
                return sealed
            # The open events plus the next one after them (where the next block starts).
            found = store.signer_events_from(signer, first_open, self.block_size + 1)
            leaves = found[: self.block_size]
            if len(found) < min(open_count, self.block_size + 1):
                raise StoreError(
                    f"{store.url}: {signer!r} should have {open_count} unsealed events from "
                    f"seq {first_open}, found {len(found)} (open_blocks out of step)"
                )
            block = self.seal_block(key, store.next_block_no(), leaves)
            store.insert_block(block)
            sealed.append(block)
            open_count -= len(leaves)
            first_open = found[self.block_size][0] if open_count else 0
            store.set_open_block(signer, first_open, open_count)

    @staticmethod
    def seal_block(
        key: OrgKey, block_no: int, leaves: Sequence[tuple[int, str, bytes]]
    ) -> BlockRow:
        """Block ``block_no`` over ``leaves`` ((seq, event_id, chain), one signer's events in
        seq order), its Merkle root signed with ``key``."""
        sha256, pack = hashlib.sha256, _U64.pack  # merkle.leaf_hash(leaf_data(…)), inlined
        tree = merkle.tree_levels(
            [sha256(b"\x00" + pack(s) + eid.encode()).digest() for s, eid, _ in leaves]
        )
        root = tree[-1][0]
        header = BlockHeader(
            block_no=block_no,
            signer=key.org,
            key_id=key.key_id,
            first_seq=leaves[0][0],
            last_seq=leaves[-1][0],
            leaf_count=len(leaves),
            root=root,
            head_chain=leaves[-1][2],
        )
        return BlockRow(
            block_no,
            key.org,
            key.key_id,
            header.first_seq,
            header.last_seq,
            header.leaf_count,
            root,
            header.head_chain,
            key.sign(header.statement()),
            now_iso(),
            b"".join(node for level in tree for node in level),
        )

    # ---- reading ---------------------------------------------------------------------

    def item_state(self, item_key: str) -> ItemState | None:
        """The item's current state, from its latest event (an index seek in events and in
        item_events, and one primary-key read, whatever the ledger's size), or None if
        unknown."""
        if not isinstance(item_key, str) or not item_key:
            raise LedgerError(f"item key must be a non-empty string, got {item_key!r:.80}")
        if not storable_text(item_key):
            return None  # (no append stores such an ID)
        row = self.store.item_state(item_key)
        if row is None:
            return None
        seq, event_id, text = row
        return ItemState(item_key, seq, state_of(json.loads(text), seq, event_id))

    def history(self, item_key: str) -> list[LedgerEvent]:
        """The item's events, oldest first."""
        if not isinstance(item_key, str) or not item_key:
            raise LedgerError(f"item key must be a non-empty string, got {item_key!r:.80}")
        if not storable_text(item_key):
            return []  # (no append stores such an ID)
        return [
            LedgerEvent(seq, eid, json.loads(text), signer, chain)
            for seq, eid, text, signer, chain in self.store.item_history(item_key)
        ]

    def audit(
        self,
        *,
        strict: bool = False,
        trusted_keys: Mapping[str, bytes] | None = None,
        workers: int | None = None,
        range_size: int | None = None,
    ) -> AuditReport:
        """Recompute everything; see :func:`gateway.ledger.audit.audit`."""
        from gateway.ledger.audit import RANGE_SIZE, audit

        return audit(
            self.store,
            self.event_hash,
            item_keys_fn=self.item_keys_fn,
            strict=strict,
            trusted_keys=trusted_keys,
            workers=workers,
            range_size=range_size or RANGE_SIZE,
        )

    def prove(self, item_key: str) -> dict[str, Any]:
        """Offline-checkable inclusion proofs of the item's history; see proofs.py."""
        from gateway.ledger.proofs import prove

        return prove(self.store, item_key)

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "Appended",
    "ItemState",
    "Ledger",
    "LedgerError",
    "LedgerEvent",
    "StoreError",
    "item_keys",
    "state_of",
    "storable_text",
]
