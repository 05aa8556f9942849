"""CBV 2.0 event hash, µs an event: this tree's ``gateway.ledger.event_hash`` against the
same module at an older git revision, interleaved in the same minutes on the same events.

``python -m bench.event_hash_speed [--rev HEAD] [--events 20000] [--rounds 7]`` loads the
old module from ``git show REV:gateway/ledger/event_hash.py`` (read-only), checks that both
give the same hash for every event, then times them round after round, in turns of 500
events (alternating which goes first), and prints the median CPU µs an event of each,
their ratio and the load average.

Workloads: ``commissioning`` and ``gate`` (the events of ``bench.bench_ledger``), ``ingest``
(what ``gateway.ingest.epcis_of`` writes for gate decisions: ``@context``, seller, reason
codes, ``pg:``/``pgate:`` extensions), ``*-read`` (the same read back from JSON, as an
audit hashes them) and ``documents`` (every event of the conformance documents with their
context and ignoreFields: the general path).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.bench_ledger import commissioning, gate_event, gateway_events
from gateway.ledger import event_hash as current

MODULE_PATH = "gateway/ledger/event_hash.py"
ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT.parent / "shared" / "conformance" / "epcis-event-hash"

CHUNK = 500  # events timed at a stretch, old and new in turn
#: One hashing job: the event (or prehash inputs) and how a module hashes it.
Job = Callable[[ModuleType], str]


def old_module(rev: str) -> ModuleType:
    """The event hash module as it was at ``rev``, imported under its own name."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{MODULE_PATH}"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="event-hash-old-"))
    path = folder / "event_hash_old.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("event_hash_old", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        path.unlink()
        folder.rmdir()
    return module


def document_jobs() -> list[tuple[Mapping[str, Any], Mapping[str, str], list[str]]]:
    """(event, context, ignore) of every event of the conformance documents."""
    jobs: list[tuple[Mapping[str, Any], Mapping[str, str], list[str]]] = []
    for path in sorted(CONFORMANCE.glob("*.jsonld")):
        doc = json.loads(path.read_text())
        try:
            events = current.document_events(doc)
        except current.EventHashError:
            continue
        context = current.namespaces_from_context(doc.get("@context"))
        ignore = current.document_ignore_fields(doc)
        jobs += [(event, context, ignore) for event in events]
    return jobs


def workloads(n: int) -> dict[str, list[Job]]:
    """Named lists of hashing jobs."""

    def plain(event: Mapping[str, Any]) -> Job:
        return lambda module: str(module.event_hash(event))

    def with_context(
        event: Mapping[str, Any], context: Mapping[str, str], ignore: list[str]
    ) -> Job:
        return lambda module: str(module.event_hash(event, context, ignore=ignore))

    def read_back(event: Mapping[str, Any]) -> Any:
        return json.loads(json.dumps(event, separators=(",", ":")))

    docs = document_jobs()
    ingest = gateway_events(n)
    return {
        "commissioning": [plain(commissioning(i)) for i in range(n)],
        "commissioning-read": [plain(read_back(commissioning(i))) for i in range(n)],
        "gate": [plain(gate_event(i)) for i in range(n)],
        "ingest": [plain(e) for e in ingest],
        "ingest-read": [plain(read_back(e)) for e in ingest],
        "documents": [with_context(*job) for job in docs] * max(1, n // (20 * max(1, len(docs)))),
    }


def check_same(jobs: list[Job], old: ModuleType, new: ModuleType, name: str) -> None:
    """Stop unless both modules give every job the same hash (or the same error type)."""
    for index, job in enumerate(jobs):
        results = []
        for module in (old, new):
            try:
                results.append(job(module))
            except ValueError as exc:  # EventHashError of either module
                results.append(type(exc).__name__)
        if results[0] != results[1]:
            raise SystemExit(f"{name} job {index}: old {results[0]} != new {results[1]}")


def one_round(jobs: list[Job], old: ModuleType, new: ModuleType) -> tuple[float, float]:
    """CPU µs an event of old and new over ``jobs``: chunk by chunk, the two alternating
    which goes first, so that both see the same moments of a busy machine (CPU time: the
    moments this process waits for a core do not count)."""
    spent = {"old": 0.0, "new": 0.0}
    pairs = [("old", old), ("new", new)]
    for number, start in enumerate(range(0, len(jobs), CHUNK)):
        chunk = jobs[start : start + CHUNK]
        for label, module in pairs if number % 2 == 0 else pairs[::-1]:
            started = time.process_time()
            for job in chunk:
                job(module)
            spent[label] += time.process_time() - started
    return spent["old"] / len(jobs) * 1e6, spent["new"] / len(jobs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rev", default="HEAD", help="git revision of the old module")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="", help="comma list of workloads")
    args = parser.parse_args()
    if args.events < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be positive")
    old = old_module(args.rev)
    jobs = workloads(args.events)
    if args.only:
        jobs = {name: jobs[name] for name in args.only.split(",")}
    for name, listed in jobs.items():
        check_same(listed, old, current, name)
    times: dict[str, dict[str, list[float]]] = {name: {"old": [], "new": []} for name in jobs}
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for name, listed in jobs.items():
            before, after = one_round(listed, old, current)
            times[name]["old"].append(before)
            times[name]["new"].append(after)
    print(f"old = {args.rev}, new = working tree; {args.rounds} rounds, median CPU µs an event")
    for name, got in times.items():
        before, after = statistics.median(got["old"]), statistics.median(got["new"])
        print(
            f"{name:18} {len(jobs[name]):6} events  old {before:6.2f}  new {after:6.2f}  "
            f"new/old {after / before:5.2f}  (old {min(got['old']):.2f}-{max(got['old']):.2f},"
            f" new {min(got['new']):.2f}-{max(got['new']):.2f})"
        )
    print(f"load average (1 min) at each round: {' '.join(f'{x:.2f}' for x in loads)}")


if __name__ == "__main__":
    main()
