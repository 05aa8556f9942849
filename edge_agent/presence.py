"""The gate's presence: its retained availability and a sealed heartbeat.

Availability (``online`` on the gate's retained ``status`` topic, unauthenticated, see
``docs/protocol.md``) belongs to the connection that carries it: the verification client
registers :func:`availability_payload` ``online: false`` as its last will before it
connects, publishes ``online: true`` on every (re)connect and ``online: false`` when it
closes cleanly.

:class:`Presence` sends the heartbeat: every ``interval_s`` on its own thread (and soon
after a reconnect, :meth:`Presence.beat_soon`), a ``heartbeat`` sealed with the gate key
on the gate's ``heartbeat`` topic at QoS 0, carrying the uptime, the counters of the
sources it was given and each device's health. It knows nothing of the agent: counters
and health come from callables, and it publishes through a callable. A source that fails
or returns nonsense never stops the heartbeat: its counters are left out, a device whose
health cannot be read is reported ``down``. Names are made to fit the wire pattern
``[a-z0-9_.-]{1,64}``; at most 64 counters and 64 devices are sent.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final

from gatewire.auth import seal
from gatewire.messages import Availability, Heartbeat, encode
from gatewire.topics import GateTopics
from hardware.health import DeviceHealth, DeviceState

__all__ = [
    "HEALTH_STATES",
    "MAX_NAMES",
    "CounterSource",
    "HealthSource",
    "Presence",
    "Publish",
    "availability_payload",
    "wire_name",
]

log = logging.getLogger(__name__)

MAX_NAMES: Final = 64
"""Most counters, and most devices, in one heartbeat (the contract's limit)."""
HEALTH_STATES: Final[Mapping[DeviceState, str]] = {
    DeviceState.HEALTHY: "ok",
    DeviceState.CONNECTING: "connecting",
    DeviceState.UNHEALTHY: "down",
    DeviceState.STOPPED: "stopped",
}
"""How a driver's state reads in the heartbeat."""
DOWN: Final = "down"
_MAX_NAME: Final = 64
_BAD_CHARS: Final = re.compile(r"[^a-z0-9_.-]+")

CounterSource = Callable[[], Mapping[str, int]]
"""Returns counters (name → non-negative int) when called."""
HealthSource = Callable[[], DeviceHealth | DeviceState | str]
"""Returns a device's health (a driver's :meth:`~hardware.base.Device.health`), or a state."""
Publish = Callable[[str, bytes, int], bool]
"""``publish(topic, payload, qos)``: False when the payload could not be handed over."""


def availability_payload(site: str, gate: str, *, online: bool) -> bytes:
    """The gate's ``availability`` (``who: gate``), as published retained on its status."""
    return encode(Availability(site=site, gate=gate, online=online, who="gate"))


def wire_name(name: str) -> str | None:
    """``name`` fitted to ``[a-z0-9_.-]{1,64}`` (lower case, other runs of characters → ``_``,
    cut to 64); None when nothing usable is left."""
    fitted = _BAD_CHARS.sub("_", name.strip().lower())[:_MAX_NAME]
    return fitted if fitted.strip("_") else None


class Presence:
    """Heartbeats of one gate. :meth:`start` once, :meth:`stop` once; thread-safe."""

    def __init__(
        self,
        topics: GateTopics,
        key: bytes,
        publish: Publish,
        *,
        interval_s: float = 5.0,
        counters: Mapping[str, CounterSource] | None = None,
        health: Mapping[str, HealthSource] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``counters`` maps a prefix to a source (``""``: no prefix; ``"verify"`` sends
        ``verify.sent``…), ``health`` a device name to its health source; both are read in
        their order, so the first ones win when names collide or exceed the limit."""
        if not 0 < interval_s <= 3600:
            raise ValueError("the heartbeat interval must be in (0, 3600] seconds")
        self.topics, self.interval_s = topics, interval_s
        self._key, self._publish, self._clock = key, publish, clock
        self._counter_sources = dict(counters or {})
        self._health_sources = dict(health or {})
        self._started_at: float | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stats = {"sent": 0, "skipped": 0, "errors": 0}
        self._warned: set[str] = set()
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Count the uptime from now and beat at once, then every ``interval_s``."""
        if self._thread is not None:
            raise RuntimeError("presence already started")
        self._started_at = self._clock()
        self._thread = threading.Thread(
            target=self._run, name=f"presence-{self.topics.gate}", daemon=True
        )
        self._thread.start()

    def stop(self, *, final_beat: bool = True, timeout: float = 5.0) -> None:
        """Stop beating; with ``final_beat`` send one last heartbeat (the final counters)
        first. Availability is the connection's business (its owner publishes
        ``online: false`` when it closes)."""
        if self._thread is None or self._stopping.is_set():
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        if final_beat:
            self.beat()

    def beat_soon(self) -> None:
        """Beat now rather than at the next tick (e.g. just reconnected); any thread."""
        self._wake.set()

    def stats(self) -> dict[str, int]:
        """Heartbeats sent, skipped (no connection) and failed (could not be built)."""
        with self._lock:
            return dict(self._stats)

    # --- one heartbeat ------------------------------------------------------------------

    def heartbeat(self) -> Heartbeat:
        """The heartbeat as of now (reads every source; never raises for a bad source)."""
        started = self._started_at
        uptime = 0.0 if started is None else max(0.0, self._clock() - started)
        return Heartbeat(
            site=self.topics.site,
            gate=self.topics.gate,
            uptime_s=round(uptime, 3),
            counters=self._read_counters(),
            health=self._read_health(),
        )

    def beat(self) -> bool:
        """Build, seal and publish one heartbeat; True when it was handed to the client."""
        try:
            payload = seal(self.heartbeat(), self._key)
        except Exception as exc:  # a ValidationError is a ValueError; keep beating anyway
            self._count("errors")
            self._warn_once("build", "presence: cannot build a heartbeat: %s", exc)
            return False
        try:
            sent = self._publish(self.topics.heartbeat, payload, 0)
        except Exception as exc:
            self._warn_once("publish", "presence: publishing the heartbeat failed: %s", exc)
            sent = False
        self._count("sent" if sent else "skipped")
        return sent

    # --- thread -------------------------------------------------------------------------

    def _run(self) -> None:
        started = self._started_at if self._started_at is not None else self._clock()
        ticks = 0
        while not self._stopping.is_set():
            self.beat()
            now = self._clock()
            ticks = max(ticks + 1, int((now - started) / self.interval_s) + 1)  # skip missed
            self._wake.wait(max(0.0, started + ticks * self.interval_s - now))
            self._wake.clear()

    # --- reading the sources ------------------------------------------------------------

    def _read_counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for prefix, source in self._counter_sources.items():
            try:
                values = dict(source())
            except Exception as exc:
                self._warn_once(f"counters:{prefix}", "presence: counters %r: %s", prefix, exc)
                continue
            for raw, value in values.items():
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    continue
                name = wire_name(f"{prefix}.{raw}" if prefix else str(raw))
                if name is None or name in out:
                    continue
                if len(out) >= MAX_NAMES:
                    self._warn_once("counters:max", "presence: more than %d counters", MAX_NAMES)
                    return out
                out[name] = value
        return out

    def _read_health(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for raw, source in self._health_sources.items():
            name = wire_name(raw)
            if name is None or name in out:
                continue
            if len(out) >= MAX_NAMES:
                self._warn_once("health:max", "presence: more than %d devices", MAX_NAMES)
                break
            try:
                out[name] = _state(source())
            except Exception as exc:
                self._warn_once(f"health:{name}", "presence: health of %s: %s", name, exc)
                out[name] = DOWN
        return out

    def _count(self, what: str) -> None:
        with self._lock:
            self._stats[what] += 1

    def _warn_once(self, kind: str, message: str, *args: object) -> None:
        """Log a problem of ``kind`` once (the heartbeat repeats every few seconds)."""
        with self._lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        log.warning(message, *args)


def _state(health: DeviceHealth | DeviceState | str) -> str:
    """The wire state of a health source's answer."""
    if isinstance(health, DeviceHealth):
        health = health.state
    if isinstance(health, DeviceState):
        return HEALTH_STATES[health]
    if isinstance(health, str) and health:
        return health[:_MAX_NAME]
    raise TypeError(f"not a health state: {health!r}")
