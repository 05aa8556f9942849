"""Barcode scanners in serial / USB-CDC mode: framing, repeat suppression, ID normalisation.

``SerialScanner`` is the driver (registered as ``type: serial_scanner``); ``ScanEvent`` is
what it delivers; ``ScanDecoder`` is its I/O-free core. See ``docs/hardware-barcode.md``.
"""

from hardware.barcode.config import SerialScannerConfig
from hardware.barcode.decoder import ScanDecoder, symbology_of
from hardware.barcode.dedup import RepeatFilter
from hardware.barcode.driver import SerialScanner, build_serial_scanner
from hardware.barcode.events import ScanEvent, ScanQueue
from hardware.barcode.framer import FramerStats, LineFramer

__all__ = [
    "FramerStats",
    "LineFramer",
    "RepeatFilter",
    "ScanDecoder",
    "ScanEvent",
    "ScanQueue",
    "SerialScanner",
    "SerialScannerConfig",
    "build_serial_scanner",
    "symbology_of",
]
