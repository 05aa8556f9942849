"""Inclusion proofs of an item's history that a third party checks offline.

A proof is a JSON document (format ``provgate-ledger-proof/1``) listing the item's events;
each sealed event carries its leaf index, its RFC 6962 audit path (hex, leaf to root) and
the header and Ed25519 signature of its block. :func:`verify_proof` needs only that
document and the signer's public key(s): it recomputes the event hash from the event
JSON, the leaf hash ``SHA-256(0x00 ‖ u64be(seq) ‖ UTF-8(event_id))``, the root from the
audit path, and checks the signature over the block statement (signing.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.ledger import merkle
from gateway.ledger.chain import leaf_data
from gateway.ledger.ledger import (
    HashFn,
    LedgerError,
    default_event_hash,
    item_keys,
    now_iso,
    storable_text,
)
from gateway.ledger.signing import (
    BlockHeader,
    KeyStoreError,
    key_id,
    load_public,
    raw_public,
    verify_signature,
)
from gateway.ledger.store import BlockRow, SqlStore

PROOF_FORMAT = "provgate-ledger-proof/1"
PublicKeys = Ed25519PublicKey | bytes | str | Mapping[str, Ed25519PublicKey | bytes | str]


def _block_json(block: BlockRow) -> dict[str, Any]:
    return {
        "block_no": block.block_no,
        "signer": block.signer,
        "key_id": block.key_id,
        "first_seq": block.first_seq,
        "last_seq": block.last_seq,
        "leaf_count": block.leaf_count,
        "root": block.root.hex(),
        "head_chain": block.head_chain.hex(),
        "signature": block.signature.hex(),
    }


def _audit_path(store: SqlStore, block: BlockRow, seq: int) -> tuple[int, list[bytes]]:
    """(leaf index, audit path) of event ``seq`` in ``block``, from the block's stored tree;
    rebuilt from the events if that tree is unusable (the proof then shows any mismatch)."""
    leaves = store.block_leaves(block)
    index = next((i for i, (s, _) in enumerate(leaves) if s == seq), -1)
    if index < 0:
        return -1, []
    try:
        return index, merkle.path_from_packed(block.tree, block.leaf_count, index)
    except ValueError:
        hashes = [merkle.leaf_hash(leaf_data(s, eid)) for s, eid in leaves]
        return index, merkle.audit_path(hashes, index)


def prove(store: SqlStore, item_key: str) -> dict[str, Any]:
    """The proof document for ``item_key``'s history (events not yet sealed are listed
    under ``unsealed`` without a proof)."""
    if not isinstance(item_key, str) or not item_key:
        raise LedgerError(f"item key must be a non-empty string, got {item_key!r:.80}")
    entries: list[dict[str, Any]] = []
    unsealed: list[dict[str, Any]] = []
    history = store.item_history_with_blocks(item_key) if storable_text(item_key) else []
    if not history:
        raise LedgerError(f"item {item_key!r} is not in the ledger")
    for (seq, event_id, text, signer, _chain), block in history:
        entry: dict[str, Any] = {
            "seq": seq,
            "event_id": event_id,
            "signer": signer,
            "event": json.loads(text),
        }
        if block is None:
            unsealed.append(entry)
            continue
        # Leaves of a signer's block are its events in seq order, but other signers'
        # events sit between them; the leaf index is the rank of seq among the block's
        # events, which the stored tree alone cannot give, so count them in the database
        # only when the block is not contiguous.
        index = _leaf_index(store, block, seq)
        try:
            if index < 0:
                raise ValueError("event not found among its block's events")
            path = merkle.path_from_packed(block.tree, block.leaf_count, index)
        except ValueError:
            index, path = _audit_path(store, block, seq)
        entry.update(
            leaf_index=index,
            audit_path=[p.hex() for p in path],
            block=_block_json(block),
        )
        entries.append(entry)
    return {
        "format": PROOF_FORMAT,
        "item": item_key,
        "generated_at": now_iso(),
        "events": entries,
        "unsealed": unsealed,
    }


def _leaf_index(store: SqlStore, block: BlockRow, seq: int) -> int:
    if block.last_seq - block.first_seq + 1 == block.leaf_count:
        return seq - block.first_seq  # contiguous block: no query needed
    return store.leaf_rank(block, seq)


@dataclass(frozen=True, slots=True)
class ProofResult:
    """Outcome of :func:`verify_proof`."""

    ok: bool
    reason: str
    verified: int = 0
    unsealed: int = 0

    def __bool__(self) -> bool:
        return self.ok


def _key_map(public_keys: PublicKeys) -> dict[str, Ed25519PublicKey]:
    items: list[Ed25519PublicKey | bytes | str]
    items = list(public_keys.values()) if isinstance(public_keys, Mapping) else [public_keys]
    keys: dict[str, Ed25519PublicKey] = {}
    for value in items:
        key = value if isinstance(value, Ed25519PublicKey) else load_public(value)
        keys[key_id(raw_public(key))] = key
    return keys


def _field(obj: Any, name: str, kind: type, where: str) -> Any:
    if not isinstance(obj, dict) or name not in obj:
        raise ValueError(f"{where}: missing {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}: {name!r} must be {kind.__name__}, got {value!r:.60}")
    return value


def _hex(obj: Any, name: str, where: str, size: int | None = None) -> bytes:
    text = _field(obj, name, str, where)
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{where}: {name!r} is not hex") from None
    if size is not None and len(data) != size:
        raise ValueError(f"{where}: {name!r} must be {size} bytes, got {len(data)}")
    return data


def _verify_entry(
    entry: Any, item: str, keys: dict[str, Ed25519PublicKey], hash_fn: HashFn
) -> None:
    where = "event ?"
    seq = _field(entry, "seq", int, where)
    where = f"event seq {seq}"
    event_id = _field(entry, "event_id", str, where)
    event = _field(entry, "event", dict, where)
    try:
        recomputed = hash_fn(event)
    except Exception as exc:  # the hash function's own errors
        raise ValueError(f"{where}: event hash cannot be computed: {exc}") from exc
    if recomputed != event_id:
        raise ValueError(f"{where}: event was changed (its hash is {recomputed}, not {event_id})")
    try:
        named = item_keys(event)
    except LedgerError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    if item not in named:
        raise ValueError(f"{where}: event does not name item {item!r}")
    block = _field(entry, "block", dict, where)
    header = BlockHeader(
        block_no=_field(block, "block_no", int, where),
        signer=_field(block, "signer", str, where),
        key_id=_field(block, "key_id", str, where),
        first_seq=_field(block, "first_seq", int, where),
        last_seq=_field(block, "last_seq", int, where),
        leaf_count=_field(block, "leaf_count", int, where),
        root=_hex(block, "root", where, 32),
        head_chain=_hex(block, "head_chain", where, 32),
    )
    if not header.first_seq <= seq <= header.last_seq:
        raise ValueError(f"{where}: outside its block's seq {header.first_seq}–{header.last_seq}")
    index = _field(entry, "leaf_index", int, where)
    path_hex = _field(entry, "audit_path", list, where)
    path = [_hex({"p": p}, "p", f"{where} audit_path", 32) for p in path_hex]
    if not all(0 <= v < 2**63 for v in (seq, header.block_no, header.leaf_count, header.last_seq)):
        raise ValueError(f"{where}: number out of range")
    leaf = merkle.leaf_hash(leaf_data(seq, event_id))
    root = merkle.root_from_path(leaf, index, header.leaf_count, path)
    if root is None:
        raise ValueError(f"{where}: malformed audit path for leaf {index} of {header.leaf_count}")
    if root != header.root:
        raise ValueError(f"{where}: audit path does not lead to the block's root (event changed)")
    key = keys.get(header.key_id)
    if key is None:
        raise ValueError(
            f"{where}: block {header.block_no} is signed with key {header.key_id}, "
            f"which is not among the keys given ({', '.join(sorted(keys)) or 'none'})"
        )
    signature = _hex(block, "signature", where, 64)
    if not verify_signature(key, signature, header.statement()):
        raise ValueError(f"{where}: block {header.block_no} signature does not verify")


def verify_proof(
    proof: Mapping[str, Any] | str | bytes,
    public_keys: PublicKeys,
    event_hash: HashFn | None = None,
) -> ProofResult:
    """Check a proof document offline against the signers' public key(s).

    ``public_keys`` is one key (object, 32 raw bytes or hex) or a mapping of several.
    Never raises on a bad proof: the result says what is wrong.
    """
    try:
        doc = json.loads(proof) if isinstance(proof, str | bytes) else proof
    except ValueError as exc:
        return ProofResult(False, f"proof is not JSON: {exc}")
    try:
        keys = _key_map(public_keys)
    except (KeyStoreError, TypeError, ValueError) as exc:
        return ProofResult(False, f"bad public key: {exc}")
    try:
        if not isinstance(doc, Mapping) or doc.get("format") != PROOF_FORMAT:
            raise ValueError(f"not a {PROOF_FORMAT} document")
        item = _field(dict(doc), "item", str, "proof")
        entries = _field(dict(doc), "events", list, "proof")
        unsealed = doc.get("unsealed", [])
        if not isinstance(unsealed, list):
            raise ValueError("proof: 'unsealed' must be a list")
        if not entries:
            raise ValueError("proof holds no sealed event")
        hash_fn: Callable[[Mapping[str, Any]], str] = event_hash or default_event_hash()
        for entry in entries:
            _verify_entry(entry, item, keys, hash_fn)
    except (ValueError, LedgerError) as exc:
        return ProofResult(False, str(exc))
    note = f"; {len(unsealed)} newer events not sealed yet, unproven" if unsealed else ""
    return ProofResult(
        True, f"{len(entries)} events of {item} verified{note}", len(entries), len(unsealed)
    )
