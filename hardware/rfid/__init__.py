"""UHF RFID readers speaking ThingMagic's Mercury serial protocol (M6e Nano, M7e).

- :mod:`hardware.rfid.crc`: the ThingMagic frame CRC (not CRC-16/CCITT-FALSE).
- :mod:`hardware.rfid.frames`: frame building and an incremental parser that resyncs.
- :mod:`hardware.rfid.commands`: command builders and reply decoders.
- :mod:`hardware.rfid.records`: tag records in streamed inventory replies.
- :mod:`hardware.rfid.sightings`: many reads of one tag in a window → one sighting.
- :mod:`hardware.rfid.config`: the driver's config (``type: thingmagic_mercury``).
- :mod:`hardware.rfid.driver`: the reader driver, registered for that type.

Wiring, protocol and emission policy: the RFID section of ``docs/hardware.md``.
"""
