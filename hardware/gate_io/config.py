"""Configuration of gate I/O: simulated (``type: sim_gate_io``) or Raspberry Pi GPIO
through gpiozero (``type: gpiozero``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hardware.gate_io.interface import LightColor

__all__ = [
    "EncoderPinConfig",
    "GateIoTiming",
    "GpiozeroGateIoConfig",
    "InputPinConfig",
    "OutputPinConfig",
    "SimEncoderConfig",
    "SimGateIoConfig",
    "StackLightPins",
]


def _bcm_pin() -> int:
    return Field(  # type: ignore[no-any-return]
        ge=0,
        le=27,
        title="BCM pin",
        description="GPIO number (BCM numbering, GPIO0–GPIO27 on the 40-pin header), not "
        "the physical pin number.",
    )


class GateIoTiming(BaseModel):
    """Timing shared by every gate I/O backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        default="gate-io",
        min_length=1,
        max_length=64,
        title="Name",
        description="Name of this gate I/O in logs and health.",
    )
    debounce_ms: float = Field(
        default=5.0,
        ge=0,
        le=1000,
        title="Photo-eye debounce (ms)",
        description=(
            "The photo eye must hold a new level this long before it counts; shorter "
            "blips are ignored (counted as glitches). The event keeps the time of the "
            "first edge. 0 turns it off."
        ),
    )
    diverter_pulse_ms: float = Field(
        default=150.0,
        gt=0,
        le=10_000,
        title="Diverter pulse (ms)",
        description="How long the diverter or pusher is driven when no duration is given.",
    )
    max_diverter_pulse_ms: float = Field(
        default=2000.0,
        gt=0,
        le=60_000,
        title="Longest diverter pulse (ms)",
        description=(
            "Safety limit: longer requested pulses are cut to this (and counted), so a "
            "pusher is never held out into the belt."
        ),
    )
    blink_on_ms: float = Field(
        default=500.0,
        gt=0,
        le=10_000,
        title="Blink on time (ms)",
        description="Stack light in blink mode: how long each flash is on.",
    )
    blink_off_ms: float = Field(
        default=500.0,
        gt=0,
        le=10_000,
        title="Blink off time (ms)",
        description="Stack light in blink mode: how long it is dark between flashes.",
    )

    @model_validator(mode="after")
    def _pulse_within_limit(self) -> GateIoTiming:
        if self.diverter_pulse_ms > self.max_diverter_pulse_ms:
            raise ValueError("diverter_pulse_ms must not exceed max_diverter_pulse_ms")
        return self


class SimEncoderConfig(BaseModel):
    """A simulated belt encoder: its count is the pulse rate integrated over time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pulses_per_s: float = Field(
        ge=0,
        le=10_000_000,
        title="Pulse rate at start (pulses/s)",
        description=(
            "The simulated belt's pulse rate when the I/O is built: belt speed (m/s) × "
            "the belt's pulses per metre; 0 starts it stopped. A simulator or test changes "
            "it with SimGateIo.set_encoder_rate."
        ),
    )


class SimGateIoConfig(GateIoTiming):
    """Simulated gate I/O that records every actuation (tests, demos, the conveyor sim)."""

    type: Literal["sim_gate_io"] = Field(
        title="Driver type",
        description="Selects this driver: no hardware; actuations are recorded with times.",
    )
    encoder: SimEncoderConfig | None = Field(
        default=None,
        title="Simulated belt encoder",
        description="A belt encoder whose pulse rate the simulator sets; leave out for a "
        "belt without one.",
    )


class InputPinConfig(BaseModel):
    """A digital input such as a photo eye."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pin: int = _bcm_pin()
    active_high: bool = Field(
        default=False,
        title="Active high",
        description=(
            "True if a high level means 'item present'. Most NPN (sinking) photo eyes "
            "pull the line low when the beam is blocked: active_high false, pull up."
        ),
    )
    pull: Literal["up", "down", "floating"] = Field(
        default="up",
        title="Pull resistor",
        description=(
            "The Pi's internal pull: 'up' for open-collector / NPN outputs, 'down' for "
            "PNP outputs through a divider, 'floating' when the circuit drives both levels."
        ),
    )


class EncoderPinConfig(BaseModel):
    """The input a belt encoder's pulse channel is wired to (one channel, one direction)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pin: int = _bcm_pin()
    pull: Literal["up", "down", "floating"] = Field(
        default="up",
        title="Pull resistor",
        description=(
            "'up' for an open-collector / NPN encoder output, 'down' for a push-pull one "
            "through a divider, 'floating' when the circuit drives both levels. Each pulse "
            "is counted once, whatever its polarity."
        ),
    )


class OutputPinConfig(BaseModel):
    """A digital output driving a relay, solid-state relay or transistor stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pin: int = _bcm_pin()
    active_high: bool = Field(
        default=True,
        title="Active high",
        description=(
            "True if a high level switches the load on. Many relay boards are active "
            "low (the relay closes when the pin is low): set false for those."
        ),
    )


class StackLightPins(BaseModel):
    """The lamps of a stack light; leave out the ones a gate does not have."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    green: OutputPinConfig | None = Field(
        default=None, title="Green lamp", description="Output for the green lamp (running)."
    )
    amber: OutputPinConfig | None = Field(
        default=None,
        title="Amber lamp",
        description="Output for the amber lamp (degraded: a device unhealthy, items held).",
    )
    red: OutputPinConfig | None = Field(
        default=None, title="Red lamp", description="Output for the red lamp (reject, fault)."
    )

    def pins(self) -> dict[LightColor, OutputPinConfig]:
        """The wired lamps by colour."""
        wired = zip(LightColor, (self.green, self.amber, self.red), strict=True)
        return {color: pin for color, pin in wired if pin is not None}


class GpiozeroGateIoConfig(GateIoTiming):
    """Gate I/O on Raspberry Pi GPIO through gpiozero (lgpio, RPi.GPIO, native or mock pins)."""

    type: Literal["gpiozero"] = Field(
        title="Driver type",
        description="Selects this driver: photo eye, diverter and stack light on GPIO pins.",
    )
    pin_factory: Literal["lgpio", "rpigpio", "native", "mock"] = Field(
        default="lgpio",
        title="Pin factory",
        description=(
            "gpiozero backend: 'lgpio' (Raspberry Pi OS Bookworm and Pi 5; needs the lgpio "
            "package), 'rpigpio' (older images, RPi.GPIO; not on a Pi 5), 'native' (pure "
            "Python, no extra package; coarse edge timing), 'mock' (no hardware; tests)."
        ),
    )
    gpiochip: int | None = Field(
        default=None,
        ge=0,
        le=15,
        title="GPIO chip",
        description="lgpio only: /dev/gpiochipN to use; empty lets gpiozero pick the Pi's.",
    )
    photo_eye: InputPinConfig = Field(
        title="Photo eye", description="Input from the photo eye (through-beam or reflective)."
    )
    diverter: OutputPinConfig = Field(
        title="Diverter", description="Output to the reject diverter, pusher or flap valve."
    )
    stack_light: StackLightPins = Field(
        default_factory=StackLightPins,
        title="Stack light",
        description="Outputs to the stack light lamps (any of green, amber, red).",
    )
    encoder: EncoderPinConfig | None = Field(
        default=None,
        title="Belt encoder",
        description=(
            "Input counting the belt encoder's pulses (one channel); leave out for a belt "
            "without one. Counted in gpiozero callbacks: fine to a few thousand pulses/s; "
            "beyond that use a hardware counter."
        ),
    )

    @model_validator(mode="after")
    def _pins_distinct(self) -> GpiozeroGateIoConfig:
        used: dict[int, str] = {}
        named = [("photo_eye", self.photo_eye.pin), ("diverter", self.diverter.pin)]
        named += [(f"stack_light.{c}", p.pin) for c, p in self.stack_light.pins().items()]
        if self.encoder is not None:
            named.append(("encoder", self.encoder.pin))
        for name, pin in named:
            if pin in used:
                raise ValueError(f"GPIO{pin} is used twice: {used[pin]} and {name}")
            used[pin] = name
        return self
