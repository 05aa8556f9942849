"""Diverter timing by belt travel: with an encoder the diverter fires when the item is one
actuation time from it, however the belt's speed changed on the way; without one, at the
top-speed time; a decision after that point is late."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

import pytest

from edge_agent.belt import BeltGeometry, BeltScheduler, DiverterTiming
from edge_agent.profile import BeltSettings
from hardware.gate_io.config import SimGateIoConfig
from hardware.gate_io.interface import PhotoEyeEdge, PhotoEyeEvent
from hardware.gate_io.sim import SimGateIo
from tests.support.scheduling import WakeLog

PPM = 2000.0  # pulses per metre
GEOMETRY = BeltGeometry(scan_to_reject_m=0.3, max_speed_m_s=1.0, actuation_s=0.02, pulses_per_m=PPM)
# A shot may come EARLY_S before its moment, and LATE_S after its moment or, when the timer
# thread woke after that moment (a loaded machine), after the wake-up.
EARLY_S, LATE_S = 0.003, 0.010


def sim_gate(pulses_per_s: float | None) -> SimGateIo:
    fields: dict[str, object] = {"type": "sim_gate_io", "debounce_ms": 0}
    if pulses_per_s is not None:
        fields["encoder"] = {"pulses_per_s": pulses_per_s}
    return SimGateIo(SimGateIoConfig.model_validate(fields))


@pytest.fixture
def gate() -> Iterator[SimGateIo]:
    with sim_gate(PPM * 1.0) as io:  # the belt runs at 1 m/s
        yield io


def on_time(fired: float, expected: float, scheduler: WakeLog) -> bool:
    """Whether a shot at ``fired`` kept to its moment ``expected``: not early, and late
    only by the wake-up of the check that fired it (the last to run)."""
    return expected - EARLY_S <= fired <= max(expected, scheduler.woke) + LATE_S


@pytest.fixture
def scheduler() -> Iterator[WakeLog]:
    errors: list[BaseException] = []
    timer = WakeLog("test-belt", errors.append)
    timer.start()
    yield timer
    timer.stop()
    assert not errors


class Shots:
    """Records when the diverter fired, through the sim gate I/O."""

    def __init__(self, gate: SimGateIo) -> None:
        self.gate = gate
        self.lags: list[float] = []
        self.done = threading.Event()

    def __call__(self, lag_s: float) -> None:
        self.gate.fire_diverter(0.05)
        self.lags.append(lag_s)
        self.done.set()

    def fired_at(self, timeout: float = 3.0) -> float:
        assert self.done.wait(timeout), "the diverter never fired"
        (pulse,) = self.gate.diverter_pulses()
        return pulse.ts


def speeds(gate: SimGateIo, start: float, profile: list[tuple[float, float]]) -> None:
    """Script the belt: from ``start + t`` it runs at ``speed`` m/s, for each (t, speed)."""
    for t, speed in profile:
        gate.set_encoder_rate(speed * PPM, at=start + t)


def test_a_belt_that_slows_mid_travel_delays_the_shot_to_when_the_item_arrives(
    gate: SimGateIo, scheduler: WakeLog
) -> None:
    timing = DiverterTiming(GEOMETRY, gate)
    belts = BeltScheduler(timing, scheduler.call_at)
    shots = Shots(gate)
    t0 = time.monotonic() + 0.05
    speeds(gate, t0, [(0.0, 1.0), (0.1, 0.5)])  # 0.1 m at 1 m/s, then half speed
    belts.when_reached(t0, shots)
    # 0.2 m left at 0.5 m/s: at the diverter at t0 + 0.5; fire one actuation time before
    expected = t0 + 0.1 + 0.2 / 0.5 - GEOMETRY.actuation_s
    fired = shots.fired_at()
    assert on_time(fired, expected, scheduler)
    assert fired - (t0 + GEOMETRY.fixed_divert_s) > 0.15  # the top-speed time was far too early
    assert len(shots.lags) == 1
    assert 0.0 <= shots.lags[0] <= max(0.0, scheduler.woke - expected) + LATE_S
    assert belts.checks < 30


def test_a_stopped_belt_holds_the_shot_until_it_runs_again(
    gate: SimGateIo, scheduler: WakeLog
) -> None:
    timing = DiverterTiming(GEOMETRY, gate)
    belts = BeltScheduler(timing, scheduler.call_at)
    shots = Shots(gate)
    t0 = time.monotonic() + 0.05
    speeds(gate, t0, [(0.0, 1.0), (0.1, 0.0), (0.4, 1.0)])  # stopped 300 ms with 0.2 m left
    belts.when_reached(t0, shots, trigger_count=gate.encoder_count(t0))
    assert not shots.done.wait(t0 + 0.38 - time.monotonic())  # nothing while it stands
    expected = t0 + 0.4 + 0.2 / 1.0 - GEOMETRY.actuation_s
    fired = shots.fired_at()
    assert on_time(fired, expected, scheduler)


def test_a_belt_that_speeds_up_to_its_top_speed_is_caught_in_time(
    gate: SimGateIo, scheduler: WakeLog
) -> None:
    timing = DiverterTiming(GEOMETRY, gate)
    belts = BeltScheduler(timing, scheduler.call_at)
    shots = Shots(gate)
    t0 = time.monotonic() + 0.05
    speeds(gate, t0, [(0.0, 0.25), (0.3, 1.0)])  # 0.075 m slowly, then top speed
    belts.when_reached(t0, shots)
    expected = t0 + 0.3 + (0.3 - 0.075) / 1.0 - GEOMETRY.actuation_s
    fired = shots.fired_at()
    assert on_time(fired, expected, scheduler)
    assert belts.overspeed == 0


def test_a_belt_faster_than_its_top_speed_is_reported(gate: SimGateIo, scheduler: WakeLog) -> None:
    belts = BeltScheduler(DiverterTiming(GEOMETRY, gate), scheduler.call_at)
    shots = Shots(gate)
    t0 = time.monotonic() + 0.05
    speeds(gate, t0, [(0.0, 0.5), (0.1, 1.5)])  # speed_m_s says 1 m/s
    belts.when_reached(t0, shots)
    shots.fired_at()
    assert belts.overspeed >= 1


def test_an_unreadable_belt_position_fires_the_shot_at_once_instead_of_losing_it(
    gate: SimGateIo, scheduler: WakeLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check that cannot read the encoder (a driver bug, a vanished device) must not end
    the item's schedule without a shot: the item would pass the diverter unhandled."""
    timing = DiverterTiming(GEOMETRY, gate)
    belts = BeltScheduler(timing, scheduler.call_at)
    shots = Shots(gate)
    t0 = time.monotonic() + 0.05
    speeds(gate, t0, [(0.0, 0.5)])  # slow: the first check (top-speed time) keeps waiting

    def unreadable(*_args: object) -> tuple[float, float] | None:
        raise OSError("encoder gone")

    belts.when_reached(t0, shots)
    monkeypatch.setattr(timing, "remaining_and_speed", unreadable)
    expected = t0 + GEOMETRY.fixed_divert_s
    fired = shots.fired_at()
    assert on_time(fired, expected, scheduler)
    assert belts.errors == 1
    assert shots.lags == [math.inf], "flagged: the item may not be at the diverter yet"
    assert timing.encoder_fault is not None, "no decision is timed by it any more"
    assert timing.late(t0 + 1.0, t0 + 1.0), "so every later decision is held"


def test_without_an_encoder_the_shot_comes_at_the_top_speed_time(scheduler: WakeLog) -> None:
    with sim_gate(None) as gate:
        timing = DiverterTiming(GEOMETRY, gate)  # pulses_per_m, but the I/O counts none
        assert not timing.encoder
        shots = Shots(gate)
        t0 = time.monotonic()
        BeltScheduler(timing, scheduler.call_at).when_reached(t0, shots)
        expected = t0 + 0.3 / 1.0 - 0.02
        assert on_time(shots.fired_at(), expected, scheduler)
        assert timing.late(t0, expected + 0.001)
        assert not timing.late(t0, expected - 0.001)


def test_a_shot_whose_moment_passed_fires_at_once_and_says_how_late(
    gate: SimGateIo, scheduler: WakeLog
) -> None:
    timing = DiverterTiming(GEOMETRY, gate)
    shots = Shots(gate)
    time.sleep(0.03)  # the belt has run longer than the speed window (20 ms)
    now = time.monotonic()
    count = gate.encoder_count(now)
    assert count is not None
    # triggered 0.5 m of travel ago: it reached the diverter 0.2 m (200 ms) ago
    BeltScheduler(timing, scheduler.call_at).when_reached(
        now - 0.5, shots, trigger_count=count - 1000
    )
    shots.fired_at()
    # 0.22 s late when asked; more if the timer thread took a while to run the check
    assert shots.lags[0] == pytest.approx(0.22 + scheduler.woke - now, abs=0.01)


def test_lateness_is_by_travel_with_an_encoder() -> None:
    gate = sim_gate(0.0)  # not started: the count is computed, no thread needed
    t0 = 1e6
    speeds(gate, t0, [(0.0, 0.5), (0.2, 0.0)])  # 0.1 m, then the belt stops
    timing = DiverterTiming(GEOMETRY, gate)
    assert timing.encoder
    # long past the top-speed time (0.28 s), but the item stands 0.2 m short: not late
    assert not timing.late(t0, t0 + 2.0)
    assert timing.time_to_fire(t0, t0 + 2.0) == float("inf")
    gate.set_encoder_rate(0.5 * PPM, at=t0 + 3.0)  # runs again at 0.5 m/s: 0.4 s to go
    assert timing.time_to_fire(t0, t0 + 3.1) == pytest.approx(0.3 - 0.02, abs=0.002)
    assert timing.earliest_time_to_fire(t0, t0 + 3.1) == pytest.approx(0.15 - 0.02, abs=0.002)
    assert not timing.late(t0, t0 + 3.37)
    assert timing.late(t0, t0 + 3.39)
    assert timing.remaining_and_speed(t0, t0 + 3.1) == pytest.approx((0.15, 0.5), abs=0.001)


def leave(gate: SimGateIo, ts: float, blocked_s: float) -> PhotoEyeEvent:
    count = gate.encoder_count(ts)
    return PhotoEyeEvent(PhotoEyeEdge.LEAVE, ts, time.time(), 1, blocked_s, count)


def test_a_stuck_encoder_makes_every_decision_late() -> None:
    gate = sim_gate(0.0)
    t0 = 1e6
    speeds(gate, t0, [(0.0, 1.0), (1.0, 0.0)])  # at t0 + 1 the encoder wheel stops
    timing = DiverterTiming(GEOMETRY, gate)
    assert not timing.late(t0 + 2, t0 + 2)
    timing.on_photo_eye(leave(gate, t0 + 2, 0.05))  # ... but items still pass the eye
    assert timing.encoder_fault is not None
    assert "no pulse while item 1 blocked the photo eye for 50 ms" in timing.encoder_fault
    assert timing.late(t0 + 2, t0 + 2)
    assert timing.remaining_and_speed(t0 + 2, t0 + 2) is None  # timed by the clock now


def test_a_short_block_or_a_moving_encoder_is_no_fault() -> None:
    gate = sim_gate(0.0)
    t0 = 1e6
    speeds(gate, t0, [(0.0, 1.0), (1.0, 0.0)])
    timing = DiverterTiming(GEOMETRY, gate)
    timing.on_photo_eye(leave(gate, t0 + 0.5, 0.05))  # 100 pulses while blocked
    timing.on_photo_eye(leave(gate, t0 + 2, 0.01))  # a blip too short to judge
    assert timing.encoder_fault is None


def test_geometry_comes_from_the_profile_and_refuses_nonsense() -> None:
    belt = BeltSettings.model_validate(
        {
            "speed_m_s": 1.5,
            "encoder": {"pulses_per_m": 2000},
            "scan_to_reject_m": 1.2,
            "window_m": 0.25,
            "actuation_ms": 40,
        }
    )
    geometry = BeltGeometry.from_settings(belt)
    assert geometry == BeltGeometry(1.2, 1.5, 0.04, 2000.0)
    assert geometry.fixed_divert_s == pytest.approx(belt.travel_s - 0.04)
    with pytest.raises(ValueError, match="pulses_per_m"):
        BeltGeometry(1.0, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="positive"):
        BeltGeometry(1.0, float("nan"), 0.0)
