"""Ed25519 organisation keys and the signed block statement.

Each organisation of the alliance (brand owner, site) holds an Ed25519 key; the ledger
registers its public key under a key ID ``ed25519:<first 16 hex of SHA-256(raw public key)>``.
A sealed block is signed over this exact byte string (all integers big-endian):

    b"provgate/ledger/v1/block\\x00"
    ‖ u64 block_no ‖ u16 len ‖ UTF-8 signer ‖ u16 len ‖ UTF-8 key_id
    ‖ u64 first_seq ‖ u64 last_seq ‖ u64 leaf_count ‖ root (32) ‖ head_chain (32)

``head_chain`` is the chain value at ``last_seq``: it anchors the whole chain up to that
event to the signature, not only this block's events.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

BLOCK_DOMAIN = b"provgate/ledger/v1/block\x00"
_ORG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class KeyStoreError(ValueError):
    """A key is missing, unreadable or not an Ed25519 key."""


def key_id(public_key: Ed25519PublicKey | bytes) -> str:
    """``ed25519:<16 hex>`` naming a public key (raw 32 bytes or key object)."""
    raw = public_key if isinstance(public_key, bytes) else raw_public(public_key)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def raw_public(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_public(raw: bytes | str) -> Ed25519PublicKey:
    """A public key from 32 raw bytes or their hex; raises KeyStoreError with the reason."""
    try:
        data = bytes.fromhex(raw) if isinstance(raw, str) else raw
        return Ed25519PublicKey.from_public_bytes(data)
    except ValueError as exc:
        raise KeyStoreError(
            f"not an Ed25519 public key (want 32 bytes or 64 hex digits): {exc}"
        ) from exc


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """Everything a block signature covers."""

    block_no: int
    signer: str
    key_id: str
    first_seq: int
    last_seq: int
    leaf_count: int
    root: bytes
    head_chain: bytes

    def statement(self) -> bytes:
        """The exact bytes that are signed."""
        signer = self.signer.encode("utf-8")
        kid = self.key_id.encode("utf-8")
        return b"".join(
            (
                BLOCK_DOMAIN,
                struct.pack(">QH", self.block_no, len(signer)),
                signer,
                struct.pack(">H", len(kid)),
                kid,
                struct.pack(">QQQ", self.first_seq, self.last_seq, self.leaf_count),
                self.root,
                self.head_chain,
            )
        )


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message``."""
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class OrgKey:
    """An organisation's signing key."""

    org: str
    private_key: Ed25519PrivateKey

    @cached_property
    def public_key(self) -> Ed25519PublicKey:
        """The public half."""
        return self.private_key.public_key()

    @cached_property
    def key_id(self) -> str:
        """ID under which the ledger registers the public key."""
        return key_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature (64 bytes)."""
        return self.private_key.sign(message)


def check_org_name(org: str) -> str:
    """``org`` if it is a usable organisation name, else ValueError saying why."""
    if not isinstance(org, str) or not _ORG_NAME.match(org):
        raise ValueError(
            f"bad organisation name {org!r}: use 1–100 of A-Z a-z 0-9 . _ - (starting alphanumeric)"
        )
    return org


class Keystore:
    """Organisation keys as PKCS#8 PEM files ``<org>.key`` (mode 0600) in one directory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, org: str) -> Path:
        """Where ``org``'s private key lives."""
        return self.directory / f"{check_org_name(org)}.key"

    def generate(self, org: str) -> OrgKey:
        """Create and store a new key for ``org``; refuses to overwrite an existing one."""
        path = self.path(org)
        if path.exists():
            raise KeyStoreError(f"key for {org!r} already exists at {path}")
        self.directory.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return OrgKey(org, key)

    def load(self, org: str) -> OrgKey:
        """``org``'s key from disk."""
        path = self.path(org)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise KeyStoreError(f"no key for {org!r}: {path} does not exist") from None
        except (ValueError, TypeError) as exc:
            raise KeyStoreError(f"cannot read key {path}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyStoreError(f"{path} is not an Ed25519 private key")
        return OrgKey(org, key)

    def load_or_generate(self, org: str) -> OrgKey:
        """The stored key for ``org``, created on first use."""
        return self.load(org) if self.path(org).exists() else self.generate(org)

    def orgs(self) -> list[str]:
        """Organisations with a key in this store."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.key"))
