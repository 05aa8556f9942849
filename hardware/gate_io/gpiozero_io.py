"""Gate I/O on Raspberry Pi GPIO through gpiozero (``type: gpiozero``).

The photo eye is a ``DigitalInputDevice`` whose edges feed the shared debouncer; the
diverter and the stack-light lamps are ``DigitalOutputDevice``s (lamps blink on
gpiozero's own thread). A belt encoder's channel is another ``DigitalInputDevice`` whose
activations are counted (fine to a few thousand pulses/s in Python callbacks; faster
encoders need a hardware counter). gpiozero, and the pin library the config names, are imported
only when this driver is built: ``pip install 'provgate[gpio]'``. Any error from them
becomes an :class:`~hardware.gate_io.common.OutputError`: the I/O is reported
unhealthy, released, and claimed again with backoff.
"""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType
from typing import Any

from hardware.backoff import Backoff
from hardware.gate_io.common import BaseGateIo, OutputError
from hardware.gate_io.config import GpiozeroGateIoConfig
from hardware.gate_io.encoder import PulseCounter
from hardware.gate_io.interface import LightColor, LightMode
from hardware.registry import DeviceKind, register_driver

__all__ = ["GpiozeroGateIo", "build_gpiozero_gate_io", "make_pin_factory"]

_FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
    "mock": ("gpiozero.pins.mock", "MockFactory"),
}
_PULL_UP = {"up": True, "down": False, "floating": None}


def _import_gpiozero() -> ModuleType:
    try:
        return importlib.import_module("gpiozero")
    except ImportError as exc:
        raise ImportError(
            "the gpiozero gate I/O driver needs gpiozero: pip install 'provgate[gpio]'"
        ) from exc


def make_pin_factory(config: GpiozeroGateIoConfig) -> Any:
    """The gpiozero pin factory ``config.pin_factory`` names (opens the GPIO chip)."""
    module_name, class_name = _FACTORIES[config.pin_factory]
    factory_class = getattr(importlib.import_module(module_name), class_name)
    if config.pin_factory == "lgpio" and config.gpiochip is not None:
        return factory_class(chip=config.gpiochip)
    return factory_class()


class GpiozeroGateIo(BaseGateIo):
    """Photo eye, diverter and stack light on GPIO pins (BCM numbers)."""

    def __init__(
        self,
        config: GpiozeroGateIoConfig,
        *,
        pin_factory: Any = None,
        backoff: Backoff | None = None,
    ) -> None:
        """``pin_factory``: a gpiozero factory to use instead of the configured one
        (tests pass a ``MockFactory`` to drive and inspect the pins)."""
        super().__init__(config, backoff=backoff)
        self.config = config
        self._gpiozero = _import_gpiozero()
        self._own_factory = pin_factory is None
        self.pin_factory: Any = pin_factory
        self._eye: Any = None
        self._diverter: Any = None
        self._lamps: dict[LightColor, Any] = {}
        self._encoder_input: Any = None
        self.pulse_counter: PulseCounter | None = None
        """The belt encoder's pulses (``encoder:`` in the config), else None. It keeps
        counting across a reopen; pulses while the pins are released are lost."""
        if config.encoder is not None:
            self.pulse_counter = PulseCounter()
            self._encoder = self.pulse_counter

    def __enter__(self) -> GpiozeroGateIo:
        self.start()
        return self

    def _open_io(self) -> bool:
        gz = self._gpiozero
        try:
            if self.pin_factory is None:
                self.pin_factory = make_pin_factory(self.config)
            factory = self.pin_factory
            eye_pin = self.config.photo_eye
            pull_up = _PULL_UP[eye_pin.pull]
            self._eye = gz.DigitalInputDevice(
                eye_pin.pin,
                pull_up=pull_up,
                active_state=True if pull_up is None else None,
                pin_factory=factory,
            )
            # gpiozero calls the input active when high, except with a pull-up (then low).
            present_when_active = (pull_up is not True) == eye_pin.active_high
            self._eye.when_activated = lambda: self._input_edge(present_when_active)
            self._eye.when_deactivated = lambda: self._input_edge(not present_when_active)
            if self.config.encoder is not None and self.pulse_counter is not None:
                counter = self.pulse_counter
                self._encoder_input = gz.DigitalInputDevice(
                    self.config.encoder.pin,
                    pull_up=_PULL_UP[self.config.encoder.pull],
                    active_state=True if self.config.encoder.pull == "floating" else None,
                    pin_factory=factory,
                )
                self._encoder_input.when_activated = lambda: counter.pulse()
            self._diverter = self._output(self.config.diverter.pin, self.config.diverter)
            for color, pin in self.config.stack_light.pins().items():
                self._lamps[color] = self._output(pin.pin, pin)
            return bool(self._eye.is_active) == present_when_active
        except Exception as exc:  # gpiozero, lgpio and OS errors alike
            self._close_io()
            raise OutputError(f"cannot claim GPIO ({self.config.pin_factory}): {exc}") from exc

    def _output(self, pin: int, config: Any) -> Any:
        return self._gpiozero.DigitalOutputDevice(
            pin,
            active_high=config.active_high,
            initial_value=False,
            pin_factory=self.pin_factory,
        )

    def _close_io(self) -> None:
        outputs = [self._diverter, *self._lamps.values()]
        devices = [self._eye, self._encoder_input, *outputs]
        self._eye, self._encoder_input, self._diverter, self._lamps = None, None, None, {}
        for output in outputs:
            if output is not None:
                with contextlib.suppress(Exception):
                    output.off()  # close() alone leaves the pin where it was
        for device in devices:
            if device is not None:
                with contextlib.suppress(Exception):
                    device.close()
        if self._own_factory and self.pin_factory is not None:
            factory, self.pin_factory = self.pin_factory, None
            with contextlib.suppress(Exception):
                factory.close()

    def _drive_diverter(self, on: bool) -> None:
        try:
            if on:
                self._diverter.on()
            else:
                self._diverter.off()
        except Exception as exc:
            raise OutputError(str(exc) or type(exc).__name__) from exc

    def _drive_light(self, color: LightColor, mode: LightMode) -> bool:
        lamp = self._lamps.get(color)
        if lamp is None:
            return False
        try:
            if mode is LightMode.ON:
                lamp.on()
            elif mode is LightMode.OFF:
                lamp.off()
            else:
                timing = self.config
                lamp.blink(timing.blink_on_ms / 1000, timing.blink_off_ms / 1000)
        except Exception as exc:
            raise OutputError(str(exc) or type(exc).__name__) from exc
        return True


@register_driver(DeviceKind.GATE_IO, GpiozeroGateIoConfig)
def build_gpiozero_gate_io(config: GpiozeroGateIoConfig) -> GpiozeroGateIo:
    """Build a :class:`GpiozeroGateIo`; ImportError (saying what to install) without gpiozero."""
    return GpiozeroGateIo(config)
