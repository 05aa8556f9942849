"""Configuration of a barcode scanner in serial / USB-CDC mode (``type: serial_scanner``)."""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gatewire.identity import MAX_INPUT_CHARS

SUFFIX_BYTES: Final[dict[str, bytes]] = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n"}
"""The line terminators a scanner can be programmed to send, by their manual names."""

_URL_SCHEME_RE: Final = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_WINDOWS_PORT_RE: Final = re.compile(r"^COM\d+$", re.IGNORECASE)


class SerialScannerConfig(BaseModel):
    """Barcode scanner on a serial line or USB-CDC (virtual COM port)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["serial_scanner"] = Field(
        title="Driver type",
        description="Selects this driver: a scanner that sends one read per line.",
    )
    name: str = Field(
        default="barcode",
        min_length=1,
        max_length=64,
        title="Name",
        description="Name of this scanner in logs, health and events.",
    )
    model: str = Field(
        default="",
        max_length=120,
        title="Device model",
        description="Make and model of the scanner (informational).",
    )
    port: str = Field(
        title="Port",
        description=(
            "Where the scanner is: a device path (/dev/ttyACM0, a stable "
            "/dev/serial/by-id/... link, a simulator's pty), socket://host:port or "
            "rfc2217://host:port."
        ),
    )
    baudrate: int = Field(
        default=115200,
        ge=1200,
        le=4_000_000,
        title="Baud rate",
        description=(
            "Serial speed, 8N1. USB-CDC scanners ignore it; RS-232 scanners must be "
            "programmed to the same value."
        ),
    )
    suffix: Literal["CR", "LF", "CRLF"] = Field(
        default="CR",
        title="Suffix",
        description="Terminator the scanner sends after every read: CR, LF or CRLF.",
    )
    prefix: str = Field(
        default="",
        max_length=8,
        title="Prefix",
        description=(
            "Characters the scanner sends before every read (before the AIM ID), "
            "stripped by the driver; empty for none. A control character such as STX "
            '("\\x02" in double-quoted YAML) also lets the driver resynchronise after '
            "line noise."
        ),
    )
    require_aim: bool = Field(
        default=False,
        title="Require AIM symbology identifier",
        description=(
            "Reads without a ]cm AIM symbology identifier are invalid scans. Turn on when "
            "the scanner is programmed to transmit AIM IDs (the shipped profiles are)."
        ),
    )
    max_line_length: int = Field(
        default=512,
        ge=16,
        le=MAX_INPUT_CHARS,
        title="Maximum line length",
        description=(
            "Longest accepted read in bytes, prefix included, suffix excluded. Longer "
            "input is discarded and counted; the stream resynchronises on the next suffix."
        ),
    )
    dedup_window_s: float = Field(
        default=1.0,
        ge=0,
        le=3600,
        title="Repeat-read window (s)",
        description=(
            "A read of the same code within this many seconds of its previous read is "
            "the same scan (a held trigger or presentation mode re-reads). 0 turns it off."
        ),
    )
    partial_line_timeout_s: float = Field(
        default=0.1,
        ge=0,
        le=60,
        title="Partial line timeout (s)",
        description=(
            "An unterminated partial line older than this when new bytes arrive is "
            "discarded and counted (a scanner sends a whole read at once). 0 turns it off."
        ),
    )
    queue_size: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        title="Scan queue size",
        description=(
            "Scans kept for get() when no on_scan callback is given; when full the oldest "
            "is dropped and counted."
        ),
    )
    notes: str = Field(
        default="",
        title="Installer notes",
        description="How to program the device for this profile (free text, not used).",
    )

    @field_validator("port")
    @classmethod
    def _port_is_a_path_or_url(cls, value: str) -> str:
        value = value.strip()
        if not (
            value.startswith("/") or _URL_SCHEME_RE.match(value) or _WINDOWS_PORT_RE.match(value)
        ):
            raise ValueError(
                "port must be a device path such as /dev/ttyACM0, or a URL such as "
                "socket://host:port or rfc2217://host:port"
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix_is_ascii_without_terminators(cls, value: str) -> str:
        if not value.isascii():
            raise ValueError("prefix must be ASCII (scanners send ASCII prefixes)")
        if "\r" in value or "\n" in value:
            raise ValueError("prefix must not contain CR or LF (they end a line)")
        if "]" in value or "\x1d" in value:
            raise ValueError("prefix must not contain ']' or GS (they belong to the read)")
        return value

    @model_validator(mode="after")
    def _prefix_fits_in_a_line(self) -> SerialScannerConfig:
        if len(self.prefix) + 8 > self.max_line_length:
            raise ValueError("max_line_length must leave room for the prefix and a read")
        return self

    @property
    def suffix_bytes(self) -> bytes:
        """The terminator as bytes."""
        return SUFFIX_BYTES[self.suffix]

    @property
    def prefix_bytes(self) -> bytes:
        """The prefix as bytes (empty for none)."""
        return self.prefix.encode("ascii")
