"""``provgate ledger …``: event-hash, audit, prove / verify-proof, seed, import / export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from provgate_cli.main import app
from tests.gateway.ledger.ledger_support import event
from tests.support.postgres import PostgresServer

runner = CliRunner()

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = PROJECT_ROOT.parent / "shared" / "conformance" / "epcis-event-hash"
ABSENT = f"conformance examples not found at {CONFORMANCE}"


def conformance_docs() -> list[str]:
    if not CONFORMANCE.is_dir():
        return []
    return sorted(p.stem for p in CONFORMANCE.glob("*.jsonld"))


def ledger(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["ledger", *args])
    return result.exit_code, result.output


def seed(db: Path, items: int = 30, seed_value: int = 7) -> None:
    code, out = ledger("seed", "--items", str(items), "--seed", str(seed_value), "--db", str(db))
    assert code == 0, out
    assert f"seeded {items} items" in out


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    db = tmp_path / "ledger.db"
    seed(db)
    return db


# --- event-hash ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", conformance_docs() or [pytest.param("none", marks=pytest.mark.skip(reason=ABSENT))]
)
def test_event_hash_prints_the_reference_hashes_in_document_order(name: str) -> None:
    code, out = ledger("event-hash", str(CONFORMANCE / f"{name}.jsonld"))
    assert code == 0, out
    expected = (CONFORMANCE / f"{name}.hashes").read_text(encoding="utf-8").split()
    assert out.split() == expected


def test_event_hash_of_a_missing_or_bad_file_exits_2_with_one_line(tmp_path: Path) -> None:
    code, out = ledger("event-hash", str(tmp_path / "absent.jsonld"))
    assert code == 2
    assert "no such file" in out
    assert len(out.strip().splitlines()) == 1
    bad = tmp_path / "bad.jsonld"
    bad.write_text("{not json", encoding="utf-8")
    code, out = ledger("event-hash", str(bad))
    assert code == 2
    assert "not JSON" in out
    assert len(out.strip().splitlines()) == 1


def test_event_hash_of_text_that_is_not_unicode_names_the_event(tmp_path: Path) -> None:
    events = [event(1), event(2) | {"bizStep": "receiving\ud800"}]
    doc: dict[str, Any] = {"type": "EPCISDocument", "epcisBody": {"eventList": events}}
    bad = tmp_path / "surrogate.jsonld"
    bad.write_text(json.dumps(doc), encoding="utf-8")  # (written as the escape \\ud800)
    code, out = ledger("event-hash", str(bad))
    assert code == 2
    assert "event 1: its text holds a lone surrogate (U+D800)" in out
    assert len(out.strip().splitlines()) == 1
    doc["epcisBody"]["eventList"] = events[:1]  # and the same document without it hashes
    bad.write_text(json.dumps(doc), encoding="utf-8")
    assert ledger("event-hash", str(bad))[0] == 0


# --- seed and audit -----------------------------------------------------------------


def test_seed_is_deterministic_signed_by_brands_and_site_and_audits_clean(
    tmp_path: Path, seeded: Path
) -> None:
    other = tmp_path / "other" / "ledger.db"
    other.parent.mkdir()
    seed(other)
    ids = rows(seeded, "SELECT event_id, signer FROM events ORDER BY seq")
    assert ids == rows(other, "SELECT event_id, signer FROM events ORDER BY seq")
    signers = {s for _e, s in ids}
    assert {"site-dc1", "brand-acme"} <= signers
    assert (seeded.parent / "ledger.keys" / "brand-acme.key").is_file()
    first = json.loads(str(rows(seeded, "SELECT event_json FROM events WHERE seq = 1")[0][0]))
    assert first["action"] == "ADD"
    assert first["bizStep"] == "commissioning"
    assert first["bizTransactionList"][0]["type"] == "https://provgate.dev/epcis/BTT-seller"
    items = "SELECT item_key FROM events UNION SELECT item_key FROM item_events"
    assert rows(seeded, f"SELECT COUNT(item_key) FROM ({items})")[0][0] == 30
    code, out = ledger("audit", "--db", str(seeded))
    assert code == 0, out
    assert "ledger OK" in out
    assert "0 events not yet sealed" in out


def test_seed_registers_the_demo_organisations_for_the_gateway(seeded: Path) -> None:
    orgs = rows(seeded, "SELECT org, role FROM gw_orgs ORDER BY org")
    assert ("brand-acme", "brand_owner") in orgs
    assert ("site-dc1", "site") in orgs
    prefixes = {str(p): str(o) for p, o in rows(seeded, "SELECT prefix, org FROM gw_prefixes")}
    assert prefixes["4012345"] == "brand-acme"
    seed(seeded)  # seeding again keeps one registration each
    assert len(rows(seeded, "SELECT org FROM gw_orgs")) == len(orgs)


def test_audit_exits_1_naming_the_event_edited_in_the_database(seeded: Path) -> None:
    event_id = rows(seeded, "SELECT event_id FROM events WHERE seq = 5")[0][0]
    with sqlite3.connect(seeded) as conn:
        conn.execute(
            "UPDATE events SET event_json = replace(event_json, '\"ADD\"', '\"DELETE\"') "
            "WHERE seq = 5"
        )
    code, out = ledger("audit", "--db", str(seeded))
    assert code == 1
    assert "first bad event: seq 5" in out
    assert str(event_id) in out


def test_audit_of_a_missing_database_exits_2_with_one_line(tmp_path: Path) -> None:
    code, out = ledger("audit", "--db", str(tmp_path / "absent.db"))
    assert code == 2
    assert "no ledger database" in out
    assert len(out.strip().splitlines()) == 1
    assert not (tmp_path / "absent.db").exists()


# --- prove and verify-proof ---------------------------------------------------------


def test_prove_then_verify_offline_and_a_tampered_proof_fails(seeded: Path) -> None:
    item = str(rows(seeded, "SELECT MIN(item_key) FROM events")[0][0])
    proof = seeded.parent / "proof.json"
    code, out = ledger("prove", item, "--db", str(seeded), "--out", str(proof))
    assert code == 0, out
    keys = seeded.parent / "ledger.keys"

    code, out = ledger("verify-proof", str(proof), "--keys", str(keys))
    assert code == 0, out
    assert "proof OK" in out

    doc = json.loads(proof.read_text(encoding="utf-8"))
    options: list[str] = []
    for signer in sorted({e["signer"] for e in doc["events"]}):
        code, hex_key = ledger("public-key", signer, "--keys", str(keys))
        assert code == 0
        options += ["--public-key", hex_key.strip()]
    code, out = ledger("verify-proof", str(proof), *options)
    assert code == 0, out
    if len(options) > 2:  # brand and site signed: one key alone is not enough
        code, out = ledger("verify-proof", str(proof), *options[:2])
        assert code == 1
        assert "not among the keys given" in out

    doc["events"][0]["event"]["disposition"] = "stolen"
    tampered = seeded.parent / "tampered.json"
    tampered.write_text(json.dumps(doc), encoding="utf-8")
    code, out = ledger("verify-proof", str(tampered), "--keys", str(keys))
    assert code == 1
    assert "does NOT verify" in out
    assert "event was changed" in out


def test_prove_an_unknown_item_exits_2_with_one_line(seeded: Path) -> None:
    code, out = ledger("prove", "urn:epc:id:sgtin:0000000.000000.1", "--db", str(seeded))
    assert code == 2
    assert "unknown item" in out
    assert len(out.strip().splitlines()) == 1


# --- import and export --------------------------------------------------------------


def test_export_then_import_keeps_every_event_hash(tmp_path: Path, seeded: Path) -> None:
    exported = tmp_path / "all.jsonld"
    code, out = ledger("export", "--db", str(seeded), "--out", str(exported))
    assert code == 0, out
    ids = [str(r[0]) for r in rows(seeded, "SELECT event_id FROM events ORDER BY seq")]
    code, out = ledger("event-hash", str(exported))
    assert code == 0
    assert out.split() == ids

    fresh = tmp_path / "fresh.db"
    code, out = ledger("import", str(exported), "--signer", "brand-acme", "--db", str(fresh))
    assert code == 0, out
    assert f"imported {len(ids)} events" in out
    assert [str(r[0]) for r in rows(fresh, "SELECT event_id FROM events ORDER BY seq")] == ids
    code, out = ledger("audit", "--db", str(fresh))
    assert code == 0, out

    item = str(rows(seeded, "SELECT MIN(item_key) FROM events")[0][0])
    code, out = ledger("export", "--db", str(fresh), "--item", item)
    assert code == 0, out
    events = json.loads(out)["epcisBody"]["eventList"]
    assert events
    assert all(item in e["epcList"] for e in events)


@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason=ABSENT)
def test_import_of_a_conformance_document_keeps_its_reference_hashes(tmp_path: Path) -> None:
    name = "epcisDocWithCustomSchemaInContext"  # foreign extension namespaces
    db = tmp_path / "l.db"
    code, out = ledger(
        "import", str(CONFORMANCE / f"{name}.jsonld"), "--signer", "brand-x", "--db", str(db)
    )
    assert code == 0, out
    expected = (CONFORMANCE / f"{name}.hashes").read_text(encoding="utf-8").split()
    assert [str(r[0]) for r in rows(db, "SELECT event_id FROM events ORDER BY seq")] == expected


def test_import_of_a_bad_document_exits_2_and_stores_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonld"
    bad.write_text(json.dumps({"type": "Nope"}), encoding="utf-8")
    db = tmp_path / "l.db"
    code, out = ledger("import", str(bad), "--signer", "brand-acme", "--db", str(db))
    assert code == 2
    assert "not an EPCIS document" in out
    assert len(out.strip().splitlines()) == 1
    assert not db.exists()


def test_the_commands_work_on_postgresql(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.new_url()
    keys = str(tmp_path / "keys")
    code, out = ledger("seed", "--items", "12", "--db", url, "--keys", keys, "--quiet")
    assert code == 0, out
    code, out = ledger("audit", "--db", url)
    assert code == 0, out
    assert "ledger OK: " in out
    exported = tmp_path / "all.jsonld"
    code, out = ledger("export", "--db", url, "--out", str(exported))
    assert code == 0, out
    item = json.loads(exported.read_text(encoding="utf-8"))["epcisBody"]["eventList"][0]
    proof = tmp_path / "proof.json"
    code, out = ledger("prove", item["epcList"][0], "--db", url, "--out", str(proof))
    assert code == 0, out
    code, out = ledger("verify-proof", str(proof), "--keys", keys)
    assert code == 0, out
