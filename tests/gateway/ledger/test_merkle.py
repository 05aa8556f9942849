"""Merkle trees: RFC 6962 roots, audit paths, and the chain/leaf encodings."""

from __future__ import annotations

import hashlib

import pytest

from gateway.ledger import merkle
from gateway.ledger.chain import leaf_data

# The certificate-transparency test leaves and root (RFC 6962 reference implementation).
CT_LEAVES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
CT_ROOT_8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 Merkle Tree Hash, by its recursive definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(mth(leaves[:k]), mth(leaves[k:]))


def hashed(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_root_matches_the_certificate_transparency_test_vector() -> None:
    leaves = [merkle.leaf_hash(bytes.fromhex(h)) for h in CT_LEAVES]
    assert merkle.root_from_leaf_hashes(leaves).hex() == CT_ROOT_8


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert merkle.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert merkle.node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert merkle.root_from_leaf_hashes([]) == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("n", [*range(1, 18), 31, 32, 33, 100])
def test_bottom_up_root_equals_the_rfc_definition(n: int) -> None:
    assert merkle.root_from_leaf_hashes(hashed(n)) == mth(hashed(n))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 33])
def test_every_audit_path_leads_to_the_root(n: int) -> None:
    leaves = hashed(n)
    root = mth(leaves)
    for i in range(n):
        path = merkle.audit_path(leaves, i)
        assert merkle.root_from_path(leaves[i], i, n, path) == root


def test_a_path_for_another_leaf_or_size_does_not_lead_to_the_root() -> None:
    leaves = hashed(7)
    root = mth(leaves)
    path = merkle.audit_path(leaves, 3)
    assert merkle.root_from_path(leaves[4], 3, 7, path) != root
    assert merkle.root_from_path(leaves[3], 2, 7, path) != root
    assert merkle.root_from_path(leaves[3], 3, 7, path[:-1]) is None
    assert merkle.root_from_path(leaves[3], 3, 7, [*path, path[0]]) is None
    assert merkle.root_from_path(leaves[3], 7, 7, path) is None


def test_audit_path_refuses_an_index_outside_the_tree() -> None:
    with pytest.raises(ValueError, match="outside a tree of 3"):
        merkle.audit_path(hashed(3), 3)


def test_leaf_data_binds_position_and_event_id() -> None:
    assert leaf_data(1, "ni:x") == b"\0\0\0\0\0\0\0\x01ni:x"


@pytest.mark.parametrize("n", [1, 2, 3, 6, 7, 8, 9, 33])
def test_paths_read_from_the_packed_tree_equal_computed_paths(n: int) -> None:
    leaves = hashed(n)
    packed = merkle.pack_tree(leaves)
    assert packed[-32:] == mth(leaves)
    for i in range(n):
        assert merkle.path_from_packed(packed, n, i) == merkle.audit_path(leaves, i)


def test_a_packed_tree_of_the_wrong_size_is_refused() -> None:
    packed = merkle.pack_tree(hashed(5))
    with pytest.raises(ValueError, match="stored tree has"):
        merkle.path_from_packed(packed, 6, 0)
    with pytest.raises(ValueError, match="outside a tree"):
        merkle.path_from_packed(packed, 5, 5)
