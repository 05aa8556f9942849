"""One gate's running parts, built from its profile and started and stopped in order.

:func:`build_gate` turns a :class:`~edge_agent.profile.GateProfile` into a :class:`GateRun`:
the agent, its gate I/O, the outbox, the label check worker, the device drivers (with the
agent's ``on_*`` methods as their callbacks) and the heartbeat
(:class:`~edge_agent.presence.Presence`, on the verification client's connection).
:meth:`GateRun.start` starts sinks before sources, the heartbeat last; :meth:`GateRun.stop`
stops sources first, lets the agent decide what is in flight, sends a last heartbeat, closes
the verification client (``online: false``), drains the outbox, then stops the sinks.
``provgate agent run`` and the gate simulator both run a gate this way.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from edge_agent.agent import GateAgent
from edge_agent.outbox import Outbox
from edge_agent.presence import CounterSource, HealthSource, Presence
from edge_agent.profile import GateProfile
from edge_agent.verify_client import VerifyClient
from edge_agent.vision.checker import LabelChecker
from edge_agent.vision.worker import VisionWorker
from hardware.barcode.driver import SerialScanner
from hardware.base import Device
from hardware.camera.config import OpenCvCameraConfig
from hardware.camera.driver import OpenCvCamera
from hardware.camera.sources import FrameSource
from hardware.gate_io.interface import GateIo
from hardware.registry import build_device
from hardware.rfid.driver import ThingMagicReader

__all__ = ["GateRun", "build_gate"]

log = logging.getLogger(__name__)

VERIFY_WAIT_S: Final = 5.0
"""How long :meth:`GateRun.start` waits for the broker before going on (items held meanwhile)."""
DRAIN_S: Final = 2.0
"""How long :meth:`GateRun.stop` waits for the outbox to empty."""
GIL_SWITCH_S: Final = 0.001
"""Python's thread switch interval while a gate runs. An item is handed between threads
several times (driver → agent → vision worker → agent → MQTT thread → agent); at the
default 5 ms a thread woken while another runs Python code may wait that long for the
interpreter at each hand-over."""

CameraSourceFactory = Callable[[OpenCvCameraConfig], FrameSource]


@dataclass(slots=True)
class GateRun:
    """Everything one gate runs; :meth:`start` and :meth:`stop` in reverse order."""

    profile: GateProfile
    agent: GateAgent
    gate_io: GateIo
    outbox: Outbox
    vision: VisionWorker | None
    drivers: list[Device] = field(default_factory=list)
    presence: Presence | None = None
    _unsubscribe: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> bool:
        """Start everything, sinks before sources; True when the broker answered in time.

        RuntimeError when the agent cannot start (journal unusable).
        """
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))
        self.gate_io.start()
        connected = self.agent.verify.start(VERIFY_WAIT_S)
        self.agent.start()  # opens the journal, which creates the outbox table
        self.outbox.start()
        self._unsubscribe.append(self.gate_io.subscribe(self.agent.on_photo_eye))
        for driver in self.drivers:
            driver.start()
        if self.presence is not None:
            self.presence.start()
        return connected

    def stop(self) -> None:
        """Stop the sources, let the agent decide what is in flight, then the sinks."""
        for driver in reversed(self.drivers):
            _quietly(driver.stop, driver)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        _quietly(self.agent.stop, "agent")
        if self.presence is not None:  # the final counters, then online: false at close
            _quietly(self.presence.stop, "presence")
        _quietly(self.agent.verify.close, "verification")
        if not self.outbox.wait_drained(DRAIN_S):
            log.warning("agent: outbox not drained; the rest is sent on the next start")
        _quietly(self.outbox.stop, "outbox")
        if self.vision is not None:
            _quietly(self.vision.stop, "vision")
        _quietly(self.gate_io.stop, self.gate_io)


def build_gate(
    profile: GateProfile, key: bytes, *, camera_source: CameraSourceFactory | None = None
) -> GateRun:
    """The gate of ``profile`` (nothing started). ``camera_source`` replaces how the
    cameras open their sources (a simulator's frames); the drivers stay the real ones.

    ValueError / OSError / RuntimeError when a part cannot be built (e.g. the model).
    """
    device = build_device(profile.devices.gate_io)
    if not isinstance(device, GateIo):  # pragma: no cover - the profile's type ensures it
        raise TypeError(f"devices.gate_io built a {type(device).__name__}, not gate I/O")
    vision = None
    if profile.vision is not None:
        vision = VisionWorker(LabelChecker(profile.vision), queue_size=profile.vision.queue_size)
    gate = profile.gate
    outbox = Outbox(
        profile.journal.path,
        profile.verification.mqtt_url,
        f"provgate-{gate.site}-{gate.id}-outbox",
    )
    agent = GateAgent.from_profile(profile, key=key, gate_io=device, vision=vision, outbox=outbox)
    _follow_gateway(agent.verify, outbox)
    run = GateRun(profile, agent, device, outbox, vision)
    devices = profile.devices
    if devices.scanner is not None:
        run.drivers.append(SerialScanner(devices.scanner, on_scan=agent.on_scan))
    if devices.rfid is not None:
        run.drivers.append(ThingMagicReader(devices.rfid, on_sighting=agent.on_sighting))
    for camera in devices.cameras:
        run.drivers.append(OpenCvCamera(camera, on_frame=agent.on_frame, open_source=camera_source))
    run.presence = _presence(run, key)
    return run


def _presence(run: GateRun, key: bytes) -> Presence:
    """The heartbeat of ``run``: agent, verification, outbox and vision counters, and the
    health of the gate I/O, each driver and the outbox's connection."""
    verify, outbox, vision = run.agent.verify, run.outbox, run.vision
    counters: dict[str, CounterSource] = {
        "": run.agent.counters,
        "verify": verify.counters,
        "outbox": lambda: _outbox_counters(outbox),
    }
    if vision is not None:
        counters["vision"] = lambda: _vision_counters(vision)
    health: dict[str, HealthSource] = {run.gate_io.name: run.gate_io.health}
    for driver in run.drivers:
        health.setdefault(driver.name, driver.health)
    health.setdefault("outbox", lambda: "ok" if outbox.connected else "down")
    presence = Presence(
        verify.topics,
        key,
        verify.publish,
        interval_s=run.profile.presence.heartbeat_s,
        counters=counters,
        health=health,
    )
    verify.on_connected = presence.beat_soon
    return presence


def _outbox_counters(outbox: Outbox) -> dict[str, int]:
    c = outbox.counters
    return {"backlog": c.queued, "sent": c.sent, "resent": c.resent, "failed": c.failed}


def _vision_counters(vision: VisionWorker) -> dict[str, int]:
    s = vision.stats
    return {"submitted": s.submitted, "completed": s.completed, "busy": s.busy, "queued": s.queued}


def _follow_gateway(verify: VerifyClient, outbox: Outbox) -> None:
    """Gate events go out only while the gateway says it is online: an event the broker
    acknowledged while no gateway was subscribed would be lost, so the outbox waits (paused)
    until the gateway's retained availability says online, and pauses when its last will
    or a clean stop says offline. The events stay in the journal meanwhile."""
    outbox.pause()

    def follow(online: bool) -> None:
        if online:
            outbox.resume()
        else:
            outbox.pause()

    verify.on_gateway_status = follow


def _quietly(stop: Callable[[], object], what: object) -> None:
    """Call ``stop``; a failure is logged, so the rest still stops."""
    try:
        stop()
    except Exception as exc:
        log.error("agent: stopping %s failed: %s", getattr(what, "name", what), exc)
