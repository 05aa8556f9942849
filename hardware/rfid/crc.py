"""The CRC of ThingMagic Mercury serial frames.

MercuryAPI shifts each byte into the register a nibble at a time through a 16-entry table
of poly 0x1021, starting from 0xFFFF: ``crc = ((crc << 4) | nibble) ^ T[crc >> 12]``.
Data is shifted *into* the register (no augmentation), so this is not CRC-16/CCITT-FALSE:
``FF 00 03`` (Get Version) carries ``1D 0C``.

:func:`crc16_nibble` is that reference algorithm. :func:`crc16` computes the same value in
C: for a message ``M`` of ``n`` bytes the reference computes ``(0xFFFF·x^8n + M) mod P``,
while :func:`binascii.crc_hqx` (the direct, augmented algorithm) computes
``(init·x^8n + M·x^16) mod P``. Feeding all but the last two bytes to ``crc_hqx`` with
``init = 0xFFFF·x^16 mod P`` and XOR-ing in the last two bytes gives the reference value.
"""

from __future__ import annotations

import binascii
from typing import Final

__all__ = ["HQX_SEED", "NIBBLE_TABLE", "crc16", "crc16_nibble"]

_POLY: Final = 0x1021
_INIT: Final = 0xFFFF


def _nibble_table() -> tuple[int, ...]:
    table = []
    for nibble in range(16):
        crc = nibble << 12
        for _ in range(4):
            crc = ((crc << 1) ^ _POLY) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


NIBBLE_TABLE: Final = _nibble_table()
"""MercuryAPI's ``crctable``: 0x0000, 0x1021, 0x2042, … 0xF1EF."""


def crc16_nibble(data: bytes | bytearray | memoryview) -> int:
    """The reference: MercuryAPI's ``tm_crc``, one nibble at a time."""
    crc = _INIT
    table = NIBBLE_TABLE
    for byte in bytes(data):
        crc = (((crc << 4) & 0xFFFF) | (byte >> 4)) ^ table[crc >> 12]
        crc = (((crc << 4) & 0xFFFF) | (byte & 0x0F)) ^ table[crc >> 12]
    return crc


HQX_SEED: Final = crc16_nibble(b"\x00\x00")
"""0xFFFF·x^16 mod P: the ``crc_hqx`` seed that makes it agree with the reference."""


def crc16(data: bytes | bytearray | memoryview) -> int:
    """ThingMagic frame CRC of ``data`` (LEN through the last DATA byte); fast."""
    n = len(data)
    if n < 2:
        return crc16_nibble(data)
    return binascii.crc_hqx(data[: n - 2], HQX_SEED) ^ (data[n - 2] << 8 | data[n - 1])
