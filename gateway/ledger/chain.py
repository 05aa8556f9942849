"""The hash chain that links every event to the one before it, and the Merkle leaf encoding.

chain_0 (genesis) = SHA-256(UTF-8("provgate/ledger/v1/genesis"))
chain_i           = SHA-256(chain_{i-1} ‖ UTF-8(event_id_i))      (32 raw bytes ‖ the ID string)

``event_id`` is the CBV 2.0 event hash string (``ni:///sha-256;<hex>?ver=CBV2.0``) exactly
as stored. The sequence number is implied by position: seq i is the i-th event (from 1),
so deleting, inserting or reordering events changes every chain value from that point on.

A block leaf binds an event's position and ID:
leaf data = u64 big-endian(seq) ‖ UTF-8(event_id)
"""

from __future__ import annotations

import hashlib
import struct

GENESIS = hashlib.sha256(b"provgate/ledger/v1/genesis").digest()


def next_chain(previous: bytes, event_id: str) -> bytes:
    """chain_i from chain_{i-1} and event_id_i."""
    return hashlib.sha256(previous + event_id.encode("utf-8")).digest()


def leaf_data(seq: int, event_id: str) -> bytes:
    """The bytes a block's Merkle leaf hashes for event ``seq``."""
    return struct.pack(">Q", seq) + event_id.encode("utf-8")
