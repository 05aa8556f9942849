"""The gate agent end to end in one process: fake device feeds, SimGateIo, a real mosquitto
and the real gateway on a seeded SQLite ledger. Genuine items pass untouched, counterfeits
are diverted when they reach the diverter, a missing gateway or a late decision holds, and
every item is journaled with one gate event each."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest

import edge_agent.decision as decision_module
from edge_agent.agent import DECISION_LATE, DIVERTER_LAG_TOLERANCE_S, AgentTiming, GateAgent
from edge_agent.assembly import AssemblySettings, ItemAssembler, SourceRead
from edge_agent.belt import BeltGeometry, DiverterTiming
from edge_agent.decision import VerifyStatus
from edge_agent.journal import GateIdentity, Journal, JournalError
from edge_agent.outbox import Outbox
from edge_agent.profile import DecisionPolicy, GateProfile, TriggerMode
from edge_agent.verify_client import VerifyClient
from edge_agent.vision.checker import FrameInput, VisionResult
from edge_agent.vision.worker import VisionWorker
from gateway.service import open_service
from gatewire.auth import derive_gate_key
from gatewire.messages import Decision, ReadSource, VisionVerdict
from gatewire.mqtt import BrokerAddress, connect, make_client
from gatewire.topics import GateTopics
from hardware.camera.frames import Frame
from hardware.gate_io import SimGateIo, SimGateIoConfig
from hardware.gate_io.interface import LightColor, LightMode
from simulators.broker import MosquittoBroker
from tests.gateway.service.support import SECRET, Site, epc, gateway_config, new_site_id
from tests.support.scheduling import WakeLog
from tests.support.waiting import wait_until

GATE = "in-01"
TIMING = AgentTiming(deadline_s=0.5, divert_s=0.7)
"""Belt: decide within 0.5 s of the photo eye, the diverter fires 0.7 s after it."""
SETTINGS = AssemblySettings(TriggerMode.PHOTO_EYE, window_s=0.1, grace_s=0.02)
POLICY = DecisionPolicy(honour_inspection=False)
"""Random inspection off: each item's decision is the gateway's verdict (tested in decision)."""
PPM = 1000.0
ENCODED_BELT = BeltGeometry(0.7, 1.0, 0.0, PPM)
"""The same belt with an encoder: 0.7 m to the diverter, 1 m/s at most, 1,000 pulses/m."""
KNOWN = (1, 2, 3)
UNKNOWN = 999


class FakeChecker:
    """A label check that answers GENUINE after ``delay_s`` (a slow model when large)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.checked = 0
        self.frames: list[Sequence[FrameInput]] = []

    def check(self, frames: Sequence[FrameInput]) -> VisionResult:
        self.checked += 1
        self.frames.append(frames)
        time.sleep(self.delay_s)
        return VisionResult(VisionVerdict.GENUINE, 0.97)


class EventSink:
    """Collects the gate events that reach the broker."""

    def __init__(self, url: str, topic: str) -> None:
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()
        self._client = make_client(f"sink-{uuid.uuid4().hex[:8]}")
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.on_message = self._on_message
        connect(self._client, BrokerAddress.from_url(url))
        self._client.subscribe(topic, qos=1)
        self._client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append(bytes(msg.payload))

    def wait(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.payloads) >= count:
                    break
            time.sleep(0.02)
        with self._lock:
            return len(self.payloads)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class Rig:
    """An agent wired to SimGateIo, a verify client, an outbox and a fake camera."""

    agent: GateAgent
    io: SimGateIo
    journal_path: Path
    identity: GateIdentity
    checker: FakeChecker
    outbox: Outbox
    scheduler: WakeLog
    """The agent's diverter timer: when each shot's callback really ran."""
    _seq: int = 0

    def item(self, read: str | None) -> float:
        """An item passes the photo eye now, its barcode read 10 ms later, one frame taken."""
        enter, _ = self.io.trigger(0.05)
        if read is not None:
            self.agent.on_read(SourceRead(ReadSource.BARCODE, read, enter.ts + 0.01, "scanner"))
        self._seq += 1
        image = np.zeros((8, 8, 3), np.uint8)
        now = time.time()
        self.agent.on_frame(Frame(image, self._seq, enter.ts + 0.02, now, "label", "fake"))
        return enter.ts

    def journal(self) -> Journal:
        return Journal.open(self.journal_path, self.identity)


@pytest.fixture
def site_id() -> str:
    return new_site_id()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Site]:
    site = Site.create(str(tmp_path / "ledger.db"), tmp_path / "keys")
    site.commissioned(*KNOWN)
    yield site
    site.close()


@pytest.fixture
def make_rig(tmp_path: Path, site_id: str) -> Iterator[Callable[..., Rig]]:
    cleanups: list[Callable[[], None]] = []
    scheduler_errors: list[BaseException] = []

    def make(
        url: str,
        *,
        vision_delay_s: float = 0.0,
        timing: AgentTiming = TIMING,
        camera_order: tuple[str, ...] = (),
        belt: BeltGeometry | None = None,
        early_frames: int = 0,
        vision_queue: int = 4,
    ) -> Rig:
        key = derive_gate_key(SECRET, site_id, GATE)
        identity = GateIdentity(site_id, GATE, key)
        path = tmp_path / "journal.db"
        encoder = None if belt is None else {"pulses_per_s": PPM * belt.max_speed_m_s}
        io = SimGateIo(
            SimGateIoConfig.model_validate(
                {"type": "sim_gate_io", "diverter_pulse_ms": 50, "encoder": encoder}
            )
        )
        io.start()
        verify = VerifyClient(url, site_id, GATE, key, batch_max=8)
        assert verify.start(5)
        checker = FakeChecker(vision_delay_s)
        worker = VisionWorker(checker, queue_size=vision_queue)
        outbox = Outbox(path, url, f"outbox-{uuid.uuid4().hex[:8]}").start()
        scheduler = WakeLog("agent-diverter", scheduler_errors.append)
        agent = GateAgent(
            assembler=ItemAssembler(SETTINGS),
            open_journal=lambda: Journal.open(path, identity),
            verify=verify,
            gate_io=io,
            timing=timing,
            policy=POLICY,
            vision=worker,
            outbox=outbox,
            scheduler=scheduler,
            camera_order=camera_order,
            belt=None if belt is None else DiverterTiming(belt, io),
            early_frames=early_frames,
        )
        unsubscribe = io.subscribe(agent.on_photo_eye)
        agent.start()

        def cleanup() -> None:
            unsubscribe()
            agent.stop()
            outbox.stop()
            worker.stop()
            verify.close()
            io.stop()

        cleanups.append(cleanup)
        return Rig(agent, io, path, identity, checker, outbox, scheduler)

    yield make
    for cleanup in cleanups:
        cleanup()
    assert scheduler_errors == []


def settle(rig: Rig, pulses: int) -> None:
    """Wait until every item is decided and the expected diverter pulses are recorded."""
    assert rig.agent.wait_idle(5)
    assert rig.io.wait_actuations(pulses, 10) if pulses else True
    # a shot hands its journal write to the agent thread after firing: wait until every
    # shot has, then until the agent thread has written them
    assert wait_until(lambda: rig.agent._shots_pending() == 0, timeout=10)
    assert rig.agent.wait_idle(5)


def test_genuine_pass_unknown_rejected_at_the_diverter_and_every_item_journaled(
    mosquitto: MosquittoBroker, ledger: Site, site_id: str, make_rig: Callable[..., Rig]
) -> None:
    service = open_service(gateway_config(ledger, mosquitto.url, site_id=site_id))
    service.start()
    sink = EventSink(mosquitto.url, GateTopics(site_id, GATE).event)
    try:
        rig = make_rig(mosquitto.url)
        triggers = {}
        for n in (*KNOWN, UNKNOWN):
            triggers[n] = rig.item(epc(n))
            time.sleep(0.15)  # one item at a time under the photo eye, several on the belt
        settle(rig, pulses=1)
        assert sink.wait(4, 5) == 4
    finally:
        sink.close()
        service.stop()
    pulses = rig.io.diverter_pulses()
    assert len(pulses) == 1, "only the unknown serial is diverted"
    planned = triggers[UNKNOWN] + TIMING.divert_s
    # fired when the item reaches the diverter (or, if the host woke the timer thread
    # late, when it woke)
    late_by = max(0.0, rig.scheduler.woke_late_by)
    assert planned <= pulses[0].ts < planned + late_by + 0.1
    with rig.journal() as journal:
        counts = journal.counts()
        records = [journal.item(f"{rig.agent.assembler.id_prefix}-{i:08d}") for i in (1, 2, 3, 4)]
    assert [r.decision if r else None for r in records] == [
        Decision.PASS,
        Decision.PASS,
        Decision.PASS,
        Decision.REJECT,
    ]
    assert records[3] is not None
    assert "ledger.unknown_serial" in records[3].reasons
    assert records[3].actuated_at is not None
    assert records[0] is not None
    assert records[0].actuated_at is None
    assert (counts.items, counts.passed, counts.rejected, counts.held) == (4, 3, 1, 0)
    assert counts.items == counts.passed + counts.rejected + counts.held
    assert len(set(sink.payloads)) == 4, "one gate event per decided item reached the broker"
    assert counts.late == 0
    assert counts.undecided == 0
    assert counts.outbox == 0
    host_late = rig.scheduler.woke_late_by > DIVERTER_LAG_TOLERANCE_S  # a loaded machine
    assert rig.agent.counters() == {
        "items": 4,
        "passed": 3,
        "rejected": 1,
        "held": 0,
        "late": 0,
        "recovered": 0,
        "diverter_late": int(host_late),
        "agent_errors": 0,
        "vision_early": 0,
    }
    assert rig.checker.checked == 4, "every item's frame went through the label check"


def test_gateway_stopped_holds_and_diverts_never_passes(
    mosquitto: MosquittoBroker, ledger: Site, site_id: str, make_rig: Callable[..., Rig]
) -> None:
    service = open_service(gateway_config(ledger, mosquitto.url, site_id=site_id))
    service.start()
    rig = make_rig(mosquitto.url)
    try:
        rig.item(epc(KNOWN[0]))
        settle(rig, pulses=0)
    finally:
        service.stop()
    trigger = rig.item(epc(KNOWN[1]))  # the same genuine item kind, nobody answers now
    settle(rig, pulses=1)
    with rig.journal() as journal:
        counts = journal.counts()
        first = journal.item(f"{rig.agent.assembler.id_prefix}-00000001")
        second = journal.item(f"{rig.agent.assembler.id_prefix}-00000002")
    assert first is not None
    assert first.decision is Decision.PASS
    assert second is not None
    assert second.decision is Decision.HOLD
    assert second.reasons[0] == VerifyStatus.TIMEOUT.value
    assert not second.late
    assert second.actuated_at is not None
    assert (counts.items, counts.passed, counts.held) == (2, 1, 1)
    (pulse,) = rig.io.diverter_pulses()
    late_by = max(0.0, rig.scheduler.woke_late_by)  # the host's wake-up of the timer thread
    assert trigger + TIMING.divert_s <= pulse.ts < trigger + TIMING.divert_s + late_by + 0.1


def test_a_decision_after_the_item_passed_the_diverter_is_late_and_held(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig(mosquitto.url, vision_delay_s=0.8)  # the label check outlasts the belt
    rig.item(epc(KNOWN[0]))
    assert rig.agent.wait_idle(5)
    with rig.journal() as journal:
        counts = journal.counts()
        record = journal.item(f"{rig.agent.assembler.id_prefix}-00000001")
    assert record is not None
    assert record.decision is Decision.HOLD
    assert record.late
    assert record.reasons[0] == DECISION_LATE
    assert record.actuated_at is None
    assert (counts.items, counts.held, counts.late) == (1, 1, 1)
    assert rig.io.diverter_pulses() == [], "too late to divert: the item is pulled by hand"
    assert rig.agent.counters()["late"] == 1


def test_items_left_undecided_by_a_crash_are_held_on_start(
    mosquitto: MosquittoBroker, tmp_path: Path, site_id: str, make_rig: Callable[..., Rig]
) -> None:
    key = derive_gate_key(SECRET, site_id, GATE)
    with Journal.open(tmp_path / "journal.db", GateIdentity(site_id, GATE, key)) as journal:
        journal.record_item(
            "crashed-1", scanned_at=time.time(), deadline=time.time() + 1, reads={"barcode": []}
        )
    rig = make_rig(mosquitto.url)
    with rig.journal() as journal:
        record = journal.item("crashed-1")
    assert record is not None
    assert record.decision is Decision.HOLD
    assert rig.agent.counters()["recovered"] == 1


def test_two_cameras_give_the_label_check_one_frame_each_angle_a_first(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig]
) -> None:
    """Camera B's frame arriving first, or camera A sending two, must not make the
    colour-shift check compare a frame with itself or swap the lighting angles."""
    rig = make_rig(mosquitto.url, camera_order=("label-a", "label-b"))
    enter, _ = rig.io.trigger(0.05)
    shots = [("label-b", 1, 7), ("label-a", 2, 1), ("label-a", 3, 2)]
    for camera, seq, value in shots:
        image = np.full((8, 8, 3), value, np.uint8)
        rig.agent.on_frame(Frame(image, seq, enter.ts + 0.01 * seq, time.time(), camera, "fake"))
    assert rig.agent.wait_idle(5)
    assert len(rig.checker.frames) == 1
    assert [int(np.asarray(f)[0, 0, 0]) for f in rig.checker.frames[0]] == [1, 7]


def test_the_label_check_starts_while_the_window_is_open_and_is_used_at_its_close(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig], ledger: Site, site_id: str
) -> None:
    """With a photo eye, the check of frames A and B runs as soon as both arrived, not when
    the window closes (0.12 s later); the window's verdict uses that check, once."""
    rig = make_rig(mosquitto.url, camera_order=("label-a", "label-b"), early_frames=2)
    service = open_service(gateway_config(ledger, mosquitto.url, site_id=site_id))
    service.start()
    try:
        enter, _ = rig.io.trigger(0.05)
        rig.agent.on_read(SourceRead(ReadSource.BARCODE, epc(1), enter.ts + 0.01, "scanner"))
        for camera, seq, value in [("label-b", 1, 7), ("label-a", 2, 1)]:
            image = np.full((8, 8, 3), value, np.uint8)
            rig.agent.on_frame(Frame(image, seq, enter.ts + 0.02, time.time(), camera, "fake"))
        deadline = time.monotonic() + 2
        while rig.checker.checked == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        assert rig.checker.checked == 1
        assert time.monotonic() < enter.ts + SETTINGS.window_s, "checked before the close"
        settle(rig, 0)
    finally:
        service.stop()
    assert rig.checker.checked == 1
    assert [int(np.asarray(f)[0, 0, 0]) for f in rig.checker.frames[0]] == [1, 7]
    assert rig.agent.counters()["vision_early"] == 1
    assert rig.agent.counters()["passed"] == 1


def test_an_early_check_of_other_frames_than_the_window_chooses_is_not_used(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig]
) -> None:
    """Camera A's first frame of the window arriving after a later one: the early check of
    the later frame is not the window's; the window's own choice is checked (once, as soon
    as that frame arrived) and used."""
    rig = make_rig(mosquitto.url, camera_order=("label-a", "label-b"), early_frames=2)
    enter, _ = rig.io.trigger(0.05)
    shots = [("label-a", 2, 2, 0.03), ("label-b", 3, 7, 0.03), ("label-a", 1, 1, 0.01)]
    for camera, seq, value, after in shots:
        image = np.full((8, 8, 3), value, np.uint8)
        rig.agent.on_frame(Frame(image, seq, enter.ts + after, time.time(), camera, "fake"))
    assert rig.agent.wait_idle(5)
    checked = [[int(np.asarray(f)[0, 0, 0]) for f in frames] for frames in rig.checker.frames]
    assert checked == [[2, 7], [1, 7]]
    assert rig.agent.counters()["vision_early"] == 1


def test_a_check_of_one_frame_takes_the_window_s_first_and_ignores_the_rest(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig]
) -> None:
    """One camera, one frame per check (no two-frame option), two taken: the early check of
    the first stands for the window; the second is never checked."""
    rig = make_rig(mosquitto.url, camera_order=("label",), early_frames=1)
    enter, _ = rig.io.trigger(0.05)
    for seq in (1, 2):
        image = np.full((8, 8, 3), seq, np.uint8)
        rig.agent.on_frame(Frame(image, seq, enter.ts + 0.01 * seq, time.time(), "label", "f"))
    assert rig.agent.wait_idle(5)
    checked = [[int(np.asarray(f)[0, 0, 0]) for f in frames] for frames in rig.checker.frames]
    assert checked == [[1]]
    assert rig.agent.counters()["vision_early"] == 1


def test_an_early_check_the_busy_worker_refused_is_asked_again_at_the_close(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig]
) -> None:
    """Three items in quick succession, a queue of one: the third's early check is refused
    (vision_busy); by its window's close there is room, and it is checked then."""
    rig = make_rig(
        mosquitto.url,
        camera_order=("label",),
        early_frames=1,
        vision_delay_s=0.04,
        vision_queue=1,
    )
    for seq in (1, 2, 3):
        enter, _ = rig.io.trigger(0.002)
        image = np.full((8, 8, 3), seq, np.uint8)
        rig.agent.on_frame(Frame(image, seq, enter.ts + 0.001, time.time(), "label", "f"))
        time.sleep(0.003)
    assert rig.agent.wait_idle(5)
    checked = [int(np.asarray(frames[0])[0, 0, 0]) for frames in rig.checker.frames]
    assert checked == [1, 2, 3]
    with rig.journal() as journal:
        third = journal.item(f"{rig.agent.assembler.id_prefix}-{3:08d}")
    assert third is not None
    assert third.vision_verdict is VisionVerdict.GENUINE


def test_a_window_without_a_read_is_held_without_asking_the_gateway(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig(mosquitto.url)
    rig.item(None)
    settle(rig, pulses=1)
    with rig.journal() as journal:
        record = journal.item(f"{rig.agent.assembler.id_prefix}-00000001")
    assert record is not None
    assert record.decision is Decision.HOLD
    assert "read.none" in record.reasons
    assert rig.agent.verify.counters().get("sent", 0) == 0


def test_from_profile_builds_a_working_agent_with_the_belt_timing(
    mosquitto: MosquittoBroker, tmp_path: Path, site_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATE_KEY", derive_gate_key(SECRET, site_id, GATE).hex())
    profile = GateProfile.model_validate(
        {
            "gate": {"site": site_id, "id": GATE, "kind": "inbound", "key_env": "GATE_KEY"},
            "devices": {
                "scanner": {"type": "serial_scanner", "port": "/dev/ttyACM0"},
                "gate_io": {"type": "sim_gate_io"},
            },
            "belt": {
                "speed_m_s": 2.0,
                "scan_to_reject_m": 1.0,
                "window_m": 0.1,
                "actuation_ms": 50,
            },
            "verification": {"mqtt_url": mosquitto.url},
            "journal": {"path": str(tmp_path / "gate.db")},
        }
    )
    agent = GateAgent.from_profile(profile)
    assert agent.timing == AgentTiming(deadline_s=profile.deadline_s, divert_s=0.45)
    io = agent.gate_io
    assert isinstance(io, SimGateIo)
    io.start()
    assert agent.verify.start(5)
    unsubscribe = io.subscribe(agent.on_photo_eye)
    agent.start()
    try:
        enter, _ = io.trigger()
        agent.on_read(SourceRead(ReadSource.BARCODE, epc(KNOWN[0]), enter.ts + 0.01))
        assert agent.wait_idle(5)
        assert io.wait_actuations(1, 3), "no gateway: held, and diverted"
        # the agent's loop drives its verify client: no sender thread, yet the item expired
        assert not [t for t in threading.enumerate() if t.name == f"verify-{GATE}"]
        assert agent.verify.counters()["timeouts"] == 1
    finally:
        unsubscribe()
        agent.stop()
        agent.verify.close()
        io.stop()
    (pulse,) = io.diverter_pulses()
    assert enter.ts + 0.45 <= pulse.ts < enter.ts + 0.55
    assert agent.counters()["held"] == 1


def test_an_item_whose_journal_batch_was_not_committed_is_held_and_not_asked(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_batch = Journal.batch
    failed: list[bool] = []

    @contextlib.contextmanager
    def batch_failing_once(journal: Journal) -> Iterator[None]:
        with real_batch(journal):
            yield
            wrote = journal.uncommitted
        if wrote and not failed:  # the commit of the item's record "failed"
            failed.append(True)
            raise JournalError("disk I/O error")

    monkeypatch.setattr(Journal, "batch", batch_failing_once)
    rig = make_rig(mosquitto.url)  # nobody answers: an asked item would time out
    rig.item(epc(KNOWN[0]))
    settle(rig, pulses=1)  # held, so diverted
    assert failed
    assert rig.agent.verify.counters().get("sent", 0) == 0, "not asked about"
    assert rig.agent.counters()["held"] == 1


def test_with_an_encoder_the_diverter_fires_when_a_slowed_item_reaches_it(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig(mosquitto.url, belt=ENCODED_BELT)  # no gateway: held at 0.5 s, diverted
    trigger = rig.item(epc(KNOWN[0]))
    rig.io.set_encoder_rate(0.5 * PPM, at=trigger + 0.2)  # 0.2 m at 1 m/s, then half speed
    settle(rig, 1)
    (pulse,) = rig.io.diverter_pulses()
    arrives = trigger + 0.2 + 0.5 / 0.5  # 1.2 s, where the top speed said 0.7 s
    assert arrives - 0.003 <= pulse.ts <= arrives + 0.02
    with rig.journal() as journal:
        record = journal.item(f"{rig.agent.assembler.id_prefix}-00000001")
    assert record is not None
    assert (record.decision, record.late) == (Decision.HOLD, False)
    assert record.actuated_at is not None


def test_with_an_encoder_a_stopped_belt_makes_a_slow_decision_in_time(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig]
) -> None:
    # the label check takes 0.8 s, past the top-speed time (0.7 s), but the belt stopped
    rig = make_rig(mosquitto.url, vision_delay_s=0.8, belt=ENCODED_BELT)
    trigger = rig.item(epc(KNOWN[0]))
    rig.io.set_encoder_rate(0.0, at=trigger + 0.1)
    rig.io.set_encoder_rate(PPM, at=trigger + 1.1)  # runs again with 0.6 m to go
    settle(rig, 1)
    with rig.journal() as journal:
        record = journal.item(f"{rig.agent.assembler.id_prefix}-00000001")
    assert record is not None
    assert record.decision is Decision.HOLD  # the gateway's deadline had passed
    assert not record.late
    assert DECISION_LATE not in record.reasons
    (pulse,) = rig.io.diverter_pulses()
    assert trigger + 1.7 - 0.003 <= pulse.ts <= trigger + 1.7 + 0.02
    assert rig.agent.counters()["late"] == 0


def test_with_a_stuck_encoder_every_decision_is_late_and_held(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig(mosquitto.url, belt=ENCODED_BELT)
    now = time.monotonic()
    rig.io.set_encoder_rate(0.0, at=now)  # the wheel stops; items still pass the eye
    rig.io.simulate_item(now, now + 0.05)
    assert rig.agent.wait_idle(5)
    assert rig.agent.belt is not None
    assert rig.agent.belt.encoder_fault is not None
    with rig.journal() as journal:
        record = journal.item(f"{rig.agent.assembler.id_prefix}-00000001")
    assert record is not None
    assert (record.decision, record.late) == (Decision.HOLD, True)
    assert rig.io.diverter_pulses() == []


def test_a_diverter_shot_delayed_by_a_starved_host_is_counted_and_flagged(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig]
) -> None:
    """The scheduler thread fires 50 ms after the item's moment (CPU starvation): the item may
    have gone by, so the shot is counted late and the amber lamp asks for a hand check."""
    rig = make_rig(mosquitto.url)
    call_at = rig.agent._scheduler.call_at
    rig.agent._scheduler.call_at = lambda deadline, callback: call_at(deadline + 0.05, callback)  # type: ignore[method-assign]
    rig.item(None)  # nothing read: held and diverted
    settle(rig, pulses=1)
    assert rig.agent.counters()["diverter_late"] == 1
    assert rig.io.lights()[LightColor.AMBER] is LightMode.BLINK


def test_a_diverter_shot_on_time_is_not_flagged(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig]
) -> None:
    rig = make_rig(mosquitto.url)
    rig.item(None)
    settle(rig, pulses=1)
    # on time unless the host woke the timer thread late (a loaded machine): then flagged
    host_late = rig.scheduler.woke_late_by > DIVERTER_LAG_TOLERANCE_S
    assert rig.agent.counters()["diverter_late"] == int(host_late)
    assert (rig.io.lights().get(LightColor.AMBER) is LightMode.BLINK) is host_late


def test_a_pass_whose_journal_write_failed_is_held_and_diverted(
    mosquitto: MosquittoBroker,
    ledger: Site,
    site_id: str,
    make_rig: Callable[..., Rig],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway says PASS but the decision cannot be journaled (disk full): never PASS."""

    def failing(*_args: object, **_kwargs: object) -> None:
        raise JournalError("database or disk is full")

    monkeypatch.setattr(Journal, "record_decision", failing)
    service = open_service(gateway_config(ledger, mosquitto.url, site_id=site_id))
    service.start()
    try:
        rig = make_rig(mosquitto.url)
        rig.item(epc(KNOWN[0]))
        settle(rig, pulses=1)
    finally:
        service.stop()
    assert rig.agent.verify.counters().get("sent", 0) == 1
    counters = rig.agent.counters()
    assert (counters["passed"], counters["held"]) == (0, 1)


def test_a_pass_whose_journal_batch_was_not_committed_is_held_and_diverted(
    mosquitto: MosquittoBroker,
    ledger: Site,
    site_id: str,
    make_rig: Callable[..., Rig],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch holding the PASS decision fails to commit: the PASS is not durable."""
    real_batch, real_decision = Journal.batch, Journal.record_decision
    decided: list[bool] = []
    failed: list[bool] = []

    def record_decision(journal: Journal, *args: Any, **kwargs: Any) -> str | None:
        decided.append(True)
        return real_decision(journal, *args, **kwargs)

    @contextlib.contextmanager
    def batch_failing_once(journal: Journal) -> Iterator[None]:
        decided.clear()
        with real_batch(journal):
            yield
        if decided and not failed:  # the commit of the decision "failed"
            failed.append(True)
            raise JournalError("disk I/O error")

    monkeypatch.setattr(Journal, "batch", batch_failing_once)
    monkeypatch.setattr(Journal, "record_decision", record_decision)
    service = open_service(gateway_config(ledger, mosquitto.url, site_id=site_id))
    service.start()
    try:
        rig = make_rig(mosquitto.url)
        rig.item(epc(KNOWN[0]))
        settle(rig, pulses=1)
    finally:
        service.stop()
    assert failed
    counters = rig.agent.counters()
    assert (counters["passed"], counters["held"]) == (0, 1)


def test_stop_lets_the_scheduled_diverter_shots_fire(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig]
) -> None:
    """An item decided HOLD whose shot is still ahead when the agent stops is diverted."""
    rig = make_rig(mosquitto.url)
    trigger = rig.item(None)  # nothing read: held at once, the shot 0.7 s after the trigger
    assert rig.agent.wait_idle(5)
    assert time.monotonic() < trigger + TIMING.divert_s
    rig.agent.stop()
    (pulse,) = rig.io.diverter_pulses()
    assert pulse.ts >= trigger + TIMING.divert_s
    with rig.journal() as journal:
        record = journal.item(f"{rig.agent.assembler.id_prefix}-00000001")
    assert record is not None
    assert record.actuated_at is not None


def test_an_action_that_raises_after_the_commit_does_not_drop_the_diverter_shot(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox notice raising (ahead of the shot in the batch) neither kills the agent
    thread nor loses the held item's diverter shot."""
    rig = make_rig(mosquitto.url)

    def broken() -> None:
        raise RuntimeError("outbox gone")

    monkeypatch.setattr(rig.outbox, "notify", broken)
    rig.item(None)  # nothing read: held and diverted
    settle(rig, pulses=1)
    rig.item(None)
    settle(rig, pulses=2)
    assert rig.agent.counters()["held"] == 2


def test_a_bug_handling_one_item_does_not_stop_the_agent(
    mosquitto: MosquittoBroker, make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first decision raises (a bug): it is counted and flagged, and the next item is
    still decided and diverted (a dead agent thread would divert nothing)."""
    real_fuse = decision_module.fuse
    calls = {"n": 0}

    def fuse_failing_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("bug")
        return real_fuse(*args, **kwargs)

    monkeypatch.setattr("edge_agent.agent.fuse", fuse_failing_once)
    rig = make_rig(mosquitto.url)
    rig.item(None)  # its decision fails: held and diverted all the same
    time.sleep(0.2)
    rig.item(None)  # nothing read: held and diverted
    assert rig.agent.wait_idle(5)
    deadline = time.monotonic() + 3
    while len(rig.io.diverter_pulses()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    counters = rig.agent.counters()
    assert counters["agent_errors"] == 1
    assert counters["held"] == 2
    assert len(rig.io.diverter_pulses()) == 2
    assert rig.io.lights()[LightColor.AMBER] is LightMode.BLINK
