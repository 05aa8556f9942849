"""A whole simulated site on one machine: broker, gateway and N gates, each its own process.

:class:`SiteRun` prepares a run directory (the demo site's seeded ledger, gateway config,
gate keys, one item stream per gate), starts a private mosquitto (the embedded broker where
mosquitto is not installed; or uses a given broker), the real gateway (``provgate gateway
run``) and one gate simulator per gate (``python -m simulators.gate_sim``: the real agent fed
by simulated devices on ptys), follows their progress lines, and stops everything in order.
The demo and the end-to-end test both run a site this way; what each gate decided is in its
result file, its journal and the gateway's ledger, all inside the run directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from gatewire.messages import GateKind
from gatewire.mqtt import BrokerAddress, connect, make_client
from gatewire.topics import SiteTopics
from simulators.broker import BrokerError, MosquittoBroker, find_mosquitto
from simulators.demo_site import (
    DemoSite,
    create_demo_site,
    seed_items_for,
    write_gateway_config,
)
from simulators.embedded_broker import EmbeddedBroker
from simulators.scenario import build_scenario

__all__ = ["GatePlan", "GateProgress", "RunSettings", "SiteRun", "SiteRunError", "gate_layout"]

log = logging.getLogger(__name__)

SITE: Final = "demo"
PROFILES: Final = Path(__file__).resolve().parent.parent / "firmware_configs" / "gates"
_PROFILE_OF: Final = {
    GateKind.INBOUND: PROFILES / "demo-inbound.yaml",
    GateKind.OUTBOUND: PROFILES / "demo-outbound.yaml",
}
# What each demo gate reads (must match its profile): inbound scanner + RFID + one camera,
# outbound scanner + two cameras.
_HAS_RFID: Final = {GateKind.INBOUND: True, GateKind.OUTBOUND: False}
_GATEWAY_READY_S: Final = 30.0
_STOP_WAIT_S: Final = 20.0
_PYTHON_M: Final = (sys.executable, "-m")


class SiteRunError(RuntimeError):
    """The site could not be prepared or started; the message says what failed."""


def gate_layout(count: int) -> list[tuple[str, GateKind]]:
    """``count`` gates: inbound first (``in-01``…), then outbound (``out-01``…), half each
    (rounded towards inbound, where counterfeits come in)."""
    if count < 1:
        raise ValueError(f"need at least one gate, got {count}")
    outbound = count // 2
    inbound = count - outbound
    gates = [(f"in-{i:02d}", GateKind.INBOUND) for i in range(1, inbound + 1)]
    gates += [(f"out-{i:02d}", GateKind.OUTBOUND) for i in range(1, outbound + 1)]
    return gates


@dataclass(frozen=True, slots=True)
class RunSettings:
    """What to run: gates, items per gate, belt rate, share of counterfeits, seed."""

    gates: int = 3
    items: int = 40
    """Items per gate."""
    rate: float = 5.0
    """Items per second on each gate's belt."""
    counterfeit_rate: float = 0.2
    seed: int = 7
    mqtt_url: str | None = None
    """An external broker; None starts a private mosquitto."""

    def __post_init__(self) -> None:
        if self.gates < 1 or self.gates > 16:
            raise ValueError(f"gates must be 1…16, got {self.gates}")
        if self.items < 1:
            raise ValueError(f"items must be ≥ 1, got {self.items}")
        if not 0 < self.rate <= 500:
            raise ValueError(f"rate must be in (0, 500] items/s, got {self.rate}")
        if not 0 <= self.counterfeit_rate <= 1:
            raise ValueError(f"counterfeit rate must be 0…1, got {self.counterfeit_rate}")

    @property
    def seed_items(self) -> int:
        """Ledger size: enough items of every category for every gate's belt."""
        return seed_items_for(self.gates, self.items, self.counterfeit_rate)


@dataclass(frozen=True, slots=True)
class GatePlan:
    """One gate of the run and where its files are."""

    gate: str
    kind: GateKind
    items: int
    counterfeits: int
    profile: Path
    key_file: Path
    items_file: Path
    journal: Path
    result_file: Path
    log_file: Path


@dataclass(slots=True)
class GateProgress:
    """The latest progress line of one gate simulator."""

    gate: str
    kind: GateKind
    planned: int
    state: str = "starting"
    """starting, preparing, running, done, failed."""
    numbers: dict[str, Any] = field(default_factory=dict)
    message: str = ""


class SiteRun:
    """Prepare, start, follow and stop one simulated site. Use as a context manager."""

    def __init__(self, directory: Path, settings: RunSettings) -> None:
        self.directory = directory
        self.settings = settings
        self.site: DemoSite | None = None
        self.plans: list[GatePlan] = []
        self.mqtt_url = settings.mqtt_url
        self.gateway_config: Path | None = None
        self._broker: MosquittoBroker | EmbeddedBroker | None = None
        self._gateway: subprocess.Popen[bytes] | None = None
        self._gates: dict[str, subprocess.Popen[bytes]] = {}
        self._readers: list[threading.Thread] = []
        self._progress: dict[str, GateProgress] = {}
        self._lock = threading.Lock()
        self._logs: list[IO[bytes]] = []
        self.started_at: float | None = None
        self.finished_at: float | None = None

    def __enter__(self) -> SiteRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- preparing -----------------------------------------------------------------------

    def prepare(self, on_step: Callable[[str], None] = lambda _: None) -> None:
        """Seed the demo site's ledger and write every gate's item stream."""
        s = self.settings
        layout = gate_layout(s.gates)
        self.directory.mkdir(parents=True, exist_ok=True)
        on_step(f"seeding the ledger with {s.seed_items} demo items")
        self.site = create_demo_site(
            self.directory / "site", items=s.seed_items, seed=s.seed, gates=layout
        )
        for index, (gate, kind) in enumerate(layout):
            items = build_scenario(
                self.site.catalogue,
                kind,
                gate_index=index,
                gate_count=len(layout),
                items=s.items,
                counterfeit_rate=s.counterfeit_rate,
                seed=s.seed + index,
                has_rfid=_HAS_RFID[kind],
                has_camera=True,
            )
            plan = GatePlan(
                gate=gate,
                kind=kind,
                items=len(items),
                counterfeits=sum(item.counterfeit for item in items),
                profile=_PROFILE_OF[kind],
                key_file=self.site.key_file(gate),
                items_file=self.directory / f"{gate}.items.json",
                journal=self.directory / f"{gate}.journal.db",
                result_file=self.directory / f"{gate}.result.json",
                log_file=self.directory / f"{gate}.log",
            )
            plan.items_file.write_text(json.dumps([item.to_json() for item in items]))
            self.plans.append(plan)
            self._progress[gate] = GateProgress(gate, kind, len(items))
        on_step(f"{len(self.plans)} gates planned")

    # --- starting ------------------------------------------------------------------------

    def start(self, on_step: Callable[[str], None] = lambda _: None) -> None:
        """Broker (unless given), gateway, then the gates. SiteRunError when one fails."""
        if self.site is None:
            self.prepare(on_step)
        assert self.site is not None
        if self.mqtt_url is None:
            try:
                if find_mosquitto() is not None:
                    self._broker = MosquittoBroker().start()
                    what = "private mosquitto"
                else:
                    self._broker = EmbeddedBroker().start()
                    what = "embedded MQTT broker (mosquitto is not installed)"
            except BrokerError as exc:
                raise SiteRunError(f"no broker: {exc}") from exc
            self.mqtt_url = self._broker.url
            on_step(f"{what} at {self.mqtt_url}")
        self.gateway_config = write_gateway_config(self.site, self.mqtt_url)
        self._start_gateway()
        on_step("gateway online")
        for plan in self.plans:
            self._start_gate(plan)
        self.started_at = time.monotonic()

    def _start_gateway(self) -> None:
        config, url = self.gateway_config, self.mqtt_url
        assert config is not None
        assert url is not None
        log_file = (self.directory / "gateway.log").open("wb")
        self._logs.append(log_file)
        online = _GatewayWatch(url)
        try:
            self._gateway = subprocess.Popen(
                [*_PYTHON_M, "provgate_cli.main", "gateway", "run", "--config", str(config)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + _GATEWAY_READY_S
            while not online.wait(0.2):
                if self._gateway.poll() is not None:
                    raise SiteRunError(
                        f"the gateway exited with {self._gateway.returncode}; see "
                        f"{self.directory / 'gateway.log'}"
                    )
                if time.monotonic() > deadline:
                    raise SiteRunError(f"the gateway did not come online in {_GATEWAY_READY_S} s")
        finally:
            online.close()

    def _start_gate(self, plan: GatePlan) -> None:
        assert self.mqtt_url is not None
        log_file = plan.log_file.open("wb")
        self._logs.append(log_file)
        process = subprocess.Popen(
            [
                *_PYTHON_M,
                "simulators.gate_sim",
                *("--profile", str(plan.profile), "--gate", plan.gate),
                *("--key-file", str(plan.key_file), "--mqtt", self.mqtt_url),
                *("--journal", str(plan.journal), "--items", str(plan.items_file)),
                *("--rate", str(self.settings.rate), "--out", str(plan.result_file)),
                *("--label-seed", str(self.settings.seed)),
            ],
            stdout=subprocess.PIPE,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
        )
        self._gates[plan.gate] = process
        reader = threading.Thread(
            target=self._follow, args=(plan.gate, process), name=f"follow-{plan.gate}", daemon=True
        )
        reader.start()
        self._readers.append(reader)

    def _follow(self, gate: str, process: subprocess.Popen[bytes]) -> None:
        """Reader thread: every JSON line of a gate simulator updates its progress."""
        assert process.stdout is not None
        for raw in process.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(line, dict):
                continue
            with self._lock:
                progress = self._progress[gate]
                event = line.get("event")
                if event == "progress":
                    progress.state = "running"
                    progress.numbers = line
                elif event == "done":
                    progress.state = "done"
                    progress.numbers = {**progress.numbers, **line}
                elif isinstance(event, str):
                    progress.state = "preparing" if event != "ready" else "running"
                    progress.message = str(line.get("message", event))
        code = process.wait()
        with self._lock:
            progress = self._progress[gate]
            if code != 0:
                progress.state = "failed"
                progress.message = f"exit {code}"
            elif progress.state != "done":
                progress.state = "done"

    # --- following -----------------------------------------------------------------------

    def progress(self) -> list[GateProgress]:
        """A snapshot of every gate's progress, in gate order."""
        with self._lock:
            return [
                GateProgress(p.gate, p.kind, p.planned, p.state, dict(p.numbers), p.message)
                for p in self._progress.values()
            ]

    def gates_running(self) -> bool:
        """True while a gate simulator has not exited."""
        return any(process.poll() is None for process in self._gates.values())

    def wait_gates(self, timeout: float | None = None) -> bool:
        """Wait for every gate simulator to exit; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.gates_running():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        self.finished_at = time.monotonic()
        return True

    def gate_exit_codes(self) -> dict[str, int | None]:
        """Each gate simulator's exit code (None while running)."""
        return {gate: process.poll() for gate, process in self._gates.items()}

    # --- stopping ------------------------------------------------------------------------

    def interrupt_gates(self) -> None:
        """Ask every gate simulator to stop now (it still writes its result)."""
        for process in self._gates.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)

    def stop(self) -> None:
        """Stop the gates, then the gateway, then the broker (each waited for)."""
        self.interrupt_gates()
        for process in self._gates.values():
            _reap(process)
        for reader in self._readers:
            reader.join(timeout=2.0)
        if self.finished_at is None and self.started_at is not None:
            self.finished_at = time.monotonic()
        if self._gateway is not None:
            if self._gateway.poll() is None:
                self._gateway.send_signal(signal.SIGTERM)
            _reap(self._gateway)
            self._gateway = None
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        for log_file in self._logs:
            log_file.close()
        self._logs.clear()


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for a process to exit after being asked; kill it if it does not."""
    try:
        process.wait(_STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        log.error("site run: pid %d did not stop in %.0f s; killing it", process.pid, _STOP_WAIT_S)
        process.kill()
        process.wait()


class _GatewayWatch:
    """Watches the gateway's retained availability until it says online."""

    def __init__(self, url: str) -> None:
        self._online = threading.Event()
        self._client = make_client(f"provgate-site-run-{os.getpid()}")
        topic = SiteTopics(SITE).gateway_status

        def on_message(_c: Any, _u: Any, message: Any) -> None:
            with contextlib.suppress(ValueError):
                if json.loads(message.payload).get("online") is True:
                    self._online.set()

        self._client.on_message = on_message
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        connect(self._client, BrokerAddress.from_url(url))
        self._client.loop_start()

    def wait(self, timeout: float) -> bool:
        return self._online.wait(timeout)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
