"""PostgreSQL appends alone, run after run: one fresh durable server per run, so a list of
runs shows how much the machine's own speed moves the figure.

``python -m bench.ledger_append_runs [--rounds 3] [--events 20000] [--batch 500]`` alternates
one ``append_batch`` call per batch with an ``append_batches`` stream and prints each run:
events/s, the client's CPU per event, the load. For a before/after comparison run it
again with ``PYTHONPATH`` pointing at a checkout of the older commit (whose ledger may
only have ``append_batch``: pass ``--modes calls``), alternating the two in the same minutes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from bench.bench_ledger import BLOCK_SIZE, BRAND, SITE, event_hash_fn, gate_event
from gateway.ledger.ledger import Ledger
from gateway.ledger.signing import Keystore
from tests.support.postgres import PostgresServer

MODES = ("calls", "stream")


def one_run(mode: str, events: int, batch: int) -> tuple[float, float]:
    """(events/s, client CPU µs an event) of ``events`` gate events appended in batches."""
    hash_fn = event_hash_fn()
    docs = [gate_event(i) for i in range(events)]
    batches = [docs[b : b + batch] for b in range(0, events, batch)]
    with tempfile.TemporaryDirectory() as tmp, PostgresServer(durable=True) as server:
        keystore = Keystore(f"{tmp}/keys")
        keys = [keystore.generate(BRAND), keystore.generate(SITE)]
        url = server.new_url("append")
        with Ledger.open(url, keys, event_hash=hash_fn, block_size=BLOCK_SIZE) as ledger:
            started, cpu = time.perf_counter(), time.process_time()
            if mode == "stream":
                for _ in ledger.append_batches(batches, SITE):
                    pass
            else:
                for part in batches:
                    ledger.append_batch(part, SITE)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return events / wall, cpu / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--modes", default=",".join(MODES), help="calls,stream")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES) or args.rounds < 1 or args.events < 1 or args.batch < 1:
        parser.error(f"--modes is a comma list of {MODES}; counts must be positive")
    for _ in range(args.rounds):
        for mode in modes:
            rate, cpu = one_run(mode, args.events, args.batch)
            print(
                f"{time.strftime('%H:%M:%S')} {mode:6} {rate:8.0f} events/s  client "
                f"{cpu:5.1f} µs/event  load {os.getloadavg()[0]:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
