"""RFC 6962 / RFC 9162 Merkle trees over SHA-256 with domain-separated leaf and node hashes.

leaf hash  = SHA-256(0x00 ‖ leaf data)
node hash  = SHA-256(0x01 ‖ left ‖ right)
A tree of n leaves splits at the largest power of two below n (RFC 6962 §2.1), so trees
of any size are well defined and a proof never needs padding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below n (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(leaves: Sequence[bytes]) -> bytes:
    """Merkle tree hash (MTH) of already-hashed leaves.

    Bottom-up pairing (carrying an odd last node up unchanged) yields exactly the RFC 6962
    tree, and is much faster in Python than the recursive definition.
    """
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    sha = hashlib.sha256
    while len(level) > 1:
        nxt = [
            sha(NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def audit_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Inclusion proof (RFC 6962 PATH) for leaf ``index`` among hashed ``leaves``, leaf to root."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf index {index} outside a tree of {len(leaves)} leaves")
    path: list[bytes] = []
    level = list(leaves)
    i = index
    sha = hashlib.sha256
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        nxt = [
            sha(NODE_PREFIX + level[j] + level[j + 1]).digest() for j in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        i //= 2
    return path


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """Root implied by an inclusion proof (RFC 9162 §2.1.3.2), or None if the proof is malformed."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return r


def tree_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, root last (odd last nodes carried up)."""
    levels = [list(leaves)]
    sha = hashlib.sha256
    while len(levels[-1]) > 1:
        level = levels[-1]
        nxt = [
            sha(NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
    return levels


def pack_tree(leaves: Sequence[bytes]) -> bytes:
    """All levels' nodes concatenated (32 bytes each), as stored beside a sealed block."""
    return b"".join(node for level in tree_levels(leaves) for node in level)


def path_from_packed(packed: bytes, size: int, index: int) -> list[bytes]:
    """The audit path of leaf ``index`` read from a packed tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} outside a tree of {size} leaves")
    path: list[bytes] = []
    offset, n, i = 0, size, index
    while n > 1:
        sibling = i ^ 1
        if sibling < n:
            start = offset + 32 * sibling
            path.append(packed[start : start + 32])
        offset += 32 * n
        n, i = (n + 1) // 2, i // 2
    if offset + 32 != len(packed):
        raise ValueError(
            f"stored tree has {len(packed)} bytes, not {offset + 32} for {size} leaves"
        )
    return path
