"""Gateway MQTT verification service vs the no-op responder, 8 gates, ledger of N items.

A SQLite ledger of N commissioned items (``PROVGATE_BENCH_GATEWAY_ITEMS``, default
1,000,000; bulk-loaded as bench_ledger does, then the item projection synced) is served by
``provgate gateway run --mqtt-only`` in a child process, rules and authentication on. Eight
simulated gates (eight MQTT clients of this process) send sealed requests for random items
at QoS 1 and match each reply to its request id. The baseline is the no-op paho responder
(bench/noop_responder.py, its own process) echoing the very same payloads through the same
broker to the same clients, measured in the same run:

- single-item throughput, each gate pipelining 8 requests (target ≥ 0.7× the no-op's);
- round trip p50/p99 with each gate asking one item at a time (target p99 ≤ 2× no-op's);
- batched verification, batches of 500 items (target ≥ 50,000 items/s);
- gateway RSS after the runs (target ≤ 500 MB), beside the idle no-op responder's RSS;
- CPU time the gateway spends per single-item request beside the no-op's: the figure least
  disturbed by other work on the machine.

The no-op responder and the gateway take turns, ``PROVGATE_BENCH_GATEWAY_ROUNDS`` (2)
rounds each, and every figure is the best of its rounds. ``PROVGATE_BENCH_GATEWAY_WORKERS``
(1) sets ``mqtt.workers`` of the gateway.

Batches are measured once more with ``PROVGATE_BENCH_GATEWAY_SCALE_WORKERS`` (2) workers
sharing the load, the deployment docs/gateway.md recommends for a batch-heavy site on a
host with that many cores (0 skips it): one worker answers on one thread, so its batch
rate is bounded by one core whatever the host has.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import select
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt
import yaml

from bench import noop_responder
from bench.bench_ledger import bulk_load
from bench.gateway_process import GatewayProcess
from bench.report import Figure, percentile, print_figures
from gateway.items import ItemProjection
from gateway.ledger.event_hash import event_hash
from gateway.ledger.signing import Keystore
from gateway.ledger.sqlite_store import SqliteStore
from gateway.registry import OrgRole, Registry
from gatewire.auth import derive_gate_key, seal
from gatewire.identity import parse_item_id
from gatewire.item import CanonicalItemId
from gatewire.messages import BatchItem, VerifyBatchRequest, VerifyRequest
from gatewire.mqtt import BrokerAddress, connect, make_client
from gatewire.topics import GateTopics
from simulators.broker import MosquittoBroker

ITEMS: Final = int(os.environ.get("PROVGATE_BENCH_GATEWAY_ITEMS", "1000000"))
WORKERS: Final = int(os.environ.get("PROVGATE_BENCH_GATEWAY_WORKERS", "1"))
ROUNDS: Final = int(os.environ.get("PROVGATE_BENCH_GATEWAY_ROUNDS", "2"))
SCALE_WORKERS: Final = int(os.environ.get("PROVGATE_BENCH_GATEWAY_SCALE_WORKERS", "2"))
GATES: Final = 8
# Requests are sealed just before each phase and must arrive within the gateway's 30 s
# freshness window: phases are kept short enough for a slow machine.
PIPELINED: Final = 8_000
PIPELINE_WINDOW: Final = 8
SINGLE: Final = 2_000
BATCHES: Final = 80
BATCH_SIZE: Final = 500
BATCH_WINDOW: Final = 1
QOS: Final = 1
BRAND: Final = "brand-acme"
PREFIX: Final = "0614141"
SITE: Final = "bench"
SITE_ORG: Final = "site-dc1"
_ID_IN_REQUEST: Final = re.compile(rb'"id":"([0-9a-f]{32})"')
_ID_IN_VERDICT: Final = re.compile(rb'"request_id":"([0-9a-f]{32})"')


def _item(n: int) -> CanonicalItemId:
    parsed = parse_item_id(f"urn:epc:id:sgtin:{PREFIX}.107346.{n}").item
    assert parsed is not None
    return parsed


# ---- the ledger ---------------------------------------------------------------------------


def build_ledger(directory: Path, n: int) -> tuple[str, Path, float]:
    """A SQLite ledger of ``n`` commissioned items, projection synced; (url, keys, load s)."""
    url = str(directory / "ledger.db")
    keys = directory / "keys"
    key = Keystore(keys).load_or_generate(BRAND)
    Keystore(keys).load_or_generate(SITE_ORG)
    started = time.perf_counter()
    store = SqliteStore(url)
    try:
        bulk_load([store], n, key, event_hash)
        registry = Registry(store)
        registry.add_org(BRAND, "Acme", OrgRole.BRAND_OWNER)
        registry.add_prefix(BRAND, PREFIX)
        ItemProjection(store).sync()
    finally:
        store.close()
    return url, keys, time.perf_counter() - started


# ---- the load: eight gates ------------------------------------------------------------------


@dataclass
class Phase:
    """Round trips (s) and wall time of one run over all gates."""

    latencies: list[float]
    elapsed: float
    replies: int

    @property
    def rate(self) -> float:
        """Replies per second."""
        return self.replies / self.elapsed if self.elapsed else 0.0


class GateClient:
    """One simulated gate: publishes pre-sealed payloads, times the reply to each id.

    Driven by :func:`run_gates` from one thread (no paho loop thread): eight clients with
    a thread each would spend their time queueing for the GIL, not measuring the broker.
    """

    def __init__(
        self, url: str, name: str, request_topic: str, reply_topic: str, id_of: re.Pattern[bytes]
    ) -> None:
        self.topic = request_topic
        self._id_of = id_of
        self.sent: dict[bytes, float] = {}
        self.latencies: list[float] = []
        self.errors: list[bytes] = []
        self.client = make_client(f"bench-gate-{name}-{os.getpid()}")
        self.client.on_message = self._on_reply
        acked: list[int] = []
        self.client.on_subscribe = lambda *args: acked.append(1)
        connect(self.client, BrokerAddress.from_url(url))
        self.client.subscribe(reply_topic, qos=QOS)
        deadline = time.monotonic() + 10
        while not acked:
            self.client.loop(timeout=0.1)
            if time.monotonic() > deadline:
                raise RuntimeError("reply subscription not acknowledged")

    def _on_reply(self, c: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        if b'"type":"error"' in msg.payload:
            self.errors.append(bytes(msg.payload[:300]))
            return
        found = self._id_of.search(msg.payload)
        if found is not None:
            sent = self.sent.pop(found.group(1), None)
            if sent is not None:
                self.latencies.append(now - sent)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()


def run_gates(
    clients: list[GateClient], payloads: list[list[tuple[bytes, bytes]]], window: int
) -> Phase:
    """Every gate sends its payloads, keeping ``window`` outstanding; wall time until the
    last reply. One thread: publish what the windows allow, then read what arrived."""
    socks: dict[socket.socket, GateClient] = {}
    for c in clients:
        sock = c.client.socket()
        assert isinstance(sock, socket.socket)
        socks[sock] = c
    todo = [list(reversed(p)) for p in payloads]
    for c in clients:
        c.latencies, c.errors = [], []
    started = time.perf_counter()
    deadline = time.monotonic() + 120
    while True:
        busy = False
        for c, queue in zip(clients, todo, strict=True):
            while queue and len(c.sent) < window:
                request_id, payload = queue.pop()
                c.sent[request_id] = time.perf_counter()
                c.client.publish(c.topic, payload, qos=QOS)
            busy = busy or bool(queue) or bool(c.sent)
        if not busy:
            break
        if time.monotonic() > deadline or any(c.errors for c in clients):
            break
        writers = [s for s, c in socks.items() if c.client.want_write()]
        readable, writable, _ = select.select(list(socks), writers, [], 0.05)
        for sock in writable:
            socks[sock].client.loop_write()
        for sock in readable:
            socks[sock].client.loop_read(max_packets=100)
        for c in clients:
            c.client.loop_misc()
    elapsed = time.perf_counter() - started
    errors = [e for c in clients for e in c.errors]
    if errors:
        raise RuntimeError(f"{len(errors)} error replies, the first: {errors[0]!r}")
    missing = sum(len(c.sent) for c in clients)
    if missing:
        raise TimeoutError(f"{missing} replies missing")
    latencies = [x for c in clients for x in c.latencies]
    return Phase(latencies, elapsed, len(latencies))


class Requests:
    """Sealed requests of the eight gates for random items of the ledger."""

    def __init__(self, secret: bytes, n_items: int) -> None:
        self.keys = {g: derive_gate_key(secret, SITE, g) for g in gate_names()}
        self.n_items = n_items
        self.rng = random.Random(5)

    def singles(self, per_gate: int) -> list[list[tuple[bytes, bytes]]]:
        """``per_gate`` single-item requests per gate, sealed now (fresh ts)."""
        out = []
        for gate, key in self.keys.items():
            batch = []
            for _ in range(per_gate):
                item = _item(self.rng.randrange(self.n_items))
                request = VerifyRequest(site=SITE, gate=gate, item=item, sources=["rfid"])
                batch.append((request.id.encode(), seal(request, key)))
            out.append(batch)
        return out

    def batches(self, per_gate: int) -> list[list[tuple[bytes, bytes]]]:
        """``per_gate`` batch requests of BATCH_SIZE items per gate, sealed now."""
        out = []
        for gate, key in self.keys.items():
            batch = []
            for _ in range(per_gate):
                numbers = self.rng.sample(range(self.n_items), BATCH_SIZE)  # a pallet: distinct
                items = [BatchItem(index=i, item=_item(n)) for i, n in enumerate(numbers)]
                request = VerifyBatchRequest(site=SITE, gate=gate, items=items)
                batch.append((request.id.encode(), seal(request, key)))
            out.append(batch)
        return out


def gate_names() -> list[str]:
    """The simulated gates."""
    return [f"in-{i:02d}" for i in range(1, GATES + 1)]


def connect_gates(url: str, gateway: bool) -> list[GateClient]:
    """Eight clients, talking to the gateway's topics or to the no-op responder's."""
    clients = []
    for gate in gate_names():
        if gateway:
            topics = GateTopics(SITE, gate)
            clients.append(
                GateClient(url, gate, topics.verify_request, topics.verdict, _ID_IN_VERDICT)
            )
        else:
            clients.append(
                GateClient(
                    url,
                    gate,
                    noop_responder.REQUEST_PREFIX + gate,
                    noop_responder.REPLY_PREFIX + gate,
                    _ID_IN_REQUEST,
                )
            )
    return clients


@dataclass
class Measured:
    """The phases of one responder in one round."""

    pipelined: Phase
    single: Phase
    batched: Phase
    cpu_per_request: float
    """CPU seconds the responder's processes spent per request of the pipelined phase."""
    rss_mb: float


def measure(url: str, requests: Requests, gateway: bool, pid: int) -> Measured:
    """Warm up, then the three phases, against the gateway or the no-op responder."""
    clients = connect_gates(url, gateway)
    try:
        run_gates(clients, requests.singles(100), PIPELINE_WINDOW)  # warm-up
        cpu = cpu_s(pid)
        pipelined = run_gates(clients, requests.singles(PIPELINED // GATES), PIPELINE_WINDOW)
        cpu = cpu_s(pid) - cpu
        single = run_gates(clients, requests.singles(SINGLE // GATES), 1)
        batched = run_gates(clients, requests.batches(BATCHES // GATES), BATCH_WINDOW)
    finally:
        for c in clients:
            c.close()
    return Measured(pipelined, single, batched, cpu / max(1, pipelined.replies), rss_mb(pid))


def measure_batches(url: str, requests: Requests) -> float:
    """Best batch rate (batches/s) of ROUNDS rounds against the gateway, after a warm-up."""
    clients = connect_gates(url, True)
    try:
        run_gates(clients, requests.batches(2), BATCH_WINDOW)  # warm-up
        return max(
            run_gates(clients, requests.batches(BATCHES // GATES), BATCH_WINDOW).rate
            for _ in range(ROUNDS)
        )
    finally:
        for c in clients:
            c.close()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def cpu_s(pid: int) -> float:
    """CPU time (user + system) of a process and its children (extra workers), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_s(child) for child in _children(pid))


def rss_mb(pid: int) -> float:
    """Resident set size of a process and its children (extra workers), MB."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    return total + sum(rss_mb(child) for child in _children(pid))


def write_config(
    directory: Path,
    url: str,
    ledger: str,
    keys: Path,
    secret: bytes,
    workers: int = WORKERS,
    name: str = "gateway.yaml",
) -> Path:
    """The gateway config of the run, ``directory / name`` (bench_agent reads the default)."""
    path = directory / name
    path.write_text(
        yaml.safe_dump(
            {
                "site": SITE,
                "site_org": SITE_ORG,
                "site_secret": secret.hex(),
                "ledger_url": ledger,
                "keystore_dir": str(keys),
                "mqtt": {"url": url, "qos": QOS, "workers": workers},
                "http": {"enabled": False},
            }
        )
    )
    return path


# ---- figures ------------------------------------------------------------------------------


def run() -> list[Figure]:
    """All figures of this benchmark: each the best of ROUNDS rounds, the no-op responder
    and the gateway taking turns (on a shared machine the load changes within a run)."""
    secret = secrets.token_bytes(32)
    noop: list[Measured] = []
    gw: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="provgate-bench-gw-") as tmp:
        directory = Path(tmp)
        ledger, keys, load_s = build_ledger(directory, ITEMS)
        print(f"ledger of {ITEMS:,} items loaded and projected in {load_s:.0f} s", file=sys.stderr)
        requests = Requests(secret, ITEMS)
        with MosquittoBroker() as broker:
            responder = noop_responder.ResponderProcess(broker.url, QOS)
            config = write_config(directory, broker.url, ledger, keys, secret)
            gateway = GatewayProcess(config, directory / "gateway.log")
            try:
                for _ in range(ROUNDS):
                    noop.append(measure(broker.url, requests, False, _child_pid(responder)))
                    gw.append(measure(broker.url, requests, True, gateway.proc.pid))
            finally:
                responder.close()
                gateway.close()
            scaled = scaled_rss = 0.0
            if SCALE_WORKERS > 1:
                scaled_name = "gateway-scaled.yaml"
                config = write_config(
                    directory, broker.url, ledger, keys, secret, SCALE_WORKERS, scaled_name
                )
                gateway = GatewayProcess(config, directory / "gateway-scaled.log")
                try:
                    scaled = measure_batches(broker.url, requests)
                    scaled_rss = rss_mb(gateway.proc.pid)
                finally:
                    gateway.close()
            for line in (directory / "gateway.log").read_text().splitlines():
                if "stopped; counters" in line:  # how many requests each verify call took
                    print(line, file=sys.stderr)
    items = f"{ITEMS:,} items, {WORKERS} worker{'s' if WORKERS > 1 else ''}"

    def best_rate(runs: list[Measured], phase: str) -> float:
        return max(float(getattr(m, phase).rate) for m in runs)

    def best_p(runs: list[Measured], pct: float) -> float:
        return min(percentile(m.single.latencies, pct) for m in runs) * 1e3

    scaled_figures = []
    if SCALE_WORKERS > 1:
        scaled_figures = [
            Figure(
                f"batched verification, batches of {BATCH_SIZE}, 8 gates, {SCALE_WORKERS} workers",
                scaled * BATCH_SIZE,
                "items/s",
                "no-op echo of the batches",
                best_rate(noop, "batched") * BATCH_SIZE,
                target="≥ 50,000 items/s",
            ),
            Figure(
                f"gateway RSS after the batches ({ITEMS:,} items, {SCALE_WORKERS} workers)",
                scaled_rss,
                "MB",
                "no-op responder RSS",
                noop[-1].rss_mb,
                higher_is_better=False,
                target="≤ 500 MB",
            ),
        ]

    return [
        Figure(
            f"single-item verification, 8 gates × window {PIPELINE_WINDOW} ({items})",
            best_rate(gw, "pipelined"),
            "req/s",
            "no-op responder",
            best_rate(noop, "pipelined"),
            target="≥ 0.70×",
        ),
        Figure(
            "CPU per single-item request, responder process(es)",
            min(m.cpu_per_request for m in gw) * 1e6,
            "µs",
            "no-op responder",
            min(m.cpu_per_request for m in noop) * 1e6,
            higher_is_better=False,
        ),
        Figure(
            "verification round trip p50, 8 gates × 1 outstanding",
            best_p(gw, 50),
            "ms",
            "no-op p50",
            best_p(noop, 50),
            higher_is_better=False,
        ),
        Figure(
            "verification round trip p99, 8 gates × 1 outstanding",
            best_p(gw, 99),
            "ms",
            "no-op p99",
            best_p(noop, 99),
            higher_is_better=False,
            target="≥ 0.50× (p99 ≤ 2× no-op)",
        ),
        Figure(
            f"batched verification, batches of {BATCH_SIZE}, 8 gates",
            best_rate(gw, "batched") * BATCH_SIZE,
            "items/s",
            "no-op echo of the batches",
            best_rate(noop, "batched") * BATCH_SIZE,
            target="≥ 50,000 items/s",
        ),
        Figure(
            f"gateway RSS after the runs ({items})",
            gw[-1].rss_mb,
            "MB",
            "no-op responder RSS",
            noop[-1].rss_mb,
            higher_is_better=False,
            target="≤ 500 MB",
        ),
        *scaled_figures,
    ]


def _child_pid(responder: noop_responder.ResponderProcess) -> int:
    return responder._proc.pid  # the responder's own process


if __name__ == "__main__":
    print_figures(__doc__.splitlines()[0] if __doc__ else "gateway", run())
