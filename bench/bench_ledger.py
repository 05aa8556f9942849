"""Provenance ledger: append, item lookup, full audit and inclusion proofs, SQLite and PostgreSQL.

Each figure stands beside a baseline from the same run on the same database:
append ← raw inserts of the same rows (no chain, no index, no blocks); lookup at
1,000,000 items ← the same lookup at 10,000 items (O(1) means a ratio near 1); audit ←
reading every stored row once; proof ← the item's history query alone. Event IDs are the
CBV 2.0 event hash (gateway.ledger.event_hash); its own cost is shown separately.

The big and small ledgers are bulk-loaded (executemany / COPY) with exactly what appends
would write, then brought to steady state (``settle``: PostgreSQL VACUUM (ANALYZE) and
CHECKPOINT, SQLite WAL checkpoint) before anything is measured. Appends then go to one
fresh ledger per backend, in rounds: each round runs every append mode and the raw
inserts once, 20,000 events each, in an order rotated by one each round; there are 3
rounds, the figure is the median of a mode's 3 runs and its name shows their min–max.
The event hash alone is timed on the same events, 20,000 at a time (median of 12).
One more mode appends gate decisions as the gateway writes them (``gateway_events``: an
@context and five extension fields, about twice a gate event's JSON), for reference
beside the same stream of the simpler gate events.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

from bench.report import Figure, print_figures
from gateway.ledger.chain import GENESIS, next_chain
from gateway.ledger.ledger import Ledger
from gateway.ledger.pg_store import PostgresStore
from gateway.ledger.signing import Keystore, OrgKey, raw_public
from gateway.ledger.sqlite_store import SqliteStore
from gateway.ledger.store import BlockRow, NewEventRow, SqlStore
from tests.support.postgres import PostgresServer

BIG = int(os.environ.get("PROVGATE_BENCH_LEDGER_ITEMS", "1000000"))
SMALL = 10_000
#: Events of one run of one append mode, and rounds of runs (each mode once a round).
APPEND_RUN = 20_000
APPEND_ROUNDS = 3
APPEND_BATCH = 500
#: A gateway that groups the gate events of several requests into one commit.
APPEND_BIG_BATCH = 2_000
BLOCK_SIZE = 256
LOOKUPS = 20_000
PROOFS = 500
LOAD_CHUNK = 20_000
BRAND = "brand-acme"
SITE = "site-dc1"


def commissioning(n: int) -> dict[str, Any]:
    """A brand owner's commissioning ObjectEvent for item n."""
    return {
        "type": "ObjectEvent",
        "eventTime": f"2026-11-{1 + n % 28:02d}T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:"
        f"{n % 60:02d}.000Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": [f"urn:epc:id:sgtin:0614141.107346.{n}"],
        "action": "ADD",
        "bizStep": "commissioning",
        "disposition": "active",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.00777.0"},
        "bizLocation": {"id": "urn:epc:id:sgln:0614141.00777.0"},
    }


def gate_event(n: int) -> dict[str, Any]:
    """A site's receiving ObjectEvent for item n."""
    return commissioning(n) | {
        "action": "OBSERVE",
        "bizStep": "receiving",
        "disposition": "in_progress",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.00888.gate1"},
    }


def gateway_events(n: int) -> list[dict[str, Any]]:
    """``n`` gate events as ``gateway.ingest.epcis_of`` writes them (inbound, outbound and
    inspection gates; pass, hold and reject; with and without a seller)."""
    from gateway.config import GateSettings, GatewayConfig
    from gateway.ingest import epcis_of
    from gatewire.identity import parse_item_id
    from gatewire.messages import Decision, GateEvent

    config = GatewayConfig(
        site="dc1",
        site_org="site-dc1",
        location="urn:epc:id:sgln:0614141.00777.0",
        site_secret="ab" * 32,
        ledger_url="sqlite:///unused.db",
        gates={
            "in-01": GateSettings(kind="inbound", read_point="urn:epc:id:sgln:0614141.00888.1"),
            "out-01": GateSettings(kind="outbound"),
            "insp-01": GateSettings(kind="inspection"),
        },
    )
    decisions = (Decision.PASS,) * 8 + (Decision.HOLD, Decision.REJECT)
    reasons = {Decision.PASS: [], Decision.HOLD: ["vision.suspect"], Decision.REJECT: []}
    reasons[Decision.REJECT] = ["ledger.unknown_item", "vision.low_score"]
    events = []
    start = 1_780_000_000.0
    for i in range(n):
        item = parse_item_id(f"urn:epc:id:sgtin:0614141.107346.{100000 + i}").item
        decision = decisions[i % len(decisions)]
        gate_event_ = GateEvent(
            site="dc1",
            gate=("in-01", "out-01", "insp-01")[i % 3],
            event_id=uuid.UUID(int=i * 0x9E3779B97F4A7C15 % 2**128).hex,
            item=item,
            decision=decision,
            reasons=reasons[decision],
            seller=None if i % 4 == 0 else f"seller-{i % 9}",
            scanned_at=start + i * 0.05,
            decided_at=start + i * 0.05 + 0.012,
        )
        events.append(epcis_of(gate_event_, config))
    return events


def event_hash_fn() -> Callable[[Mapping[str, Any]], str]:
    from gateway.ledger.event_hash import event_hash

    return event_hash


# ---- bulk load: exactly the rows appends would write --------------------------------


class _Writer:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def write(
        self,
        events: Sequence[NewEventRow],
        blocks: Sequence[BlockRow],
    ) -> None:
        with self.store.write():
            if isinstance(self.store, PostgresStore):
                conn = self.store.connection
                cols = "seq, event_id, event_json, signer, chain, item_key"
                with conn.cursor() as cur, cur.copy(f"COPY events ({cols}) FROM STDIN") as copy:
                    for row in events:
                        copy.write_row(row)
            else:
                self.store.insert_events(events)
            for block in blocks:
                self.store.insert_block(block)


def bulk_load(stores: Sequence[SqlStore], n: int, key: OrgKey, hash_fn: Any) -> None:
    """n commissioning events (one per item) signed by ``key.org``, into every store."""
    writers = [_Writer(s) for s in stores]
    for store in stores:
        with store.write():
            store.register_key(key.key_id, key.org, raw_public(key.public_key), "bench")
    chain = GENESIS
    block_no = 0
    pending: list[tuple[int, str, bytes]] = []
    for start in range(0, n, LOAD_CHUNK):
        events: list[NewEventRow] = []
        blocks = []
        for i in range(start, min(n, start + LOAD_CHUNK)):
            seq = i + 1
            event = commissioning(i)
            eid = hash_fn(event)
            chain = next_chain(chain, eid)
            text = json.dumps(event, separators=(",", ":"))
            events.append((seq, eid, text, key.org, chain, event["epcList"][0]))  # one item each
            pending.append((seq, eid, chain))
            if len(pending) == BLOCK_SIZE or seq == n:
                block_no += 1
                blocks.append(Ledger.seal_block(key, block_no, pending))
                pending = []
        for w in writers:
            w.write(events, blocks)


# ---- measurements -------------------------------------------------------------------


def settle(stores: Sequence[SqlStore]) -> None:
    """Bring bulk-loaded databases to the steady state a site's ledger is measured in.

    Right after a bulk load PostgreSQL still runs the checkpoint the load's WAL started
    (spread over minutes), autovacuum visits the fresh million-row table (an insert-driven
    vacuum, some 11 s at its throttled pace) at a moment set by its naptime, and the
    load's dirty buffers are written out by whichever backend needs a buffer next: the
    appends being measured. A site's ledger is not measured in the minutes after a bulk
    load of another database, so vacuum and checkpoint now. ``VACUUM (ANALYZE)`` covers
    every schema of the store's database (the bench's ledgers are schemas of one
    database), so it also does the whole-database ``ANALYZE`` the lookups rely on.
    SQLite: the WAL is checkpointed into the database file (synced) and truncated.
    """
    for store in stores:
        if isinstance(store, PostgresStore):
            store.connection.execute("VACUUM (ANALYZE)")
            store.connection.execute("CHECKPOINT")
        elif isinstance(store, SqliteStore):
            busy, _, _ = store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                raise RuntimeError(f"{store.url}: WAL checkpoint blocked by another connection")


@dataclasses.dataclass(frozen=True, slots=True)
class Samples:
    """Repeated rates of one figure (events/s): the median is the figure, min–max its noise."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        """The figure: the median run."""
        return statistics.median(self.values)

    @property
    def spread(self) -> str:
        """How many runs and their range, e.g. ``median of 3, 18.6k–24.2k/s``."""
        low, high = min(self.values), max(self.values)
        return f"median of {len(self.values)}, {low / 1e3:.1f}k–{high / 1e3:.1f}k/s"


@dataclasses.dataclass(frozen=True, slots=True)
class AppendRates:
    """Events/s of each append mode, raw inserts and the hash alone, every run of each."""

    calls: Samples  # one append_batch call per batch of APPEND_BATCH, CBV hash included
    stream: Samples  # append_batches over batches of APPEND_BATCH, CBV hash included
    precomputed: Samples  # the same stream, CBV hashes computed beforehand
    big_batches: Samples  # append_batches over batches of APPEND_BIG_BATCH, CBV hash included
    gateway: Samples  # the stream of batches of APPEND_BATCH of gateway_events, CBV hash
    raw: Samples  # INSERTs of the same rows, APPEND_BATCH a transaction, into a plain table
    hash_alone: Samples


def measure_append(
    url: str,
    raw_url: str,
    keys: list[OrgKey],
    hash_fn: Any,
    run_events: int = APPEND_RUN,
    rounds: int = APPEND_ROUNDS,
) -> AppendRates:
    """Rates of each append mode, ``rounds`` runs of ``run_events`` each, on one ledger.

    A round runs every mode and the raw inserts once, each on its own slice of gate events
    (the gateway mode: of gateway_events), the order rotated by one each round so that no
    mode is always first after a pause or last in a slow minute. The ledger grows across
    runs, as a site's does.
    """
    hash_modes = {
        "calls": (APPEND_BATCH, False),
        "stream": (APPEND_BATCH, True),
        "precomputed": (APPEND_BATCH, True),
        "big_batches": (APPEND_BIG_BATCH, True),
    }
    events = [gate_event(i) for i in range(run_events * len(hash_modes) * rounds)]
    ids: list[str] = []
    hash_rates = []
    for start in range(0, len(events), run_events):
        t = time.perf_counter()
        ids += [hash_fn(e) for e in events[start : start + run_events]]
        hash_rates.append(run_events / (time.perf_counter() - t))
    precomputed: dict[int, str] = {id(e): i for e, i in zip(events, ids, strict=True)}

    def lookup(event: Mapping[str, Any]) -> str:
        return precomputed[id(event)]

    slices = iter(range(0, len(events), run_events))
    gateway = gateway_events(run_events * rounds)
    gateway_slices = iter(range(0, len(gateway), run_events))
    rates: dict[str, list[float]] = {name: [] for name in [*hash_modes, "gateway", "raw"]}
    with _open(raw_url) as raw:
        raw._execute(
            "CREATE TABLE raw_events (seq BIGINT PRIMARY KEY, event_id TEXT, "
            "event_json TEXT, signer TEXT, chain " + raw.blob_type + ")"
        )
        for n in range(rounds):
            names = list(rates)
            for name in names[n % len(names) :] + names[: n % len(names)]:
                if name == "raw":  # the rows of this round's first slice, into raw_events
                    first = n * len(hash_modes) * run_events
                    rates[name].append(_raw_inserts(raw, events, ids, first, run_events))
                    continue
                batch, stream = hash_modes.get(name, (APPEND_BATCH, True))
                fn = lookup if name == "precomputed" else hash_fn
                source, start = (
                    (gateway, next(gateway_slices)) if name == "gateway" else (events, next(slices))
                )
                with Ledger.open(url, keys, event_hash=fn, block_size=BLOCK_SIZE) as ledger:
                    part = source[start : start + run_events]
                    batches = [part[b : b + batch] for b in range(0, len(part), batch)]
                    t = time.perf_counter()
                    if stream:
                        for _ in ledger.append_batches(batches, SITE):
                            pass
                    else:
                        for events_of_batch in batches:
                            ledger.append_batch(events_of_batch, SITE)
                    rates[name].append(len(part) / (time.perf_counter() - t))
    runs = {name: Samples(tuple(values)) for name, values in rates.items()}
    return AppendRates(**runs, hash_alone=Samples(tuple(hash_rates)))


def _raw_inserts(
    raw: SqlStore, events: Sequence[Mapping[str, Any]], ids: Sequence[str], first: int, n: int
) -> float:
    """Events/s of plain INSERTs of events[first:first + n], APPEND_BATCH a transaction."""
    rows = [
        (i + 1, ids[i], json.dumps(events[i], separators=(",", ":")), SITE, b"\0" * 32)
        for i in range(first, first + n)
    ]
    t = time.perf_counter()
    for b in range(0, len(rows), APPEND_BATCH):
        with raw.write():
            raw._executemany(
                raw._q("INSERT INTO raw_events VALUES (?, ?, ?, ?, ?)"), rows[b : b + APPEND_BATCH]
            )
    return len(rows) / (time.perf_counter() - t)


def measure_lookup(store: SqlStore, n: int) -> float:
    """Median seconds of one item state lookup among n items."""
    rng = random.Random(1)
    keys = [f"urn:epc:id:sgtin:0614141.107346.{rng.randrange(n)}" for _ in range(LOOKUPS)]
    samples = []
    for key in keys:
        t = time.perf_counter()
        assert store.item_state(key) is not None
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def measure_proofs(ledger: Ledger, n: int) -> tuple[float, float]:
    """(median s of prove(item), median s of the item history query alone)."""
    rng = random.Random(2)
    keys = [f"urn:epc:id:sgtin:0614141.107346.{rng.randrange(n)}" for _ in range(PROOFS)]
    proof_t, history_t = [], []
    for key in keys:
        t = time.perf_counter()
        ledger.store.item_history(key)
        history_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        proof = ledger.prove(key)
        proof_t.append(time.perf_counter() - t)
        assert proof["events"]
    return statistics.median(proof_t), statistics.median(history_t)


def measure_scan(store: SqlStore) -> float:
    """Seconds to read every event row once (the floor under any audit)."""
    t = time.perf_counter()
    for _ in store.iter_events():
        pass
    return time.perf_counter() - t


def _open(url: str) -> SqlStore:
    return PostgresStore(url) if url.startswith("postgresql://") else SqliteStore(url)


def backend_figures(
    name: str, urls: Iterator[str], big: SqlStore, small: SqlStore, keys: list[OrgKey], hash_fn: Any
) -> list[Figure]:
    """All figures of one backend (the big and small ledgers are already loaded)."""
    rates = measure_append(next(urls), next(urls), keys, hash_fn)
    small_lookup = measure_lookup(small, SMALL)
    big_lookup = measure_lookup(big, BIG)
    with Ledger(big, keys, event_hash=hash_fn, block_size=BLOCK_SIZE) as ledger:
        proof, history = measure_proofs(ledger, BIG)
        scan = measure_scan(big)
        t = time.perf_counter()
        report = ledger.audit(strict=True)
        audit_s = time.perf_counter() - t
        assert report.ok, report.summary()
        assert report.events == BIG
    modes = (
        (f"append_batch, batches of {APPEND_BATCH}, durable, incl. CBV hash", rates.calls),
        (
            f"append_batches stream, batches of {APPEND_BATCH}, durable, incl. CBV hash",
            rates.stream,
        ),
        ("append_batches stream, CBV hashes precomputed", rates.precomputed),
        (
            f"append_batches stream, batches of {APPEND_BIG_BATCH}, incl. CBV hash",
            rates.big_batches,
        ),
    )
    gateway_bytes = statistics.mean(
        len(json.dumps(e, separators=(",", ":"))) for e in gateway_events(1_000)
    )
    return [
        *(
            Figure(
                f"{name}: {mode} ({runs.spread})",
                runs.median,
                "events/s",
                f"raw INSERT of same rows, {rates.raw.spread}",
                rates.raw.median,
                target="≥ 20,000/s",
            )
            for mode, runs in modes
        ),
        Figure(  # (what the gateway appends at gate rates; bulk loads are commissioning)
            f"{name}: gate decisions as the gateway writes them (ingest.epcis_of: @context, 5 "
            f"extension fields, {gateway_bytes:.0f} bytes of JSON on average), stream, batches of "
            f"{APPEND_BATCH} ({rates.gateway.spread})",
            rates.gateway.median,
            "events/s",
            f"the same stream of the gate events above, {rates.stream.spread}",
            rates.stream.median,
        ),
        Figure(
            f"{name}: CBV event hash alone ({rates.hash_alone.spread})",
            rates.hash_alone.median,
            "events/s",
        ),
        Figure(
            f"{name}: item state lookup at {BIG:,} items",
            big_lookup * 1e6,
            "µs",
            f"same at {SMALL:,} items",
            small_lookup * 1e6,
            higher_is_better=False,
            target="O(1): ratio ≈ 1",
        ),
        Figure(
            f"{name}: full audit of {BIG:,} events",
            audit_s,
            "s",
            "reading every row once",
            scan,
            higher_is_better=False,
            target="≤ 20 s",
        ),
        Figure(
            f"{name}: inclusion proof of an item's history",
            proof * 1e3,
            "ms",
            "history query alone",
            history * 1e3,
            higher_is_better=False,
            target="≤ 1 ms",
        ),
    ]


def run() -> list[Figure]:
    """All figures of this benchmark, SQLite then PostgreSQL."""
    hash_fn = event_hash_fn()
    figures: list[Figure] = []
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="provgate-bench-ledger-"))
        keystore = Keystore(f"{tmp}/keys")
        keys = [keystore.generate(BRAND), keystore.generate(SITE)]
        server = stack.enter_context(PostgresServer(durable=True))
        sqlite_big = stack.enter_context(SqliteStore(f"{tmp}/big.db"))
        sqlite_small = stack.enter_context(SqliteStore(f"{tmp}/small.db"))
        pg_big = PostgresStore(server.new_url("big"))
        stack.callback(pg_big.close)
        pg_small = stack.enter_context(PostgresStore(server.new_url("small")))
        bulk_load([sqlite_big, pg_big], BIG, keys[0], hash_fn)
        bulk_load([sqlite_small, pg_small], SMALL, keys[0], hash_fn)
        settle([sqlite_big, sqlite_small, pg_big])  # pg_small: a schema of pg_big's database
        sqlite_urls = iter([f"{tmp}/append.db", f"{tmp}/raw.db"])
        figures += backend_figures("SQLite", sqlite_urls, sqlite_big, sqlite_small, keys, hash_fn)
        pg_urls = iter([server.new_url("append"), server.new_url("raw")])
        figures += backend_figures("PostgreSQL", pg_urls, pg_big, pg_small, keys, hash_fn)
    return figures


if __name__ == "__main__":
    print_figures("Provenance ledger: SQLite and PostgreSQL", run())
