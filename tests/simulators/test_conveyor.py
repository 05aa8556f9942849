"""The conveyor drives the real drivers through simulated devices on ptys: each item gives
one photo-eye window holding its barcode, its tag and its frames (A before B), on time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from edge_agent.assembly import AssembledItem, AssemblySettings, FrameRef, ItemAssembler, SourceRead
from edge_agent.profile import TriggerMode
from gatewire.epc import encode_sgtin_hex
from gatewire.identity import parse_item_id
from gatewire.messages import ReadSource
from hardware.barcode.config import SerialScannerConfig
from hardware.barcode.driver import SerialScanner
from hardware.camera.config import OpenCvCameraConfig
from hardware.camera.driver import OpenCvCamera
from hardware.camera.frames import Frame
from hardware.gate_io import SimGateIo, SimGateIoConfig
from hardware.gate_io.interface import PhotoEyeEvent
from hardware.rfid.config import ThingMagicConfig
from hardware.rfid.driver import ThingMagicReader
from simulators.belt_camera import SOURCE_PREFIX, BeltCameras
from simulators.conveyor import BeltItem, Conveyor
from simulators.rfid_reader import SimulatorSettings
from simulators.scanner import SimulatedScanner
from simulators.serial_endpoint import PtyEndpoint
from simulators.thingmagic import ThingMagicSimulator
from tests.support.waiting import wait_until

WINDOW_S = 0.02
LEAD_S = 0.002
GRACE_S = 0.005
RATE = 20.0
# The Belt rig's item window and pace: the drivers stamp a read when their thread gets it,
# so a loaded machine gets 100+ ms for that, both before the item's window ends and before
# the next one opens (with a 20 ms window 50 ms apart, reads of loaded runs fell outside
# their window, some into the next item's).
BELT_WINDOW_S = 0.15
BELT_RATE = 4.0


def uri(n: int) -> str:
    return f"urn:epc:id:sgtin:4012345.012345.{n}"


def belt_item(seq: int, *, frames: int = 2) -> BeltItem:
    """Item ``seq``: a GS1 DataMatrix scan, its SGTIN-96 tag and frames marked with it."""
    parsed = parse_item_id(uri(seq)).item
    assert parsed is not None
    images = tuple(np.full((8, 8, 3), (10 * seq + shot) % 256, np.uint8) for shot in range(frames))
    return BeltItem(seq, f"]d201{parsed.gtin}21{parsed.serial}", encode_sgtin_hex(uri(seq)), images)


@dataclass
class Belt:
    """A gate's devices on a belt: real drivers feeding one item assembler."""

    io: SimGateIo
    scanner: SimulatedScanner
    rfid: ThingMagicSimulator
    cameras: BeltCameras
    drivers: list[SerialScanner | ThingMagicReader | OpenCvCamera]
    lock: threading.Lock = field(default_factory=threading.Lock)
    inputs: list[tuple[str, object]] = field(default_factory=list)
    images: dict[tuple[str, int], int] = field(default_factory=dict)

    def conveyor(
        self, items: list[BeltItem], cameras: list[str], rate: float = BELT_RATE
    ) -> Conveyor:
        return Conveyor(
            items,
            rate=rate,
            window_s=BELT_WINDOW_S,
            lead_s=LEAD_S,
            gate_io=self.io,
            scanner=self.scanner,
            rfid=self.rfid,
            cameras=[self.cameras[name] for name in cameras],
        )

    def put(self, kind: str, value: object) -> None:
        with self.lock:
            self.inputs.append((kind, value))

    def on_frame(self, frame: Frame) -> None:
        with self.lock:
            self.images[(frame.camera, frame.seq)] = int(frame.image[0, 0, 0])
        self.put("frame", FrameRef.from_frame(frame))

    def wait_inputs(self, reads: int, frames: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``reads`` reads and ``frames`` frames reached the drivers'
        callbacks (the belt is done once the devices got them; the drivers run on)."""

        def arrived() -> bool:
            with self.lock:
                kinds = [kind for kind, _ in self.inputs]
            return kinds.count("read") >= reads and kinds.count("frame") >= frames

        return wait_until(arrived, timeout)

    def assemble(self) -> list[AssembledItem]:
        """The item windows the inputs make, as the agent's assembler cuts them."""
        assembler = ItemAssembler(
            AssemblySettings(TriggerMode.PHOTO_EYE, BELT_WINDOW_S, LEAD_S, grace_s=GRACE_S)
        )
        with self.lock:
            inputs = list(self.inputs)
        for kind, value in inputs:
            if kind == "eye":
                assert isinstance(value, PhotoEyeEvent)
                assembler.photo_eye(value)
            elif kind == "read":
                assert isinstance(value, SourceRead)
                assembler.read(value)
            else:
                assert isinstance(value, FrameRef)
                assembler.frame(value)
        return assembler.flush()


@pytest.fixture
def belt() -> Iterator[Belt]:
    io = SimGateIo(SimGateIoConfig(type="sim_gate_io", debounce_ms=0))
    io.start()
    scanner = SimulatedScanner(PtyEndpoint(), ["-"], wait_for_reader=False)
    rfid = ThingMagicSimulator(PtyEndpoint(), SimulatorSettings(read_rate_hz=500, multi_reads=2))
    rfid.start()
    cameras = BeltCameras(["label-a", "label-b"])
    rig = Belt(io, scanner, rfid, cameras, [])
    io.subscribe(lambda event: rig.put("eye", event))
    scan_cfg = SerialScannerConfig(
        type="serial_scanner", port=scanner.url, require_aim=True, dedup_window_s=0.01
    )
    rfid_cfg = ThingMagicConfig(type="thingmagic_mercury", port=rfid.url, window_s=0.02)
    rig.drivers = [
        SerialScanner(scan_cfg, on_scan=lambda e: rig.put("read", SourceRead.from_scan(e))),
        ThingMagicReader(
            rfid_cfg, on_sighting=lambda s: rig.put("read", SourceRead.from_sighting(s))
        ),
    ]
    for name in ("label-a", "label-b"):
        config = OpenCvCameraConfig(type="opencv_camera", name=name, source=SOURCE_PREFIX + name)
        rig.drivers.append(OpenCvCamera(config, on_frame=rig.on_frame, open_source=cameras.open))
    for driver in rig.drivers:
        driver.start()
    yield rig
    cameras.shut()
    for driver in rig.drivers:
        driver.stop()
    rfid.close()
    scanner.endpoint.close()
    io.stop()


def test_each_item_gives_one_window_with_its_barcode_tag_and_frames_a_then_b(
    belt: Belt,
) -> None:
    items = [belt_item(seq) for seq in range(1, 9)]
    conveyor = belt.conveyor(items, ["label-a", "label-b"]).start()
    assert conveyor.wait(10)
    assert belt.wait_inputs(reads=2 * len(items), frames=2 * len(items))
    windows = belt.assemble()
    assert len(windows) == len(items)
    for item, window in zip(items, windows, strict=True):
        assert window.item is not None
        assert window.item.serial == str(item.seq), "the window names its own item"
        assert window.sources == (ReadSource.BARCODE, ReadSource.RFID)
        assert not window.reasons, window.reasons
        assert [(f.camera, belt.images[(f.camera, f.seq)]) for f in window.frames] == [
            ("label-a", 10 * item.seq),
            ("label-b", 10 * item.seq + 1),
        ], "frame A from camera A, then frame B from camera B"
    assert conveyor.errors == 0


def test_items_reach_the_photo_eye_at_the_rate_and_reads_fall_in_their_window(
    belt: Belt,
) -> None:
    items = [belt_item(seq, frames=1) for seq in range(10)]
    conveyor = belt.conveyor(items, ["label-a"], rate=BELT_RATE).start()
    assert conveyor.wait(10)
    assert belt.wait_inputs(reads=2 * len(items), frames=len(items))
    passages = conveyor.passages
    assert [p.seq for p in passages] == [i.seq for i in items]
    # the schedule: 1/rate apart, each longer gap made by a slip the belt counted (its
    # thread fell behind on a loaded machine)
    spacing = np.diff([p.scheduled for p in passages]) - 1 / BELT_RATE
    assert np.all(spacing > -1e-9), spacing
    assert np.count_nonzero(spacing > 1e-6) <= conveyor.slips, (spacing, conveyor.slips)
    # each trigger on that schedule: never before it, and typically within a fraction of
    # a ms (a stall of the belt thread between its clock read and the edge makes a rare
    # outlier on a loaded machine)
    lateness = [p.trigger - p.scheduled for p in passages]
    assert min(lateness) > -0.001, lateness
    assert float(np.median(lateness)) < 0.01, lateness
    windows = belt.assemble()
    assert len(windows) == len(items)
    for passage, window in zip(passages, windows, strict=True):
        assert window.trigger_ts == passage.trigger
        assert all(passage.trigger <= r.ts < passage.trigger + BELT_WINDOW_S for r in window.reads)
        assert [f.camera for f in window.frames] == ["label-a"]
        assert passage.trigger <= window.frames[0].ts < passage.trigger + BELT_WINDOW_S


def test_two_frames_on_one_camera_come_in_order(belt: Belt) -> None:
    items = [belt_item(seq) for seq in range(1, 4)]
    assert belt.conveyor(items, ["label-a"]).start().wait(10)
    assert belt.wait_inputs(reads=2 * len(items), frames=2 * len(items))
    for item, window in zip(items, belt.assemble(), strict=True):
        assert [belt.images[(f.camera, f.seq)] for f in window.frames] == [
            10 * item.seq,
            10 * item.seq + 1,
        ]


def test_stop_ends_the_belt_promptly_and_clears_the_field(belt: Belt) -> None:
    items = [belt_item(seq, frames=1) for seq in range(100)]
    conveyor = belt.conveyor(items, ["label-a"], rate=10.0).start()
    deadline = time.monotonic() + 5
    while len(conveyor.passages) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    conveyor.stop()
    assert time.monotonic() - started < 0.5
    assert conveyor.done
    assert 0 < len(conveyor.passages) < len(items)
    assert belt.rfid.tags == []


def test_bad_belt_settings_are_refused(belt: Belt) -> None:
    with pytest.raises(ValueError, match="rate"):
        belt.conveyor([belt_item(1)], ["label-a"], rate=0.0)
    with pytest.raises(ValueError, match="distinct"):
        belt.conveyor([belt_item(1), belt_item(1)], ["label-a"])


def test_next_item_waits_until_a_slow_camera_has_captured_the_last_one() -> None:
    io = SimGateIo(SimGateIoConfig(type="sim_gate_io", debounce_ms=0))
    io.start()
    camera = BeltCameras(["label"])["label"]
    taken_at: list[float] = []

    def slow_driver() -> None:  # a capture thread starved of CPU for 80 ms per frame
        while True:
            time.sleep(0.08)
            if camera.read().image is None:
                return
            taken_at.append(time.monotonic())

    reader = threading.Thread(target=slow_driver, daemon=True)
    reader.start()
    items = [belt_item(seq, frames=1) for seq in range(4)]
    conveyor = Conveyor(items, rate=RATE, window_s=WINDOW_S, gate_io=io, cameras=[camera])
    try:
        assert conveyor.start().wait(5)
    finally:
        camera.shut()
        reader.join(2)
        io.stop()
    triggers = [p.trigger for p in conveyor.passages]
    assert len(taken_at) == len(items)
    for previous_frame, next_trigger in zip(taken_at, triggers[1:], strict=False):
        assert previous_frame < next_trigger, "a late frame never reaches the next item"
    assert conveyor.slips > 0, "the belt slipped while it waited"


def test_a_scanner_port_nobody_opens_ends_the_belt_with_an_error_instead_of_a_hang() -> None:
    io = SimGateIo(SimGateIoConfig(type="sim_gate_io", debounce_ms=0))
    io.start()
    scanner = SimulatedScanner(PtyEndpoint(), ["-"], wait_for_reader=False)  # no driver
    conveyor = Conveyor(
        [belt_item(seq) for seq in range(3)],
        rate=RATE,
        window_s=WINDOW_S,
        gate_io=io,
        scanner=scanner,
        ready_timeout_s=0.3,
    )
    try:
        assert conveyor.start().wait(3)
    finally:
        conveyor.stop()
        scanner.endpoint.close()
        io.stop()
    assert conveyor.passages == []
    assert conveyor.errors == 1


def test_stop_ends_the_wait_for_the_scanners_port_at_once() -> None:
    io = SimGateIo(SimGateIoConfig(type="sim_gate_io", debounce_ms=0))
    io.start()
    scanner = SimulatedScanner(PtyEndpoint(), ["-"], wait_for_reader=False)
    conveyor = Conveyor([belt_item(0)], rate=RATE, window_s=WINDOW_S, gate_io=io, scanner=scanner)
    try:
        conveyor.start()
        time.sleep(0.1)
        started = time.monotonic()
        conveyor.stop()
        assert conveyor.done
        assert time.monotonic() - started < 0.5
    finally:
        scanner.endpoint.close()
        io.stop()
    assert conveyor.errors == 0
