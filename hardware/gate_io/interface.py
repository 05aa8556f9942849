"""What gate I/O offers the agent: the photo eye, the reject diverter, the stack light and,
where fitted, the belt encoder's pulse count."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from hardware.base import Device

__all__ = [
    "Actuation",
    "ActuationKind",
    "GateIo",
    "LightColor",
    "LightMode",
    "PhotoEyeEdge",
    "PhotoEyeEvent",
    "PhotoEyeListener",
]


class PhotoEyeEdge(StrEnum):
    """An item entering (beam blocked) or leaving (beam clear) the photo eye."""

    ENTER = "enter"
    LEAVE = "leave"


class LightColor(StrEnum):
    """The lamps of a stack light (signal tower)."""

    GREEN = "green"
    AMBER = "amber"
    RED = "red"


class LightMode(StrEnum):
    """What one lamp does."""

    OFF = "off"
    ON = "on"
    BLINK = "blink"


class ActuationKind(StrEnum):
    """Which kind of output an actuation drove."""

    DIVERTER = "diverter"
    LIGHT = "light"


@dataclass(frozen=True, slots=True)
class PhotoEyeEvent:
    """A debounced photo-eye edge: an item entered or left the beam."""

    edge: PhotoEyeEdge
    ts: float
    """``time.monotonic()`` of the edge (the first edge of a bouncing burst)."""
    wall_ts: float
    """The same moment on the wall clock (``time.time()``)."""
    item: int
    """Item number on this gate, from 1; an item's enter and leave share it."""
    blocked_s: float | None = None
    """On leave: how long the beam was blocked (item length ÷ belt speed)."""
    encoder_count: int | None = None
    """Belt encoder pulses counted up to ``ts``; None when the gate I/O has no encoder."""


@dataclass(frozen=True, slots=True)
class Actuation:
    """One command to an output, as it was carried out (or not)."""

    kind: ActuationKind
    target: str
    """The output: ``diverter``, or the lamp colour for a light."""
    value: str
    """Diverter: ``pulse``; light: the mode (``on``, ``off``, ``blink``)."""
    ts: float
    """``time.monotonic()`` when the output was set."""
    duration: float | None
    """Diverter: pulse length in seconds (after clamping); light: None."""
    wall_ts: float
    applied: bool = True
    """False when the output could not be driven (not started, not wired, hardware error)."""
    error: str | None = None


PhotoEyeListener = Callable[[PhotoEyeEvent], None]


class GateIo(Device):
    """Photo-eye input, reject diverter output and stack light of one gate."""

    @abstractmethod
    def subscribe(self, listener: PhotoEyeListener) -> Callable[[], None]:
        """Call ``listener`` on every debounced photo-eye edge; returns an unsubscribe.

        Listeners run on the I/O thread that saw the edge and should return quickly.
        """

    @abstractmethod
    def item_present(self) -> bool:
        """True while the (debounced) photo eye sees an item."""

    @abstractmethod
    def fire_diverter(self, duration_s: float | None = None) -> Actuation:
        """Pulse the diverter for ``duration_s`` (default from config); returns at once.

        A pulse while one is running extends it to the later end.
        """

    @abstractmethod
    def diverter_active(self) -> bool:
        """True while a diverter pulse is on."""

    @abstractmethod
    def set_light(self, color: LightColor | str, mode: LightMode | str) -> Actuation:
        """Set one stack-light lamp on, off or blinking."""

    @abstractmethod
    def lights(self) -> dict[LightColor, LightMode]:
        """The mode each lamp was last set to."""

    @abstractmethod
    def wait_healthy(self, timeout: float) -> bool:
        """Block until the I/O is usable (True) or ``timeout`` passes (False)."""

    def encoder_count(self, at: float | None = None) -> int | None:
        """Belt encoder pulses counted since start, up to ``at`` (``time.monotonic()``;
        default now): the belt's travel. None when the gate I/O has no encoder."""
        return None
