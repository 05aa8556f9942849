"""Full ledger audits, old code against new, interleaved in the same minutes.

``python -m bench.audit_runs [--events 200000] [--rounds 3] [--workers 0,2]
[--backends sqlite,postgres] [--old REV] [--paired N]`` bulk-loads ``--events``
commissioning events once into a durable PostgreSQL server and an SQLite file, then audits
each database with the audit module of ``--old`` (default HEAD, read with ``git show``;
on PostgreSQL with the event reads of that revision's store) and with the working tree's,
alternating the order round by round. Each line: wall seconds, µs an event, the CPU of
this process and its workers and of the PostgreSQL server, and the load; then medians.

``--paired N`` first audits one range of RANGE_SIZE events in this process N times with
each version, alternately, and prints the medians of the CPU each took an event and of
the new/old ratio of each pair: a figure that the other processes on a busy machine move
much less than the wall time of whole audits.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.bench_ledger import SITE, _open, bulk_load, event_hash_fn
from gateway.ledger import audit as new_audit
from gateway.ledger.pg_store import PostgresStore
from gateway.ledger.signing import Keystore
from gateway.ledger.sqlite_store import SqliteStore
from gateway.ledger.store import SqlStore
from tests.support.postgres import PostgresServer

_TICK = os.sysconf("SC_CLK_TCK")
_ROOT = Path(__file__).resolve().parent.parent


def _git_show(rev: str, path: str) -> str:
    return subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=_ROOT, capture_output=True, check=True, text=True
    ).stdout


def old_audit(rev: str, where: Path) -> ModuleType:
    """gateway/ledger/audit.py as of ``rev``, imported as module ``bench_audit_old`` (in
    sys.modules, so worker processes find its functions)."""
    path = where / "bench_audit_old.py"
    path.write_text(_git_show(rev, "gateway/ledger/audit.py"))
    spec = importlib.util.spec_from_file_location("bench_audit_old", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_audit_old"] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def base_event_reads(classes: list[type[SqlStore]]) -> Iterator[None]:
    """Stores of ``classes`` reading event rows as SqlStore does, for an old revision
    whose stores have no raw_events_between of their own (forked workers inherit it)."""
    name = "raw_events_between"
    own = {cls: cls.__dict__[name] for cls in classes if name in cls.__dict__}
    for cls in own:
        delattr(cls, name)
    try:
        yield
    finally:
        for cls, method in own.items():
            setattr(cls, name, method)


def _old_readers(rev: str) -> list[type[SqlStore]]:
    """The store classes whose raw_events_between the old revision does not have."""
    files: dict[type[SqlStore], str] = {
        PostgresStore: "pg_store.py",
        SqliteStore: "sqlite_store.py",
    }
    return [
        cls
        for cls, name in files.items()
        if "def raw_events_between" not in _git_show(rev, f"gateway/ledger/{name}")
    ]


def server_cpu(pid: int | None) -> float:
    """CPU seconds of a postmaster, its live backends and those it has reaped."""
    if pid is None:
        return 0.0
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / _TICK


def own_cpu() -> float:
    """CPU seconds of this process and its reaped children (the audit's workers)."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _block_lists(module: ModuleType, store: SqlStore, hash_fn: Any) -> Any:
    """What a range auditor of ``module`` is given: each signer's blocks."""
    whole = module._Auditor(store, hash_fn, module.item_keys, True, None)
    if hasattr(module, "_blocks_and_tree_digests"):
        return whole.block_lists(module._blocks_and_tree_digests(store))
    return whole.check_block_headers()


def paired_ranges(
    variants: dict[str, ModuleType],
    store: SqlStore,
    hash_fn: Any,
    pairs: int,
    old_readers: list[type[SqlStore]],
) -> None:
    """CPU µs an event of one range audited in this process, old and new alternately."""
    size = new_audit.RANGE_SIZE
    per: dict[str, list[float]] = defaultdict(list)
    ratios: list[float] = []
    backend = "postgres" if isinstance(store, PostgresStore) else "sqlite"
    for i in range(pairs):
        order = list(variants) if i % 2 == 0 else list(reversed(variants))
        took: dict[str, float] = {}
        for name in order:
            module = variants[name]
            with store.snapshot():
                blocks = _block_lists(module, store, hash_fn)
                auditor = module._RangeAuditor(store, blocks, hash_fn, module.item_keys, True)
                reads = base_event_reads(old_readers if name == "old" else [])
                with reads:
                    cpu = time.thread_time()
                    result = auditor.run(1, size)
                    took[name] = (time.thread_time() - cpu) / size * 1e6
            if result.report.failures or result.report.events != size:
                raise SystemExit(f"{name} {backend}: {result.report.summary()}")
            per[name].append(took[name])
        if len(took) == 2:
            ratios.append(took["new"] / took["old"])
    figures = "  ".join(f"{n} {statistics.median(v):5.2f}" for n, v in per.items())
    ratio = f"  new/old {statistics.median(ratios):.3f}" if ratios else ""
    print(
        f"paired {backend:8} {pairs}× {size} events: CPU µs/event (median) {figures}{ratio}  "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="0,2", help="comma list of worker counts")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--old", default="HEAD", help="git revision of the old audit.py")
    parser.add_argument("--new-only", action="store_true", help="skip the old audit")
    parser.add_argument("--paired", type=int, default=0, help="paired range runs first")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    backends = args.backends.split(",")
    if args.events < new_audit.RANGE_SIZE or args.rounds < 0 or args.paired < 0:
        parser.error(f"--events ≥ {new_audit.RANGE_SIZE}; --rounds, --paired ≥ 0")
    if not set(backends) <= {"sqlite", "postgres"}:
        parser.error("--backends: sqlite,postgres")
    hash_fn = event_hash_fn()
    old_readers = _old_readers(args.old)
    with tempfile.TemporaryDirectory() as tmp, PostgresServer(durable=True) as server:
        variants = {"new": new_audit}
        if not args.new_only:
            variants = {"old": old_audit(args.old, Path(tmp)), **variants}
        key = Keystore(f"{tmp}/keys").generate(SITE)
        urls = {"sqlite": f"{tmp}/audit.db", "postgres": server.new_url("audit")}
        stores = {b: _open(urls[b]) for b in backends}
        started = time.perf_counter()
        bulk_load(list(stores.values()), args.events, key, hash_fn)
        print(f"loaded {args.events} events in {time.perf_counter() - started:.0f} s", flush=True)
        pg = stores.get("postgres")
        if isinstance(pg, PostgresStore):
            pg.connection.execute("VACUUM ANALYZE")
            pg.connection.execute("CHECKPOINT")  # the load's writes not flushed during a run
        if args.paired:
            for store in stores.values():
                paired_ranges(variants, store, hash_fn, args.paired, old_readers)
        times: dict[tuple[str, int, str], list[float]] = defaultdict(list)
        for round_no in range(args.rounds):
            order = list(variants) if round_no % 2 == 0 else list(reversed(variants))
            for backend, store in stores.items():
                for w in workers:
                    for name in order:
                        reads = base_event_reads(old_readers if name == "old" else [])
                        cpu, srv = own_cpu(), server_cpu(server.pid)
                        t = time.perf_counter()
                        with reads:
                            report = variants[name].audit(store, hash_fn, strict=True, workers=w)
                        wall = time.perf_counter() - t
                        time.sleep(0.3)  # the server reaps the workers' backends
                        cpu, srv = own_cpu() - cpu, server_cpu(server.pid) - srv
                        if not report.ok or report.events != args.events:
                            raise SystemExit(f"{name} {backend}: {report.summary()}")
                        times[backend, w, name].append(wall)
                        print(
                            f"{time.strftime('%H:%M:%S')} {backend:8} workers={w} {name:3} "
                            f"{wall:6.2f} s {wall / args.events * 1e6:5.1f} µs/event  client "
                            f"CPU {cpu:6.2f} s  server CPU {srv:5.2f} s  "
                            f"load {os.getloadavg()[0]:.1f}",
                            flush=True,
                        )
        for store in stores.values():
            store.close()
    for (backend, w, name), walls in sorted(times.items()):
        med = statistics.median(walls)
        print(
            f"median {backend:8} workers={w} {name:3} {med:6.2f} s "
            f"{med / args.events * 1e6:5.1f} µs/event ({len(walls)} runs)"
        )


if __name__ == "__main__":
    main()
