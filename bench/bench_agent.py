"""Gate agent on one core, vision on: items decided per second, beside the bare label check.

One :class:`~edge_agent.agent.GateAgent` runs in this process, pinned to one core and built
as ``provgate agent run`` builds it: a gate profile (inbound, photo eye, barcode + RFID +
one camera, the shipped label model on one thread, journal in a temp dir at the profile's
default durability ``full``), SimGateIo, a VisionWorker around a LabelChecker, the outbox.
mosquitto and the real gateway (``provgate gateway run --mqtt-only`` on a SQLite ledger of
commissioned items) run in their own processes, pinned to the other core. The main thread
plays the drivers at a fixed offered rate: per item a photo-eye edge
(``SimGateIo.simulate_item``), a barcode scan and an RFID sighting parsed as their drivers
parse them, and one camera frame.

Labels are rendered before timing, with the ledger, by a child process (about 15 ms each,
too slow to render one per item): a pool as large as the frames the agent keeps, so the
pool is the frame memory a camera-fed agent holds. Item ``k`` is commissioned item
``k % POOL``: its barcode, RFID tag and label DataMatrix all name it. So that the gateway does
not see the same items received again and again (and rightly refuse them as copies), the
outbox sends the gate events to a second mosquitto that nobody reads: the agent's outbox
work is unchanged, the ledger's state is not.

The first offered rate is the target (200 items/s); then higher rates while they are kept
up, or lower ones until one is. Per rate: decided items/s after the first second, the share
decided in time (not late, verified, label checked: anything else is a fail-closed HOLD),
scan-to-decision p50/p99 from the journal, CPU per item of the whole process (the drivers'
callbacks included) and per thread (stderr). CPU time is the figure least disturbed by other
load: "capacity" is what one idle core could decide with every label checked, 1 ÷ (CPU per
item outside the vision thread + the vision thread's CPU per check). Baseline, same run and
core: ``LabelChecker.check`` alone on the same frames (best of before and after the agent).
Peak RSS is this process's VmHWM, reset before the agent starts, read after the target-rate
phase (the figure held to the target) and again after every rate tried (overloaded rates
grow the queues), beside its RSS just before (imports, model, frame pool).

``PROVGATE_BENCH_AGENT_RATES`` (``200,300,400``: the target, then the steps up),
``PROVGATE_BENCH_AGENT_DOWN_RATES`` (``150,100,50``), ``PROVGATE_BENCH_AGENT_SECONDS`` (8,
the target) and ``PROVGATE_BENCH_AGENT_STEP_SECONDS`` (4, the others) scale the run;
``PROVGATE_BENCH_AGENT_DURABILITY`` (``full`` or ``normal``) overrides the journal's, and
``PROVGATE_BENCH_AGENT_PYSPY=FILE`` records the target rate with py-spy (raw stacks).
``PROVGATE_BENCH_AGENT_DEMO=SECONDS`` adds the third target, scan-to-decision p99 of
``provgate demo`` at 20 items/s × 4 gates (:func:`demo_latency`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from bench.gateway_process import GatewayProcess
from bench.report import Figure, percentile, print_figures
from edge_agent.agent import _FRAMES_KEPT, GateAgent
from edge_agent.outbox import Outbox
from edge_agent.profile import GateProfile, parse_gate_profile
from edge_agent.vision.checker import LabelChecker
from edge_agent.vision.worker import VisionWorker
from gatewire.auth import derive_gate_key
from gatewire.epc import encode_sgtin_hex
from gatewire.identity import parse_epc_hex, parse_item_id
from hardware.barcode.events import ScanEvent
from hardware.camera.frames import Frame
from hardware.gate_io.sim import SimGateIo
from hardware.registry import build_device
from hardware.rfid.sightings import TagSighting
from simulators.broker import MosquittoBroker

Image = NDArray[np.uint8]
Row = tuple[float, float | None, int | None, str | None, str | None, str | None]

RATES: Final = tuple(
    float(r) for r in os.environ.get("PROVGATE_BENCH_AGENT_RATES", "200,300,400").split(",")
)
SECONDS: Final = float(os.environ.get("PROVGATE_BENCH_AGENT_SECONDS", "8"))
STEP_SECONDS: Final = float(os.environ.get("PROVGATE_BENCH_AGENT_STEP_SECONDS", "4"))
DOWN_RATES: Final = tuple(
    float(r) for r in os.environ.get("PROVGATE_BENCH_AGENT_DOWN_RATES", "150,100,50").split(",")
)
DURABILITY: Final = os.environ.get("PROVGATE_BENCH_AGENT_DURABILITY")  # None: the profile's
PYSPY: Final = os.environ.get("PROVGATE_BENCH_AGENT_PYSPY")  # raw py-spy profile of rate 1
DEMO_SECONDS: Final = float(os.environ.get("PROVGATE_BENCH_AGENT_DEMO", "0") or 0)
TARGET_RATE: Final = 200.0
TARGET_IN_TIME: Final = 0.999
TARGET_RSS_MB: Final = 150.0
POOL: Final = _FRAMES_KEPT  # as many frames as the agent keeps: the camera memory it holds
LEDGER_ITEMS: Final = 10_000
WARMUP_RATE, WARMUP_S = 100.0, 1.0
STEADY_AFTER_S: Final = 1.0  # decided items/s counts from this long after a rate starts
DRAIN_S: Final = 30.0
BASELINE_CHECKS: Final = 256
SITE, GATE, SITE_ORG = "bench", "in-01", "site-dc1"  # as bench_gateway's config
EPC_PREFIX: Final = "urn:epc:id:sgtin:0614141.107346."  # bench_ledger's commissioned items
SEED: Final = 7_070
_REPO: Final = Path(__file__).resolve().parents[1]
_LATE_INPUTS: Final = ("triggers_late", "reads_late", "frames_late")
_ON_MERITS: Final = frozenset({"inspection.requested", "vision.suspect"})
"""Reasons a genuine item may be held or rejected for without the gate failing."""
_DEGRADED: Final = frozenset(
    {
        "decision.late",
        "verify.timeout",
        "verify.offline",
        "verify.error",
        "verify.missing",
        "vision.missing",
        "vision.unreadable",
        "journal.failed",
        "read.none",
        "read.mismatch",
        "window.late_trigger",
    }
)


# ---- the gate: profile, ids, processes --------------------------------------------------


def gate_profile(directory: Path, broker_url: str) -> GateProfile:
    """An inbound gate at 2 m/s: 500 ms scan-to-reject, decisions due 420 ms after the eye.
    The device ports are never opened: this process plays the drivers."""
    data = {
        "gate": {"site": SITE, "id": GATE, "kind": "inbound", "key_file": str(directory / "key")},
        "devices": {
            "scanner": {"type": "serial_scanner", "port": "/dev/null"},
            "rfid": {"type": "thingmagic_mercury", "port": "/dev/null"},
            "cameras": [{"type": "opencv_camera", "name": "label", "source": "/dev/null"}],
            "gate_io": {"type": "sim_gate_io"},
        },
        "belt": {"speed_m_s": 2.0, "scan_to_reject_m": 1.0, "window_m": 0.1, "actuation_ms": 30},
        "verification": {"mqtt_url": broker_url, "batch_max": 32, "batch_wait_ms": 5},
        "vision": {"num_threads": 1},
        "journal": {
            "path": str(directory / "journal.db"),
            **({"durability": DURABILITY} if DURABILITY else {}),
        },
    }
    return parse_gate_profile(data, "<bench_agent>", base=_REPO / "firmware_configs" / "gates")


def _gtin() -> str:
    item = parse_item_id(EPC_PREFIX + "0").item
    assert item is not None
    return item.gtin


def label_id(n: int) -> str:
    """Commissioned item ``n`` as the label's DataMatrix carries it."""
    return f"(01){_gtin()}(21){n}"


def prepare(directory: Path, items: int, broker_url: str, secret: bytes) -> None:
    """Child process: the ledger of ``items`` commissioned items, the gateway's config, and
    the pool of rendered labels of items 0..POOL-1 (``frames.npy``)."""
    from bench.bench_gateway import build_ledger, write_config
    from simulators.camera import label_frames

    started = time.perf_counter()
    ledger, keys, _ = build_ledger(directory, items)
    write_config(directory, broker_url, ledger, keys, secret)
    render = label_frames([label_id(n) for n in range(POOL)], SEED, frames_per_item=1)
    np.save(directory / "frames.npy", np.stack([render(n) for n in range(POOL)]))
    print(f"{items:,} items and {POOL} labels in {time.perf_counter() - started:.1f} s")


def run_prepare(directory: Path, items: int, broker_url: str, secret: bytes) -> list[Image]:
    """:func:`prepare` in a child (its memory is not the agent's); the frames."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_agent",
            "--prepare",
            str(directory),
            str(items),
            broker_url,
            secret.hex(),
        ],
        cwd=_REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench_agent: preparing failed: {done.stderr[-2000:]}")
    print(f"bench_agent: {done.stdout.strip()}", file=sys.stderr)
    stacked = np.load(directory / "frames.npy")
    return [stacked[i] for i in range(len(stacked))]


def start_pyspy(output: str, seconds: float, cpus: set[int]) -> subprocess.Popen[bytes] | None:
    """py-spy recording this process for ``seconds`` (raw stacks), itself on ``cpus``."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)  # this thread only: the child inherits it
    try:
        return subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(os.getpid()),
                "--duration",
                str(round(seconds)),
                "--rate",
                "200",
                "--format",
                "raw",
                "-o",
                output,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        print(f"bench_agent: py-spy not started: {exc}", file=sys.stderr)
        return None
    finally:
        os.sched_setaffinity(0, mine)


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of process ``pid`` (threads made later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid``; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by thread name
    (paho's threads, one per client, summed under "paho")."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        name = "paho" if thread.name.startswith("paho") else thread.name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


class CountingHandler(logging.Handler):
    """Counts the agent's log records by message template instead of printing thousands
    of them (records are still made: their cost stays in the figures)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[str(record.msg)] = self.counts.get(str(record.msg), 0) + 1

    def summary(self) -> str:
        """The messages logged and how often, most frequent first."""
        top = sorted(self.counts.items(), key=lambda kv: -kv[1])[:5]
        return "; ".join(f"{n} × {msg!r}" for msg, n in top) or "none"


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# ---- the load ---------------------------------------------------------------------------


@dataclass
class Phase:
    """One offered rate: what was fed, when, and what it cost."""

    rate: float
    fed: int
    wall_start: float
    wall_end: float
    cpu_s: float
    vision_busy: int
    vision_checks: int
    """Label checks the vision worker completed during the phase."""
    drained: bool
    threads: dict[str, float]
    """CPU seconds per thread name during the phase."""
    peers: dict[str, float]
    """CPU seconds of the broker and the gateway (other core) during the phase."""
    assembly: dict[str, int]
    """The assembler's late-input counters during the phase (inputs the agent took after
    their read grace had passed)."""
    rows: list[Row]
    """Journal rows of the phase: scanned_at, decided_at, late, decision, reasons, vision."""

    @property
    def offered(self) -> float:
        """Items fed per second."""
        return self.fed / max(1e-9, self.wall_end - self.wall_start)

    @property
    def decided_rate(self) -> float:
        """Items decided per second from STEADY_AFTER_S after the start to the last feed."""
        since = self.wall_start + min(STEADY_AFTER_S, (self.wall_end - self.wall_start) / 4)
        n = sum(1 for r in self.rows if r[1] is not None and since <= r[1] <= self.wall_end)
        return n / max(1e-9, self.wall_end - since)

    def in_time(self) -> list[bool]:
        """Per fed item: decided in time on its own merits. Every item is genuine and
        commissioned, so that is a PASS, or a HOLD or REJECT the gateway's inspection draw or
        the label model asked for, never late, always verified and label checked."""
        return [_on_merits(r) for r in self.rows] + [False] * max(0, self.fed - len(self.rows))

    @property
    def in_time_share(self) -> float:
        """Share of the fed items decided in time."""
        flags = self.in_time()
        return sum(flags) / max(1, len(flags))

    def latencies_ms(self) -> list[float]:
        """Scan (photo eye) to decision of each decided item."""
        return [(r[1] - r[0]) * 1000 for r in self.rows if r[1] is not None]

    @property
    def cpu_ms_per_item(self) -> float:
        """CPU time of this process per fed item, feeding to drained."""
        return self.cpu_s / max(1, self.fed) * 1000

    @property
    def checked_share(self) -> float:
        """Label checks run per fed item."""
        return self.vision_checks / max(1, self.fed)

    @property
    def capacity(self) -> float:
        """Items/s one idle core could decide with every label checked:
        1 ÷ (CPU per item outside the vision thread + the vision thread's CPU per check)."""
        vision = self.threads.get("vision", 0.0)
        outside = (self.cpu_s - vision) / max(1, self.fed)
        per_check = vision / self.vision_checks if self.vision_checks else 0.0
        return 1 / max(1e-9, outside + per_check)

    @property
    def kept_up(self) -> bool:
        """Every fed item decided, ≥ 99.9 % in time, the decided rate the offered one."""
        return (
            self.drained
            and self.in_time_share >= TARGET_IN_TIME
            and self.decided_rate >= 0.98 * self.offered
        )

    def summary(self) -> str:
        """One line for stderr."""
        decisions: dict[str, int] = {}
        for r in self.rows:
            decisions[r[3] or "undecided"] = decisions.get(r[3] or "undecided", 0) + 1
        reasons: dict[str, int] = {}
        for r in self.rows:
            if not _on_merits(r):
                for code in json.loads(r[4] or "[]"):
                    reasons[code] = reasons.get(code, 0) + 1
        lat = self.latencies_ms() or [0.0]
        return (
            f"{self.rate:g}/s offered ({self.offered:.0f}/s fed, {self.fed} items): "
            f"decided {self.decided_rate:.0f}/s, in time {self.in_time_share:.2%}, "
            f"p50 {percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms, "
            f"CPU {self.cpu_ms_per_item:.2f} ms/item, {decisions}, reasons of the rest {reasons}, "
            f"labels checked {self.checked_share:.0%}, vision busy {self.vision_busy}, "
            f"capacity {self.capacity:.0f}/s, assembler {self.assembly}, "
            f"journaled {len(self.rows)}, drained {self.drained}"
            "; CPU ms/item by thread: "
            + ", ".join(
                f"{name} {seconds / max(1, self.fed) * 1000:.2f}"
                for name, seconds in sorted(self.threads.items(), key=lambda kv: -kv[1])
                if seconds > 0
            )
            + "; other core: "
            + ", ".join(
                f"{name} {seconds / max(1, self.fed) * 1000:.2f}"
                for name, seconds in self.peers.items()
            )
        )


def _on_merits(row: Row) -> bool:
    _, decided_at, late, decision, reasons_json, vision = row
    reasons = set(json.loads(reasons_json or "[]"))
    return (
        decided_at is not None
        and not late
        and vision in ("genuine", "suspect")
        and not _DEGRADED & reasons
        and (decision == "PASS" or bool(_ON_MERITS & reasons))
    )


class Drivers:
    """The gate's drivers, played by this thread: photo eye, scanner, RFID reader, camera.

    Item ``k`` is commissioned item ``k % POOL``: its barcode, its RFID tag and the
    DataMatrix on its rendered label all name it. The reads' text is made before timing (the
    devices' work); parsing it, as the scanner and RFID drivers do in the agent's process,
    is timed.
    """

    def __init__(self, agent: GateAgent, io: SimGateIo, frames: Sequence[Image]) -> None:
        self.agent, self.io, self.frames = agent, io, frames
        gtin = _gtin()
        self._reads = [
            (n, f"]C101{gtin}21{n}", encode_sgtin_hex(f"{EPC_PREFIX}{n}"))
            for n in range(len(frames))
        ]
        self._next = 0
        self._seq = 0

    def reads(self, count: int) -> list[tuple[int, str, str]]:
        """The next ``count`` items: (number, barcode as scanned, EPC hex as read)."""
        first = self._next
        self._next += count
        return [self._reads[k % len(self._reads)] for k in range(first, first + count)]

    def item(self, n: int, barcode: str, epc: str) -> None:
        """One item passes: eye edge, then its scan, sighting and frame as drivers send them."""
        enter = time.monotonic()
        self.io.simulate_item(enter, enter + 0.001)
        now, wall = time.monotonic(), time.time()
        self.agent.on_scan(ScanEvent(barcode, parse_item_id(barcode), "]C1", now, wall, "scanner"))
        sighting = TagSighting(epc, parse_epc_hex(epc), 2, -55, 1, (1,), now, now, final=False)
        self.agent.on_sighting(sighting)
        self._seq += 1
        self.agent.on_frame(
            Frame(self.frames[n], self._seq, time.monotonic(), wall, "label", "bench")
        )

    def feed(self, rate: float, seconds: float) -> tuple[int, float, float]:
        """Items at ``rate`` for ``seconds``; (items, wall start, wall end)."""
        items = self.reads(max(1, round(rate * seconds)))
        wall_start, start = time.time(), time.monotonic()
        for i, item in enumerate(items):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.item(*item)
        return len(items), wall_start, time.time()


class Rig:
    """The agent and what it runs with, started as ``provgate agent run`` starts them; the
    outbox publishes to ``events_url`` (a broker of its own, see the module docstring)."""

    def __init__(
        self,
        profile: GateProfile,
        events_url: str,
        checker: LabelChecker,
        frames: Sequence[Image],
        peers: dict[str, int],
    ) -> None:
        device = build_device(profile.devices.gate_io)
        assert isinstance(device, SimGateIo)
        self.io = device
        assert profile.vision is not None
        self.vision = VisionWorker(checker, queue_size=profile.vision.queue_size)
        self.outbox = Outbox(profile.journal.path, events_url, "bench-outbox")
        self.agent = GateAgent.from_profile(
            profile, gate_io=self.io, vision=self.vision, outbox=self.outbox
        )
        self.journal = profile.journal.path
        self.drivers = Drivers(self.agent, self.io, frames)
        self.peers = peers
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        """Sinks before sources."""
        self.io.start()
        if not self.agent.verify.start(10):
            self.agent.verify.close()
            self.vision.stop()
            self.io.stop()
            raise RuntimeError("the agent's verify client did not reach the broker")
        self.agent.start()
        self.outbox.start()
        self._unsubscribe = self.io.subscribe(self.agent.on_photo_eye)

    def stop(self) -> None:
        """Sources first, then the agent, verification, outbox, vision, I/O."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.agent.stop()
        self.agent.verify.close()
        self.outbox.wait_drained(2)
        self.outbox.stop()
        self.vision.stop()
        self.io.stop()

    def last_seq(self) -> int:
        """The journal's last item seq."""
        with contextlib.closing(sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True)) as c:
            return int(c.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0])

    def phase(self, rate: float, seconds: float) -> Phase:
        """Feed ``rate`` items/s for ``seconds``, wait until all are decided, read the journal."""
        seq, before = self.last_seq(), self.vision.stats
        cpu, threads = time.process_time(), thread_cpu()
        peers = {name: process_cpu(pid) for name, pid in self.peers.items()}
        late = dict(self.agent.assembler.counters)
        fed, wall_start, wall_end = self.drivers.feed(rate, seconds)
        drained = self.agent.wait_idle(DRAIN_S)
        cpu = time.process_time() - cpu
        after = thread_cpu()
        threads = {name: after[name] - threads.get(name, 0.0) for name in after}
        peers = {name: process_cpu(pid) - peers[name] for name, pid in self.peers.items()}
        counters = dict(self.agent.assembler.counters)
        late = {k: counters[k] - late.get(k, 0) for k in _LATE_INPUTS if k in counters}
        query = (
            "SELECT scanned_at, decided_at, late, decision, reasons, vision_verdict "
            "FROM items WHERE seq > ? ORDER BY seq"
        )
        with contextlib.closing(sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True)) as c:
            rows = c.execute(query, (seq,)).fetchall()
        after_stats = self.vision.stats
        busy = after_stats.busy - before.busy
        checks = after_stats.completed - before.completed
        return Phase(
            rate, fed, wall_start, wall_end, cpu, busy, checks, drained, threads, peers, late, rows
        )


# ---- the baseline -----------------------------------------------------------------------


def bare_check(checker: LabelChecker, frames: Sequence[Image]) -> tuple[float, float]:
    """LabelChecker.check alone on the frames: (checks/s wall clock, CPU ms per check)."""
    for frame in frames[:8]:  # warm-up
        checker.check([frame])
    cpu, started = time.thread_time(), time.perf_counter()
    for i in range(BASELINE_CHECKS):
        checker.check([frames[i % len(frames)]])
    wall = time.perf_counter() - started
    return BASELINE_CHECKS / wall, (time.thread_time() - cpu) / BASELINE_CHECKS * 1000


# ---- figures ----------------------------------------------------------------------------


@contextlib.contextmanager
def pinned(cpus: set[int]) -> Iterator[None]:
    """This process on ``cpus`` for the block (threads started in it stay there)."""
    before = os.sched_getaffinity(0)
    pin(os.getpid(), cpus)
    try:
        yield
    finally:
        pin(os.getpid(), before)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def run() -> list[Figure]:
    """All figures of this benchmark."""
    cpus = sorted(os.sched_getaffinity(0))
    agent_cpu, other = {cpus[0]}, set(cpus[1:]) or {cpus[0]}
    if len(cpus) < 2:
        print("bench_agent: one core only: gateway and broker share it", file=sys.stderr)
    secret = secrets.token_bytes(32)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="provgate-bench-agent-") as tmp:
        directory = Path(tmp)
        (directory / "key").write_text(derive_gate_key(secret, SITE, GATE).hex())
        with MosquittoBroker() as broker, MosquittoBroker() as events:
            assert broker.pid is not None
            assert events.pid is not None
            pin(broker.pid, other)
            pin(events.pid, other)
            frames = run_prepare(directory, LEDGER_ITEMS, broker.url, secret)
            gateway = GatewayProcess(directory / "gateway.yaml", directory / "gateway.log")
            try:
                pin(gateway.proc.pid, other)
                with pinned(agent_cpu):
                    peers = {
                        "mosquitto": broker.pid,
                        "gateway": gateway.proc.pid,
                        "events broker": events.pid,
                    }
                    profile = gate_profile(directory, broker.url)
                    measured = measure(profile, events.url, frames, other, peers)
            finally:
                gateway.close()
    out = figures(measured, load=(load_start, os.getloadavg()[0]))
    if DEMO_SECONDS:
        out += demo_latency(DEMO_SECONDS)
    return out


@dataclass
class Measured:
    """Everything one run measured."""

    phases: list[Phase]
    baselines: list[tuple[float, float]]
    """(checks/s, CPU ms per check) of the bare label check, before and after the agent."""
    rss_before_mb: float
    peak_rss_mb: float
    """Peak over every phase, overloaded ones included (queues grow there)."""
    frame_mb: float
    target_rss_mb: float = 0.0
    """Peak up to the end of the target-rate phase: the agent at its rated load."""


def measure(
    profile: GateProfile,
    events_url: str,
    frames: list[Image],
    other: set[int],
    peers: dict[str, int],
) -> Measured:
    """Baseline, the agent at each rate, baseline again (py-spy on ``other`` cores; the CPU
    time of the ``peers`` processes is reported beside the agent's)."""
    cv2.setNumThreads(1)  # one core: OpenCV threads would only queue for it
    assert profile.vision is not None
    checker = LabelChecker(profile.vision)
    baselines = [bare_check(checker, frames)]
    phases: list[Phase] = []
    reset_peak_rss()
    rss_before = _status_mb("VmRSS")
    rig = Rig(profile, events_url, checker, frames, peers)
    logged = CountingHandler()
    logging.getLogger().addHandler(logged)
    rig.start()
    try:
        rig.phase(WARMUP_RATE, WARMUP_S)
        spy = start_pyspy(PYSPY, SECONDS, other) if PYSPY else None
        phases.append(rig.phase(RATES[0], SECONDS))
        target_rss = _status_mb("VmHWM")
        if spy is not None:
            spy.wait(30)
        print(f"bench_agent: {phases[0].summary()}", file=sys.stderr)
        # above the target while kept up; below it until kept up
        for rate in RATES[1:] if phases[0].kept_up else DOWN_RATES:
            phases.append(rig.phase(rate, STEP_SECONDS))
            print(f"bench_agent: {phases[-1].summary()}", file=sys.stderr)
            if phases[-1].kept_up != phases[0].kept_up:
                break
    finally:
        rig.stop()
        logging.getLogger().removeHandler(logged)
        print(f"bench_agent: warnings logged: {logged.summary()}", file=sys.stderr)
    peak = _status_mb("VmHWM")
    baselines.append(bare_check(checker, frames))
    return Measured(phases, baselines, rss_before, peak, frames[0].nbytes / 2**20, target_rss)


def figures(m: Measured, load: tuple[float, float]) -> list[Figure]:
    """The figures of a run."""
    phases, baselines = m.phases, m.baselines
    bare_rate = max(b[0] for b in baselines)
    bare_cpu = min(b[1] for b in baselines)
    loads = f"load avg {load[0]:.1f} → {load[1]:.1f}"
    target = phases[0]
    lat = target.latencies_ms() or [0.0]
    ceiling = max((p.rate for p in phases if p.kept_up), default=0.0)
    met = target.kept_up and target.offered >= 0.98 * TARGET_RATE
    out = [
        Figure(
            f"decided items/s at {target.rate:g}/s offered, vision on, one core ({loads})",
            target.decided_rate,
            "items/s",
            "bare label check, same core",
            bare_rate,
            target=f"≥ {TARGET_RATE:g} kept up: {_met(met)}",
        ),
        Figure(
            f"share decided in time at {target.rate:g}/s (not late, verified, label checked)",
            target.in_time_share * 100,
            "%",
            target=f"≥ {TARGET_IN_TIME:.1%}: {_met(target.in_time_share >= TARGET_IN_TIME)}",
        ),
        Figure(f"scan-to-decision p50 at {target.rate:g}/s", percentile(lat, 50), "ms"),
        Figure(
            f"scan-to-decision p99 at {target.rate:g}/s (deadline 420 ms)",
            percentile(lat, 99),
            "ms",
        ),
        Figure(
            f"CPU per item at {target.rate:g}/s, whole agent process "
            f"(labels checked on {target.checked_share:.0%} of items)",
            target.cpu_ms_per_item,
            "ms",
            "bare label check",
            bare_cpu,
            higher_is_better=False,
        ),
        Figure(
            "one idle core's capacity, every label checked: 1 ÷ (CPU per item outside "
            "vision + vision CPU per check)",
            target.capacity,
            "items/s",
            "bare label check, 1 ÷ CPU",
            1000 / max(1e-9, bare_cpu),
            target=f"≥ {TARGET_RATE:g}: {_met(target.capacity >= TARGET_RATE)}",
        ),
    ]
    for phase in phases[1:]:
        out.append(
            Figure(
                f"decided items/s at {phase.rate:g}/s offered ({phase.in_time_share:.1%} "
                f"in time, p99 {percentile(phase.latencies_ms() or [0.0], 99):.0f} ms)",
                phase.decided_rate,
                "items/s",
                "bare label check",
                bare_rate,
                target="kept up" if phase.kept_up else "not kept up",
            )
        )
    out += [
        Figure(
            f"highest offered rate kept up (tried {', '.join(f'{p.rate:g}' for p in phases)}/s)",
            ceiling,
            "items/s",
            "bare label check",
            bare_rate,
        ),
        Figure(
            f"agent process peak RSS at {phases[0].rate:g}/s (VmHWM; its {POOL} kept frames: "
            f"{POOL * m.frame_mb:.0f} MB)",
            m.target_rss_mb,
            "MB",
            "RSS before the agent started",
            m.rss_before_mb,
            higher_is_better=False,
            target=f"≤ {TARGET_RSS_MB:g} MB: {_met(m.target_rss_mb <= TARGET_RSS_MB)}",
        ),
        Figure(
            "agent process peak RSS over every rate tried (overload included)",
            m.peak_rss_mb,
            "MB",
            "RSS before the agent started",
            m.rss_before_mb,
            higher_is_better=False,
        ),
    ]
    return out


# ---- scan-to-decision at 20 items/s × 4 gates: the third target, opt-in ---------------


def demo_latency(seconds: float) -> list[Figure]:
    """Scan-to-decision p50/p99 of ``provgate demo --gates 4 --rate 20 --json`` through a
    private mosquitto on loopback, beside the no-op MQTT round trip (QoS 1) through the same
    broker in the same run. Opt-in (``PROVGATE_BENCH_AGENT_DEMO=SECONDS``): the demo renders its
    labels before it starts (~15 s more)."""
    from bench.bench_mqtt_baseline import measure_noop

    with MosquittoBroker() as broker:
        noop_p50, noop_p99, _ = measure_noop(broker.url, 1)
        demo = ["demo", "--gates", "4", "--rate", "20", "--duration", f"{seconds:g}"]
        done = subprocess.run(
            [sys.executable, "-m", "provgate_cli.main", *demo, "--json", "--mqtt", broker.url],
            cwd=_REPO,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    try:
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        p50, p99 = (float(summary["latency_ms"][k]) for k in ("p50", "p99"))
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        print(f"bench_agent: demo gave no summary ({exc}): {done.stderr[-1000:]}", file=sys.stderr)
        return []
    where = f"4 gates × 20/s, {summary.get('items')} items"
    return [
        Figure(
            f"demo scan-to-decision p50 ({where})",
            p50,
            "ms",
            "no-op MQTT round trip p50",
            noop_p50 * 1000,
            higher_is_better=False,
        ),
        Figure(
            f"demo scan-to-decision p99 ({where}, counterfeits passed "
            f"{summary.get('counterfeits_passed')}, late {summary.get('late_decisions')})",
            p99,
            "ms",
            "no-op MQTT round trip p99",
            noop_p99 * 1000,
            higher_is_better=False,
            target=f"≤ 50 ms: {_met(p99 <= 50)}",
        ),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--prepare"]:
        _, _, where, count, url, hex_secret = sys.argv
        prepare(Path(where), int(count), url, bytes.fromhex(hex_secret))
    else:
        print_figures(__doc__.splitlines()[0] if __doc__ else "agent", run())
