"""Inclusion proofs: checked offline with only the proof file and the signers' public keys."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.ledger.ledger import Ledger, LedgerError
from gateway.ledger.proofs import verify_proof
from gateway.ledger.signing import OrgKey, raw_public
from tests.gateway.ledger.ledger_support import BRAND, SITE, epc, event, fake_event_hash, tamper


def build(ledger: Ledger) -> None:
    ledger.append_batch([event(i) for i in range(6)], BRAND)
    ledger.append_batch([event(i, "receiving", "in_progress", t=i) for i in range(5)], SITE)
    ledger.seal()


def public(keys: dict[str, OrgKey]) -> dict[str, bytes]:
    return {org: raw_public(k.public_key) for org, k in keys.items()}


def test_untouched_history_verifies_from_the_proof_file_alone(
    ledger: Ledger, keys: dict[str, OrgKey], tmp_path: Path
) -> None:
    build(ledger)
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(ledger.prove(epc(4))))
    ledger.close()  # no database from here on
    result = verify_proof(path.read_text(), public(keys), event_hash=fake_event_hash)
    assert result.ok, result.reason
    assert result.verified == 2
    assert "2 events of" in result.reason


def test_proof_carries_leaf_index_path_root_signature_and_key_id(
    ledger: Ledger, keys: dict[str, OrgKey]
) -> None:
    build(ledger)
    proof = ledger.prove(epc(4))
    commissioning = proof["events"][0]
    assert commissioning["seq"] == 5
    assert commissioning["leaf_index"] == 0  # brand block 2 holds seq 5–6
    assert commissioning["block"]["key_id"] == keys[BRAND].key_id
    assert len(bytes.fromhex(commissioning["block"]["signature"])) == 64
    assert len(commissioning["audit_path"]) == 1
    assert proof["unsealed"] == []


def test_a_single_signers_proof_verifies_with_that_one_key(
    ledger: Ledger, keys: dict[str, OrgKey]
) -> None:
    ledger.append_batch([event(i) for i in range(5)], BRAND)
    ledger.seal()
    key = keys[BRAND].public_key
    assert verify_proof(ledger.prove(epc(2)), key, event_hash=fake_event_hash).ok
    assert verify_proof(ledger.prove(epc(2)), raw_public(key).hex(), fake_event_hash).ok


def test_an_event_edited_in_the_proof_file_fails(ledger: Ledger, keys: dict[str, OrgKey]) -> None:
    build(ledger)
    proof = ledger.prove(epc(1))
    proof["events"][1]["event"]["disposition"] = "active"
    result = verify_proof(proof, public(keys), event_hash=fake_event_hash)
    assert not result.ok
    assert "event seq 8: event was changed" in result.reason


def test_an_edited_event_with_a_matching_id_fails_on_the_root(
    ledger: Ledger, keys: dict[str, OrgKey]
) -> None:
    build(ledger)
    proof = ledger.prove(epc(1))
    forged = proof["events"][0]["event"] | {"disposition": "recalled"}
    proof["events"][0]["event"] = forged
    proof["events"][0]["event_id"] = fake_event_hash(forged)
    result = verify_proof(proof, public(keys), event_hash=fake_event_hash)
    assert not result.ok
    assert "does not lead to the block's root" in result.reason


def test_a_proof_of_an_event_tampered_in_the_database_fails(
    ledger: Ledger, keys: dict[str, OrgKey]
) -> None:
    build(ledger)
    forged = event(1) | {"disposition": "recalled"}
    tamper(ledger.store, "UPDATE events SET event_json = ? WHERE seq = 2", (json.dumps(forged),))
    result = verify_proof(ledger.prove(epc(1)), public(keys), event_hash=fake_event_hash)
    assert not result.ok
    assert "event seq 2" in result.reason


def test_a_proof_checked_with_the_wrong_key_fails(ledger: Ledger, keys: dict[str, OrgKey]) -> None:
    build(ledger)
    result = verify_proof(ledger.prove(epc(1)), keys[SITE].public_key, fake_event_hash)
    assert not result.ok
    assert f"signed with key {keys[BRAND].key_id}" in result.reason


def test_a_forged_signature_fails(ledger: Ledger, keys: dict[str, OrgKey]) -> None:
    build(ledger)
    proof = ledger.prove(epc(1))
    proof["events"][0]["block"]["signature"] = "00" * 64
    result = verify_proof(proof, public(keys), event_hash=fake_event_hash)
    assert not result.ok
    assert "signature does not verify" in result.reason


def test_unsealed_events_are_listed_without_proof(ledger: Ledger, keys: dict[str, OrgKey]) -> None:
    build(ledger)
    ledger.append(event(1, "shipping", "in_transit"), SITE)
    proof = ledger.prove(epc(1))
    assert [u["seq"] for u in proof["unsealed"]] == [12]
    result = verify_proof(proof, public(keys), event_hash=fake_event_hash)
    assert result.ok
    assert result.unsealed == 1
    assert "not sealed yet" in result.reason


def test_proving_an_unknown_item_says_so(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="not in the ledger"):
        ledger.prove(epc(42))


def _mutations() -> list[tuple[str, Any]]:
    def set_path(path: list[Any], value: Any) -> Any:
        def apply(proof: dict[str, Any]) -> None:
            target: Any = proof
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value

        return apply

    return [
        ("format", set_path(["format"], "other")),
        ("events not list", set_path(["events"], {})),
        ("no events", set_path(["events"], [])),
        ("entry not object", set_path(["events", 0], 7)),
        ("seq is bool", set_path(["events", 0, "seq"], True)),
        ("negative seq", set_path(["events", 0, "seq"], -1)),
        ("huge leaf index", set_path(["events", 0, "leaf_index"], 10**30)),
        ("path not hex", set_path(["events", 0, "audit_path"], ["zz"])),
        ("short root", set_path(["events", 0, "block", "root"], "00")),
        ("block missing", set_path(["events", 0, "block"], None)),
        ("event not object", set_path(["events", 0, "event"], "x")),
        ("other item", set_path(["item"], epc(3))),
        ("unsealed not list", set_path(["unsealed"], 5)),
    ]


@pytest.mark.parametrize(("name", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_malformed_proofs_fail_with_a_reason_and_never_raise(
    ledger: Ledger, keys: dict[str, OrgKey], name: str, mutate: Any
) -> None:
    build(ledger)
    proof = copy.deepcopy(ledger.prove(epc(1)))
    mutate(proof)
    result = verify_proof(proof, public(keys), event_hash=fake_event_hash)
    assert not result.ok
    assert result.reason


@pytest.mark.parametrize("junk", ["", "{", "[]", "null", b"\xff"])
def test_junk_documents_fail_with_a_reason(junk: Any, keys: dict[str, OrgKey]) -> None:
    result = verify_proof(junk, public(keys), event_hash=fake_event_hash)
    assert not result.ok


def test_a_bad_public_key_is_reported(ledger: Ledger) -> None:
    build(ledger)
    result = verify_proof(ledger.prove(epc(1)), "abc", event_hash=fake_event_hash)
    assert not result.ok
    assert "bad public key" in result.reason


def test_interleaved_signers_get_correct_leaf_indexes(
    ledger: Ledger, keys: dict[str, OrgKey]
) -> None:
    for i in range(4):
        ledger.append(event(i), BRAND)
        ledger.append(event(i, "receiving", t=i), SITE)
    for i in range(4):
        proof = ledger.prove(epc(i))
        assert [e["leaf_index"] for e in proof["events"]] == [i, i]
        assert verify_proof(proof, public(keys), event_hash=fake_event_hash).ok


def test_a_corrupt_stored_tree_still_yields_a_correct_proof(
    ledger: Ledger, keys: dict[str, OrgKey]
) -> None:
    build(ledger)
    tamper(ledger.store, "UPDATE blocks SET tree = ? WHERE block_no = 1", (b"\0" * 5,))
    assert verify_proof(ledger.prove(epc(1)), public(keys), event_hash=fake_event_hash).ok
