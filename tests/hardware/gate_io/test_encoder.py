"""Belt encoder counts: counted pulses read back at past moments, a simulated belt's count
as the integral of its pulse rate, and both on the gate I/O and its photo-eye events."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from hardware.gate_io.config import GpiozeroGateIoConfig, SimGateIoConfig
from hardware.gate_io.encoder import PulseCounter, SimEncoder
from hardware.gate_io.interface import PhotoEyeEdge, PhotoEyeEvent
from hardware.gate_io.sim import SimGateIo
from tests.support.waiting import wait_until


def test_pulse_counter_reads_the_count_at_a_past_moment() -> None:
    counter = PulseCounter()
    for ts in (1.0, 2.0, 3.0, 4.0):
        counter.pulse(ts)
    assert counter.count_at() == counter.total == 4
    assert [counter.count_at(t) for t in (0.5, 1.0, 2.5, 4.0, 9.0)] == [0, 1, 2, 4, 4]


def test_pulse_counter_history_is_bounded_and_answers_a_lower_bound_beyond_it() -> None:
    counter = PulseCounter(history=3)
    for ts in (1.0, 2.0, 3.0, 4.0, 5.0):
        counter.pulse(ts)
    assert counter.count_at(4.5) == 4
    assert counter.count_at(0.0) == 2  # older than the kept pulses: the count at the oldest
    with pytest.raises(ValueError, match="at least one"):
        PulseCounter(history=0)


def test_pulse_counter_keeps_time_order_and_counts_every_thread() -> None:
    counter = PulseCounter()
    counter.pulse(5.0)
    counter.pulse(4.0)  # a late callback counts at the previous pulse's time
    assert counter.count_at(4.5) == 0

    def count_1000() -> None:
        for _ in range(1000):
            counter.pulse()

    threads = [threading.Thread(target=count_1000) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.total == 4002


def test_sim_encoder_integrates_a_changing_rate() -> None:
    encoder = SimEncoder(1000.0, start=10.0)
    assert encoder.count_at(10.5) == 500
    encoder.set_rate(200.0, at=11.0)  # the belt slows at 1,000 pulses
    encoder.set_rate(0.0, at=12.0)  # and stops at 1,200
    assert [encoder.count_at(t) for t in (11.0, 11.5, 12.0, 20.0)] == [1000, 1100, 1200, 1200]
    assert encoder.rate(11.5) == 200.0
    assert encoder.count_at(9.0) == 0
    encoder.set_rate(500.0, at=11.0)  # never rewrites the past: starts at the last change
    assert encoder.count_at(13.0) == 1700


@pytest.mark.parametrize("rate", [-1.0, float("nan"), float("inf")])
def test_sim_encoder_refuses_a_nonsense_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="pulse rate"):
        SimEncoder(rate)


@pytest.fixture
def sim() -> Iterator[SimGateIo]:
    config = SimGateIoConfig.model_validate(
        {"type": "sim_gate_io", "debounce_ms": 0, "encoder": {"pulses_per_s": 2000}}
    )
    with SimGateIo(config) as io:
        yield io


def test_sim_gate_io_counts_its_simulated_belt_and_stamps_photo_eye_events(
    sim: SimGateIo,
) -> None:
    assert sim.sim_encoder is not None
    now = 1e6  # far ahead: the count there is the rate's integral from start
    sim.set_encoder_rate(1000.0, at=now)
    sim.set_encoder_rate(0.0, at=now + 1.0)
    start = sim.encoder_count(now)
    assert start is not None
    assert sim.encoder_count(now + 0.25) == start + 250
    enter, leave = sim.simulate_item(now + 0.5, now + 0.75)
    assert (enter.encoder_count, leave.encoder_count) == (start + 500, start + 750)
    assert sim.encoder_count(now + 5) == start + 1000  # stopped
    # the belt runs on in real time (2000 pulses/s): the count is read between two reads
    before = sim.encoder_count()
    counted = sim.health().counters["encoder_pulses"]
    after = sim.encoder_count()
    assert before is not None
    assert after is not None
    assert before <= counted <= after


def test_sim_gate_io_without_an_encoder_says_so() -> None:
    config = SimGateIoConfig.model_validate({"type": "sim_gate_io", "debounce_ms": 0})
    with SimGateIo(config) as io:
        assert io.encoder_count() is None
        enter, _ = io.trigger()
        assert enter.encoder_count is None
        assert io.health().counters["encoder_pulses"] == 0
        with pytest.raises(RuntimeError, match="no simulated encoder"):
            io.set_encoder_rate(100.0)


def test_gpiozero_counts_encoder_pulses_and_stamps_the_photo_eye() -> None:
    mock = pytest.importorskip("gpiozero.pins.mock").MockFactory()
    from hardware.gate_io.gpiozero_io import GpiozeroGateIo

    config = GpiozeroGateIoConfig.model_validate(
        {
            "type": "gpiozero",
            "pin_factory": "mock",
            "debounce_ms": 0,
            "photo_eye": {"pin": 17, "pull": "up", "active_high": False},
            "diverter": {"pin": 27},
            "encoder": {"pin": 5, "pull": "up"},
        }
    )
    events: list[PhotoEyeEvent] = []
    try:
        with GpiozeroGateIo(config, pin_factory=mock) as io:
            io.subscribe(events.append)
            encoder = mock.pin(5)
            for _ in range(7):  # pulled up: a pulse pulls the line low
                encoder.drive_low()
                encoder.drive_high()
            assert wait_until(lambda: io.encoder_count() == 7)
            mock.pin(17).drive_low()
            assert wait_until(lambda: len(events) == 1)
            for _ in range(3):
                encoder.drive_low()
                encoder.drive_high()
            mock.pin(17).drive_high()
            assert wait_until(lambda: len(events) == 2)
            enter, leave = events
            assert enter.edge is PhotoEyeEdge.ENTER
            assert (enter.encoder_count, leave.encoder_count) == (7, 10)
            assert io.health().counters["encoder_pulses"] == 10
    finally:
        mock.close()


def test_gpiozero_encoder_pin_must_not_clash() -> None:
    with pytest.raises(ValueError, match="GPIO27 is used twice: diverter and encoder"):
        GpiozeroGateIoConfig.model_validate(
            {
                "type": "gpiozero",
                "photo_eye": {"pin": 17},
                "diverter": {"pin": 27},
                "encoder": {"pin": 27},
            }
        )
