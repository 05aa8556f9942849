"""With no hash injected, the ledger IDs events by the CBV 2.0 event hash (event_hash.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ledger.ledger import Ledger
from gateway.ledger.proofs import verify_proof
from gateway.ledger.signing import OrgKey
from tests.gateway.ledger.ledger_support import BRAND, epc, event

event_hash_module = pytest.importorskip("gateway.ledger.event_hash")


def test_default_ids_are_cbv_event_hashes_and_proofs_verify_with_them(
    tmp_path: Path, keys: dict[str, OrgKey]
) -> None:
    with Ledger.open(str(tmp_path / "l.db"), keys.values(), block_size=2) as ledger:
        appended = ledger.append_batch([event(1), event(2)], BRAND)
        assert appended[0].event_id == event_hash_module.event_hash(event(1))
        assert appended[0].event_id.startswith("ni:///sha-256;")
        assert ledger.audit(strict=True).ok
        proof = ledger.prove(epc(1))
    assert verify_proof(proof, keys[BRAND].public_key).ok
