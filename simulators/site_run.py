"""A whole simulated site on one machine: broker, gateway and N gates, each its own process.

:class:`SiteRun` prepares a run directory (the demo site's seeded ledger, gateway config,
gate keys, one item stream per gate), starts a private mosquitto (the embedded broker where
mosquitto is not installed; or uses a given broker), the real gateway (``provgate gateway
run``) and one gate simulator per gate (``python -m simulators.gate_sim``: the real agent fed
by simulated devices on ptys), waits until every gate has rendered its labels and is ready,
starts all belts at once (``go``), follows their progress lines, and stops everything in
order. Every child runs in its own process group: a terminal's Ctrl-C reaches only the
caller, which stops the gates first (each decides what is on its belt), then the gateway
(its ledger complete), then the broker.
The demo and the end-to-end test both run a site this way; what each gate decided is in its
result file, its journal and the gateway's ledger, all inside the run directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
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
from gatewire.mqtt import BrokerAddress
from simulators.broker import MosquittoBroker
from simulators.demo_site import (
    DemoSite,
    create_demo_site,
    seed_items_for,
    write_gateway_config,
)
from simulators.embedded_broker import EmbeddedBroker
from simulators.scenario import build_scenario
from simulators.site_processes import (
    GatewayWatch,
    SiteRunError,
    last_line,
    reap,
    spawn,
    start_broker,
)

__all__ = [
    "BROKERS",
    "GatePlan",
    "GateProgress",
    "RunSettings",
    "SiteRun",
    "SiteRunError",
    "gate_layout",
]

log = logging.getLogger(__name__)

SITE: Final = "demo"
BROKERS: Final = ("auto", "mosquitto", "embedded")
PROFILES: Final = Path(__file__).resolve().parent.parent / "firmware_configs" / "gates"
_PROFILE_OF: Final = {
    GateKind.INBOUND: PROFILES / "demo-inbound.yaml",
    GateKind.OUTBOUND: PROFILES / "demo-outbound.yaml",
}
# What each demo gate reads (must match its profile): inbound scanner + RFID + one camera,
# outbound scanner + two cameras.
_HAS_RFID: Final = {GateKind.INBOUND: True, GateKind.OUTBOUND: False}
_GATEWAY_READY_S: Final = 30.0
_GATE_SILENT_S: Final = 60.0
"""A gate that says nothing this long before it is ready is stuck."""
_PYTHON_M: Final = (sys.executable, "-m")


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
    """What to run: gates, items per gate, belt rate, share of counterfeits, seed, broker."""

    gates: int = 3
    items: int = 40
    """Items per gate."""
    rate: float = 5.0
    """Items per second on each gate's belt."""
    counterfeit_rate: float = 0.2
    seed: int = 7
    mqtt_url: str | None = None
    """An external broker; None starts a private one."""
    broker: str = "auto"
    """The private broker: ``auto`` (mosquitto if installed, else the embedded one),
    ``mosquitto`` or ``embedded``."""

    def __post_init__(self) -> None:
        if self.gates < 1 or self.gates > 16:
            raise ValueError(f"gates must be 1…16, got {self.gates}")
        if self.items < 1:
            raise ValueError(f"items must be ≥ 1, got {self.items}")
        if not 0 < self.rate <= 500:
            raise ValueError(f"rate must be in (0, 500] items/s, got {self.rate}")
        if not 0 <= self.counterfeit_rate <= 1:
            raise ValueError(f"counterfeit rate must be 0…1, got {self.counterfeit_rate}")
        if self.broker not in BROKERS:
            raise ValueError(f"broker must be one of {', '.join(BROKERS)}, got {self.broker!r}")
        if self.mqtt_url is not None:
            try:
                BrokerAddress.from_url(self.mqtt_url)
            except ValueError as exc:
                raise ValueError(str(exc)) from None

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
    """starting, preparing (rendering labels), ready, running, done, failed."""
    numbers: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    heard_at: float = field(default_factory=time.monotonic)
    """When the gate simulator last printed a line."""


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
        self.gateway_failure: str | None = None
        """Set by :meth:`stop` if the gateway died or did not stop cleanly (then the
        ledger may miss events through no fault of the gates)."""
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
        # on a shared broker, a site id of its own keeps this run apart from any other
        site = SITE if s.mqtt_url is None else f"{SITE}-{secrets.token_hex(3)}"
        self.site = create_demo_site(
            self.directory / "site", items=s.seed_items, seed=s.seed, gates=layout, site=site
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

    def start(
        self,
        on_step: Callable[[str], None] = lambda _: None,
        on_wait: Callable[[], None] = lambda: None,
    ) -> None:
        """Broker (unless given), gateway, the gates; once every gate is ready, all belts
        start together. ``on_step`` hears each step done, ``on_wait`` is called every few
        tens of milliseconds while the gateway and the gates get ready (to show their
        progress). SiteRunError naming the part that failed (and its log); the caller then
        :meth:`stop` s what did start (the context manager does)."""
        if self.site is None:
            self.prepare(on_step)
        assert self.site is not None
        if self.mqtt_url is None:
            self._broker, what = start_broker(self.settings.broker)
            self.mqtt_url = self._broker.url
            on_step(f"{what} at {self.mqtt_url}")
        else:
            on_step(f"site {self.site.site} on the broker at {self.mqtt_url}")
        self.gateway_config = write_gateway_config(self.site, self.mqtt_url)
        try:
            online = GatewayWatch(self.mqtt_url, self.site.site)
        except OSError as exc:
            raise SiteRunError(f"no broker at {self.mqtt_url}: {exc}") from exc
        try:
            self._start_gateway()
            for plan in self.plans:  # they render their labels while the gateway starts
                self._start_gate(plan)
            self._await_gateway(online, on_wait)
        finally:
            online.close()
        on_step("gateway online")
        self._await_ready(on_wait)
        self._go()
        self.started_at = time.monotonic()
        on_step(f"{len(self.plans)} gates ready (labels rendered): belts running")

    def _start_gateway(self) -> None:
        config = self.gateway_config
        assert config is not None
        log_file = (self.directory / "gateway.log").open("wb")
        self._logs.append(log_file)
        self._gateway = spawn(
            [*_PYTHON_M, "provgate_cli.main", "gateway", "run", "--config", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def _await_gateway(self, online: GatewayWatch, on_wait: Callable[[], None]) -> None:
        """Until the gateway says it is online; SiteRunError if it exits or takes too long."""
        assert self._gateway is not None
        log_path = self.directory / "gateway.log"
        deadline = time.monotonic() + _GATEWAY_READY_S
        while not online.wait(0.1):
            on_wait()
            if self._gateway.poll() is not None:
                raise SiteRunError(
                    f"the gateway exited with {self._gateway.returncode}"
                    f"{last_line(log_path)}; its log: {log_path}"
                )
            if time.monotonic() > deadline:
                raise SiteRunError(
                    f"the gateway did not come online in {_GATEWAY_READY_S:.0f} s"
                    f"{last_line(log_path)}; its log: {log_path}"
                )

    def _start_gate(self, plan: GatePlan) -> None:
        assert self.mqtt_url is not None
        log_file = plan.log_file.open("wb")
        self._logs.append(log_file)
        process = spawn(
            [
                *_PYTHON_M,
                "simulators.gate_sim",
                *("--profile", str(plan.profile), "--gate", plan.gate),
                *("--key-file", str(plan.key_file), "--mqtt", self.mqtt_url),
                *("--journal", str(plan.journal), "--items", str(plan.items_file)),
                *("--rate", str(self.settings.rate), "--out", str(plan.result_file)),
                *("--label-seed", str(self.settings.seed), "--wait-go"),
                *("--site", self.site.site if self.site is not None else SITE),
            ],
            stdout=subprocess.PIPE,
            stderr=log_file,
            stdin=subprocess.PIPE,
        )
        self._gates[plan.gate] = process
        with self._lock:
            self._progress[plan.gate].heard_at = time.monotonic()
        reader = threading.Thread(
            target=self._follow, args=(plan.gate, process), name=f"follow-{plan.gate}", daemon=True
        )
        reader.start()
        self._readers.append(reader)

    def _await_ready(self, on_wait: Callable[[], None]) -> None:
        """Until every gate says ``ready``; SiteRunError if one exits or goes silent."""
        plans = {plan.gate: plan for plan in self.plans}
        while True:
            now = time.monotonic()
            waiting = [p for p in self.progress() if p.state not in ("ready", "running", "done")]
            if not waiting:
                return
            for p in waiting:
                code = self._gates[p.gate].poll()
                log_path = plans[p.gate].log_file
                if code is not None:
                    raise SiteRunError(
                        f"gate {p.gate} exited with {code} before its belt started"
                        f"{last_line(log_path)}; its log: {log_path}"
                    )
                if now - p.heard_at > _GATE_SILENT_S:
                    raise SiteRunError(
                        f"gate {p.gate} said nothing for {_GATE_SILENT_S:.0f} s while "
                        f"{p.state}{last_line(log_path)}; its log: {log_path}"
                    )
            on_wait()
            time.sleep(0.05)

    def _go(self) -> None:
        """Start every belt (a gate that died meanwhile shows up as failed)."""
        for process in self._gates.values():
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.write(b"go\n")
                    process.stdin.close()

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
                progress.heard_at = time.monotonic()
                event = line.get("event")
                if event == "progress":
                    progress.state = "running"
                    progress.numbers = line
                elif event == "done":
                    progress.state = "done"
                    progress.numbers = {**progress.numbers, **line}
                elif event == "ready":
                    progress.state = "ready"
                    progress.message = ""
                elif isinstance(event, str):
                    progress.state = "preparing"
                    progress.message = _preparing(line)
        code = process.wait()
        with self._lock:
            progress = self._progress[gate]
            if code != 0:
                progress.state = "failed"
                progress.message = f"exit {code}; its log: {self._log_of(gate)}"
            elif progress.state != "done":
                progress.state = "done"

    def _log_of(self, gate: str) -> Path:
        return next(plan.log_file for plan in self.plans if plan.gate == gate)

    # --- following -----------------------------------------------------------------------

    def progress(self) -> list[GateProgress]:
        """A snapshot of every gate's progress, in gate order."""
        with self._lock:
            return [
                GateProgress(
                    p.gate, p.kind, p.planned, p.state, dict(p.numbers), p.message, p.heard_at
                )
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
        if self.finished_at is None:
            self.finished_at = time.monotonic()
        return True

    def gate_exit_codes(self) -> dict[str, int | None]:
        """Each gate simulator's exit code (None while running or never started)."""
        codes: dict[str, int | None] = dict.fromkeys((plan.gate for plan in self.plans), None)
        codes.update({gate: process.poll() for gate, process in self._gates.items()})
        return codes

    # --- stopping ------------------------------------------------------------------------

    def interrupt_gates(self) -> None:
        """Ask every gate simulator to stop now (it still writes its result)."""
        for process in self._gates.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)

    def stop(self) -> None:
        """Stop the gates, then the gateway, then the broker (each waited for). Interrupted
        itself (a second Ctrl-C), it kills what still runs and re-raises."""
        try:
            self._stop_in_order()
        except BaseException:
            self.kill()
            raise

    def _stop_in_order(self) -> None:
        self.interrupt_gates()
        for process in self._gates.values():
            reap(process)
        for reader in self._readers:
            reader.join(timeout=2.0)
        if self.finished_at is None and self.started_at is not None:
            self.finished_at = time.monotonic()
        if self._gateway is not None:
            log_path = self.directory / "gateway.log"
            code = self._gateway.poll()
            if code is not None:
                self.gateway_failure = f"the gateway died during the run (exit {code})"
            else:
                self._gateway.send_signal(signal.SIGTERM)
                code = reap(self._gateway)
                if code != 0:
                    self.gateway_failure = f"the gateway did not stop cleanly (exit {code})"
            if self.gateway_failure is not None:
                self.gateway_failure += f"{last_line(log_path)}; its log: {log_path}"
            self._gateway = None
        self.kill()  # closes the broker and the logs; nothing else is left

    def kill(self) -> None:
        """Kill every child still running, stop the broker, close the logs (no waiting
        beyond the kill)."""
        for process in [*self._gates.values(), self._gateway]:
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
        self._gateway = None
        for reader in self._readers:
            reader.join(timeout=2.0)  # EOF once its gate exited
        for process in self._gates.values():
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        if self._broker is not None:
            broker, self._broker = self._broker, None
            broker.close()
        for log_file in self._logs:
            log_file.close()
        self._logs.clear()


def _preparing(line: dict[str, Any]) -> str:
    """What a gate does before it is ready, from its progress line."""
    if line.get("event") == "rendering":
        return f"rendering {line.get('rendered', '?')}/{line.get('items', '?')}"
    return str(line.get("message", line.get("event")))
