"""Configuration of a ThingMagic Mercury reader (pydantic; validated on load)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hardware.rfid.commands import Region

__all__ = ["ThingMagicConfig"]


class ThingMagicConfig(BaseModel):
    """ThingMagic Mercury UHF RFID reader (M6e, M6e Nano, M7e) on a serial port."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["thingmagic_mercury"] = Field(
        title="Driver", description="Selects this driver: ThingMagic Mercury serial protocol."
    )
    name: str = Field(
        default="rfid", min_length=1, title="Name", description="Name in logs and health."
    )
    port: str = Field(
        min_length=1,
        title="Port",
        description="Serial device (/dev/ttyUSB0, /dev/serial0, a pty) or "
        "socket://host:port or rfc2217://host:port.",
    )
    baudrate: Literal[9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600] = Field(
        default=115200,
        title="Baud rate",
        description="Line speed, 8N1. Modules start at 115200 unless reconfigured.",
    )
    model: Literal["any", "m6e", "m6e_nano", "m7e"] = Field(
        default="any",
        title="Expected module",
        description="Module family the version reply must name; a mismatch is reported "
        "(counted and logged) but the reader is still used. 'any' skips the check.",
    )
    region: str = Field(
        default="NA2",
        title="Region",
        description="Regulatory region by MercuryAPI name: NA, NA2, NA3, EU3, IN, JP, PRC, "
        "KR2, AU, NZ, OPEN, ... The installer must pick the one licensed on site.",
    )
    read_power_dbm: float = Field(
        default=20.0,
        ge=0.0,
        le=31.5,
        title="Read power (dBm)",
        description="Transmit power while reading, 0.01 dB steps. M6e Nano: at most 27; "
        "M7e: at most 30; M6e: at most 31.5. The reader rejects more.",
    )
    antennas: tuple[int, ...] = Field(
        default=(1,),
        min_length=1,
        title="Antennas",
        description="Antenna ports searched, in order (monostatic). M6e Nano and M7e "
        "have one port (1); M6e has four.",
    )
    on_time_ms: int = Field(
        default=250,
        ge=10,
        le=65535,
        title="Search on time (ms)",
        description="Length of each inventory round of the continuous read.",
    )
    off_time_ms: int = Field(
        default=0,
        ge=0,
        le=65535,
        title="Search off time (ms)",
        description="RF off between rounds (duty cycle) to keep a module cool; 0 = none.",
    )
    window_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        title="Sighting window (s)",
        description="Reads of one tag within this time of its first read are one sighting; "
        "the final sighting is emitted when it ends.",
    )
    emit_first_read: bool = Field(
        default=True,
        title="Emit on first read",
        description="Also emit a sighting (final=false) at a tag's first read, for "
        "low latency; false emits only the final sighting of each window.",
    )
    queue_size: int = Field(
        default=1024,
        ge=0,
        title="Sighting queue size",
        description="Sightings kept for get(); the oldest is dropped (and counted) when "
        "full. 0 disables the queue (deliver only to the callback).",
    )
    command_timeout_s: float = Field(
        default=1.0,
        gt=0,
        le=30,
        title="Command timeout (s)",
        description="How long to wait for each reply while initialising the reader.",
    )
    idle_flush_s: float = Field(
        default=0.05,
        gt=0,
        le=5,
        title="Partial frame timeout (s)",
        description="A partial frame still incomplete after the line has been quiet this "
        "long is discarded (counted as truncated).",
    )
    reconnect_initial_s: float = Field(
        default=0.1,
        gt=0,
        title="First reconnect delay (s)",
        description="Delay before the first retry after the port vanished; doubles per try.",
    )
    reconnect_max_s: float = Field(
        default=5.0,
        gt=0,
        title="Longest reconnect delay (s)",
        description="Upper bound of the reconnect delay.",
    )
    notes: str | None = Field(
        default=None,
        title="Installer notes",
        description="Free text for installers (wiring, settings); not used by the driver.",
    )

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        name = value.strip().upper()
        if name not in Region.__members__:
            raise ValueError(f"unknown region {value!r}; known: {', '.join(Region.__members__)}")
        return name

    @field_validator("antennas")
    @classmethod
    def _valid_antennas(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= port <= 16 for port in value):
            raise ValueError("antenna ports are numbered 1 to 16")
        if len(set(value)) != len(value):
            raise ValueError("antenna ports must not repeat")
        return value

    @property
    def region_code(self) -> Region:
        """The region as the protocol's code."""
        return Region[self.region]
