"""SimGateIo: actuations recorded with their times, photo-eye items, faults and recovery."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from hardware.backoff import Backoff
from hardware.gate_io.config import SimGateIoConfig
from hardware.gate_io.interface import (
    ActuationKind,
    LightColor,
    LightMode,
    PhotoEyeEdge,
    PhotoEyeEvent,
)
from hardware.gate_io.sim import SimGateIo
from hardware.health import DeviceState
from tests.support.waiting import wait_until

FAST = Backoff(initial=0.02, maximum=0.05)


class OutputLog(SimGateIo):
    """SimGateIo that keeps each change it drives on its diverter output, with its
    ``time.monotonic()``: a pulse's length is then read from the output itself, not from
    when a (possibly stalled) test thread looked."""

    def __init__(self, config: SimGateIoConfig, *, backoff: Backoff | None = None) -> None:
        super().__init__(config, backoff=backoff)
        self.diverter_output: list[tuple[bool, float]] = []

    def _drive_diverter(self, on: bool) -> None:
        super()._drive_diverter(on)
        self.diverter_output.append((on, time.monotonic()))


def sim_config(**overrides: object) -> SimGateIoConfig:
    return SimGateIoConfig.model_validate({"type": "sim_gate_io", **overrides})


@pytest.fixture
def gate() -> Iterator[OutputLog]:
    io = OutputLog(sim_config(debounce_ms=10), backoff=FAST)
    with io:
        yield io


def test_diverter_pulse_is_recorded_with_its_time_and_length(gate: OutputLog) -> None:
    before = time.monotonic()
    actuation = gate.fire_diverter(0.05)
    returned = time.monotonic()
    assert actuation.applied
    assert (actuation.kind, actuation.target, actuation.value) == (
        ActuationKind.DIVERTER,
        "diverter",
        "pulse",
    )
    assert before <= actuation.ts <= returned
    assert actuation.duration == 0.05
    assert wait_until(lambda: not gate.diverter_active())
    (on, on_at), (off, off_at) = gate.diverter_output
    assert (on, off) == (True, False)
    assert before <= on_at <= returned  # driven on by the call
    assert off_at - actuation.ts >= 0.05  # and held for the whole pulse
    assert gate.actuations == [actuation]
    assert gate.diverter_pulses() == [actuation]


def test_fire_diverter_returns_at_once_and_uses_the_configured_length() -> None:
    gate = OutputLog(sim_config(diverter_pulse_ms=400))
    with gate:
        actuation = gate.fire_diverter()
        returned = time.monotonic()
        assert actuation.duration == pytest.approx(0.4)
        assert wait_until(lambda: not gate.diverter_active())
        (_, off_at) = gate.diverter_output[-1]
    assert returned < off_at  # the pulse ran on without the caller


def test_a_second_pulse_extends_the_first(gate: OutputLog) -> None:
    first = gate.fire_diverter(0.3)
    second = gate.fire_diverter(0.5)  # fired while the first runs; ends 0.2 s after it
    assert second.ts < first.ts + 0.3
    assert wait_until(lambda: not gate.diverter_active())
    (on, _), (off, off_at) = gate.diverter_output  # one pulse: on once, off once
    assert (on, off) == (True, False)
    assert off_at >= second.ts + 0.5  # not at the first pulse's end
    assert len(gate.diverter_pulses()) == 2


def test_overlong_pulse_is_cut_to_the_safety_cap() -> None:
    with SimGateIo(sim_config(max_diverter_pulse_ms=100, diverter_pulse_ms=50)) as io:
        assert io.fire_diverter(5.0).duration == pytest.approx(0.1)
        assert io.health().counters["pulses_clamped"] == 1


@pytest.mark.parametrize("duration", [0.0, -1.0, float("nan"), float("inf")])
def test_a_nonsense_pulse_length_is_a_caller_error(gate: SimGateIo, duration: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        gate.fire_diverter(duration)
    assert gate.actuations == []


def test_stack_light_changes_are_recorded_and_kept(gate: OutputLog) -> None:
    gate.set_light(LightColor.GREEN, LightMode.ON)
    amber = gate.set_light("amber", "blink")
    assert (amber.kind, amber.target, amber.value, amber.duration) == (
        ActuationKind.LIGHT,
        "amber",
        "blink",
        None,
    )
    assert gate.lights() == {
        LightColor.GREEN: LightMode.ON,
        LightColor.AMBER: LightMode.BLINK,
        LightColor.RED: LightMode.OFF,
    }
    with pytest.raises(ValueError, match="purple"):
        gate.set_light("purple", "on")


def test_simulated_item_delivers_enter_and_leave_with_its_times(gate: OutputLog) -> None:
    seen: list[PhotoEyeEvent] = []
    gate.subscribe(seen.append)
    enter, leave = gate.simulate_item(100.0, 100.25)
    assert [(e.edge, e.ts, e.item) for e in seen] == [
        (PhotoEyeEdge.ENTER, 100.0, 1),
        (PhotoEyeEdge.LEAVE, 100.25, 1),
    ]
    assert leave.blocked_s == pytest.approx(0.25)
    assert gate.events == [enter, leave]
    second, _ = gate.trigger()
    assert second.item == 2
    assert gate.health().counters["items"] == 2


def test_raw_beam_is_debounced_like_a_real_sensor(gate: OutputLog) -> None:
    t0 = time.monotonic()
    gate.set_beam(True, t0)
    gate.set_beam(False, t0 + 0.001)  # bounce
    gate.set_beam(True, t0 + 0.002)
    assert wait_until(gate.item_present)
    gate.set_beam(False)
    assert wait_until(lambda: not gate.item_present())
    gate.set_beam(True)
    gate.set_beam(False)  # a blip: a fly through the beam
    assert wait_until(lambda: gate.health().counters["glitches"] == 1)  # its timer ran
    events = gate.events
    assert [(e.edge, e.item) for e in events] == [
        (PhotoEyeEdge.ENTER, 1),
        (PhotoEyeEdge.LEAVE, 1),
    ]
    assert events[0].ts == t0
    assert gate.health().counters["glitches"] == 1


def test_unsubscribed_listener_hears_nothing_more(gate: OutputLog) -> None:
    seen: list[PhotoEyeEvent] = []
    unsubscribe = gate.subscribe(seen.append)
    gate.trigger()
    unsubscribe()
    gate.trigger()
    assert len(seen) == 2


def test_a_failing_listener_is_counted_and_others_still_hear(gate: OutputLog) -> None:
    def broken(event: PhotoEyeEvent) -> None:
        raise RuntimeError("listener bug")

    seen: list[PhotoEyeEvent] = []
    gate.subscribe(broken)
    gate.subscribe(seen.append)
    gate.trigger()
    assert len(seen) == 2
    assert gate.health().counters["callback_errors"] == 2


def test_outputs_before_start_are_not_applied() -> None:
    io = SimGateIo(sim_config())
    actuation = io.fire_diverter(0.01)
    assert not actuation.applied
    assert actuation.error == "gate I/O unavailable: not started"
    assert io.actuations == [actuation]  # the attempt is still on record
    assert io.health().counters["actuation_errors"] == 1


def test_io_fault_is_reported_then_recovered_in_the_background(gate: OutputLog) -> None:
    gate.set_light("green", "on")
    gate.fail("relay board unplugged")
    failed = gate.fire_diverter(0.01)
    assert not failed.applied
    assert failed.error == "diverter: relay board unplugged"
    health = gate.health()
    assert health.state is DeviceState.UNHEALTHY
    assert health.last_error == "diverter: relay board unplugged"
    assert not gate.fire_diverter(0.01).applied  # still down: refused without trying
    assert wait_until(lambda: gate.health().counters["open_failures"] >= 1)
    gate.repair()
    assert gate.wait_healthy(10.0)
    assert gate.fire_diverter(0.01).applied
    assert gate.health().reconnects == 1
    assert gate.lights()[LightColor.GREEN] is LightMode.ON


def test_concurrent_actuations_are_all_recorded(gate: OutputLog) -> None:
    def fire() -> None:
        for _ in range(50):
            gate.fire_diverter(0.001)

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gate.wait_actuations(200, 1.0)
    stamps = [a.ts for a in gate.actuations]
    assert len(stamps) == 200
    assert stamps == sorted(stamps)  # recorded in the order they happened
    assert gate.health().counters["diverter_pulses"] == 200


def test_stop_switches_everything_off(gate: OutputLog) -> None:
    gate.fire_diverter(1.0)
    gate.set_light("red", "on")
    gate.stop()
    assert not gate.diverter_active()
    assert set(gate.lights().values()) == {LightMode.OFF}
    assert gate.health().state is DeviceState.STOPPED
