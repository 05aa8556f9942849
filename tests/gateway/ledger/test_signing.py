"""Organisation keystore and block signatures."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.ledger.signing import (
    BlockHeader,
    Keystore,
    KeyStoreError,
    key_id,
    load_public,
    raw_public,
    verify_signature,
)


def header(**changes: object) -> BlockHeader:
    values: dict[str, object] = {
        "block_no": 1,
        "signer": "brand-acme",
        "key_id": "ed25519:0011223344556677",
        "first_seq": 1,
        "last_seq": 9,
        "leaf_count": 4,
        "root": b"r" * 32,
        "head_chain": b"c" * 32,
    }
    values.update(changes)
    return BlockHeader(**values)  # type: ignore[arg-type]


def test_generated_key_is_stored_private_and_loads_back(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    key = store.generate("brand-acme")
    assert stat.S_IMODE(os.stat(store.path("brand-acme")).st_mode) == 0o600
    loaded = store.load("brand-acme")
    assert loaded.key_id == key.key_id
    assert key.key_id.startswith("ed25519:")
    assert len(key.key_id) == 24
    assert store.orgs() == ["brand-acme"]
    assert store.load_or_generate("brand-acme").key_id == key.key_id


def test_keystore_refuses_to_overwrite_and_names_missing_or_bad_keys(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    store.generate("site-1")
    with pytest.raises(KeyStoreError, match="already exists"):
        store.generate("site-1")
    with pytest.raises(KeyStoreError, match="no key for 'site-2'"):
        store.load("site-2")
    (tmp_path / "junk.key").write_text("not a pem")
    with pytest.raises(KeyStoreError, match="cannot read key"):
        store.load("junk")


@pytest.mark.parametrize("org", ["", "../etc", "a b", "-x", "x" * 101])
def test_bad_organisation_names_are_refused(tmp_path: Path, org: str) -> None:
    with pytest.raises(ValueError, match="bad organisation name"):
        Keystore(tmp_path).generate(org)


def test_signature_covers_every_header_field(tmp_path: Path) -> None:
    key = Keystore(tmp_path).generate("brand-acme")
    signed = header()
    signature = key.sign(signed.statement())
    assert verify_signature(key.public_key, signature, signed.statement())
    for change in (
        {"block_no": 2},
        {"signer": "brand-evil"},
        {"key_id": "ed25519:ffffffffffffffff"},
        {"first_seq": 2},
        {"last_seq": 10},
        {"leaf_count": 5},
        {"root": b"R" * 32},
        {"head_chain": b"C" * 32},
    ):
        assert not verify_signature(key.public_key, signature, header(**change).statement())


def test_public_keys_load_from_raw_bytes_or_hex_and_refuse_junk(tmp_path: Path) -> None:
    key = Keystore(tmp_path).generate("o")
    raw = raw_public(key.public_key)
    assert key_id(load_public(raw)) == key_id(load_public(raw.hex())) == key.key_id
    with pytest.raises(KeyStoreError, match="not an Ed25519 public key"):
        load_public("abcd")
    with pytest.raises(KeyStoreError, match="not an Ed25519 public key"):
        load_public("zz" * 32)
