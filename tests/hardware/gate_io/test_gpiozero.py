"""GpiozeroGateIo on gpiozero's MockFactory: the photo-eye pin in, diverter and lamp pins out."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hardware.backoff import Backoff
from hardware.gate_io.config import GpiozeroGateIoConfig
from hardware.gate_io.gpiozero_io import GpiozeroGateIo
from hardware.gate_io.interface import LightColor, LightMode, PhotoEyeEdge, PhotoEyeEvent
from hardware.health import DeviceState
from tests.support.waiting import wait_until

MockFactory = pytest.importorskip("gpiozero.pins.mock").MockFactory

FAST = Backoff(initial=0.02, maximum=0.05)
EYE, DIVERTER, GREEN, RED = 17, 27, 22, 24


def gpio_config(**overrides: Any) -> GpiozeroGateIoConfig:
    fields: dict[str, Any] = {
        "type": "gpiozero",
        "pin_factory": "mock",
        "debounce_ms": 5,
        "photo_eye": {"pin": EYE, "pull": "up", "active_high": False},
        "diverter": {"pin": DIVERTER},
        "stack_light": {"green": {"pin": GREEN}, "red": {"pin": RED, "active_high": False}},
    }
    fields.update(overrides)
    return GpiozeroGateIoConfig.model_validate(fields)


@pytest.fixture
def factory() -> Iterator[Any]:
    mock = MockFactory()
    yield mock
    mock.close()


@pytest.fixture
def gate(factory: Any) -> Iterator[GpiozeroGateIo]:
    with GpiozeroGateIo(gpio_config(), pin_factory=factory, backoff=FAST) as io:
        yield io


def test_active_low_photo_eye_gives_enter_and_leave_with_edge_times(
    gate: GpiozeroGateIo, factory: Any
) -> None:
    events: list[PhotoEyeEvent] = []
    gate.subscribe(events.append)
    eye = factory.pin(EYE)
    assert eye.state  # pulled up: beam clear
    assert not gate.item_present()
    blocked_at = time.monotonic()
    eye.drive_low()  # the NPN sensor switches: item in the beam
    driven_at = time.monotonic()  # the change is reported a debounce time (5 ms) later
    assert wait_until(gate.item_present)
    eye.drive_high()
    assert wait_until(lambda: len(events) == 2)
    enter, leave = events
    assert (enter.edge, leave.edge, enter.item, leave.item) == (
        PhotoEyeEdge.ENTER,
        PhotoEyeEdge.LEAVE,
        1,
        1,
    )
    assert blocked_at <= enter.ts <= driven_at  # the edge time, not the report time
    assert leave.blocked_s == pytest.approx(leave.ts - enter.ts)


def test_bouncing_photo_eye_contact_is_one_item(factory: Any) -> None:
    # 100 ms debounce: the chatter must stay shorter than it even if this thread stalls
    with GpiozeroGateIo(gpio_config(debounce_ms=100), pin_factory=factory) as gate:
        events: list[PhotoEyeEvent] = []
        gate.subscribe(events.append)
        eye = factory.pin(EYE)
        for _ in range(3):  # chatter within a millisecond or two
            eye.drive_low()
            eye.drive_high()
        eye.drive_low()
        assert wait_until(gate.item_present)  # settled in the beam
        eye.drive_high()
        eye.drive_low()  # a bounce on the way out
        eye.drive_high()
        assert wait_until(lambda: len(events) == 2)
        time.sleep(0.2)  # two debounce times: no late third event
        assert [e.edge for e in events] == [PhotoEyeEdge.ENTER, PhotoEyeEdge.LEAVE]
        assert gate.health().counters["items"] == 1


def test_diverter_pin_is_high_for_the_pulse_then_low(gate: GpiozeroGateIo, factory: Any) -> None:
    pin = factory.pin(DIVERTER)
    pin.clear_states()
    ticks: list[float] = []
    actuation = gate.fire_diverter(0.08)
    # the gate I/O's own timer thread, at the pulse's end: its wake-up (late on a loaded
    # machine) is the latest the pin may go low
    gate._scheduler.call_at(actuation.ts + 0.08, lambda: ticks.append(time.monotonic()))
    assert actuation.applied
    assert wait_until(lambda: not pin.state and bool(ticks))
    assert [s.state for s in pin.states] == [False, True, False]
    on_for = pin.states[2].timestamp  # mock timestamps: time since the previous change
    assert 0.08 - 0.02 <= on_for <= ticks[0] - actuation.ts


def test_active_low_relay_board_is_driven_inverted(factory: Any) -> None:
    config = gpio_config(diverter={"pin": DIVERTER, "active_high": False})
    with GpiozeroGateIo(config, pin_factory=factory) as io:
        pin = factory.pin(DIVERTER)
        assert pin.state  # idle: high, relay open
        pin.clear_states()
        assert io.fire_diverter(0.02).applied
        assert wait_until(lambda: len(pin.states) == 3)
        assert [s.state for s in pin.states] == [True, False, True]  # low for the pulse


def test_stack_light_lamps_switch_blink_and_respect_polarity(factory: Any) -> None:
    config = gpio_config(blink_on_ms=20, blink_off_ms=20)
    green, red = factory.pin(GREEN), factory.pin(RED)
    with GpiozeroGateIo(config, pin_factory=factory) as gate:
        assert (green.state, red.state) == (False, True)  # red lamp relay is active low
        gate.set_light("green", "on")
        gate.set_light("red", "on")
        assert (green.state, red.state) == (True, False)
        gate.set_light("green", "blink")
        assert wait_until(lambda: len(green.states) >= 4, timeout=3.0)  # toggles by itself
        gate.set_light("green", "off")
        assert not green.state
        unwired = gate.set_light("amber", "on")
        assert not unwired.applied
        assert unwired.error == "no amber lamp is wired"
        assert gate.lights()[LightColor.RED] is LightMode.ON
        assert gate.health().counters["unwired_lights"] == 1
    assert (green.state, red.state) == (False, True)  # released dark


def test_missing_pin_library_leaves_the_io_unhealthy_and_retrying() -> None:
    if importlib.util.find_spec("lgpio") is not None:
        pytest.skip("lgpio is installed here; the failure cannot be provoked this way")
    io = GpiozeroGateIo(gpio_config(pin_factory="lgpio"), backoff=FAST)
    with io:
        assert wait_until(lambda: io.health().counters["open_failures"] >= 2)
        health = io.health()
        assert health.state is DeviceState.UNHEALTHY
        assert "cannot claim GPIO (lgpio)" in (health.last_error or "")
        assert not io.fire_diverter(0.01).applied


def test_output_failure_is_reported_and_the_pins_are_claimed_again(
    gate: GpiozeroGateIo, factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise OSError("GPIO chip went away")

    monkeypatch.setattr(type(factory.pin(DIVERTER)), "_set_state", broken)
    failed = gate.fire_diverter(0.01)
    assert not failed.applied
    assert "GPIO chip went away" in (failed.error or "")
    assert gate.health().state is DeviceState.UNHEALTHY
    monkeypatch.undo()
    assert gate.wait_healthy(2.0)
    assert gate.fire_diverter(0.01).applied
    assert gate.health().reconnects == 1


def test_stop_releases_the_pins(factory: Any) -> None:
    io = GpiozeroGateIo(gpio_config(), pin_factory=factory)
    io.start()
    io.fire_diverter(1.0)
    io.stop()
    assert not factory.pin(DIVERTER).state
    with GpiozeroGateIo(gpio_config(), pin_factory=factory) as again:  # pins are free again
        assert again.health().state is DeviceState.HEALTHY
