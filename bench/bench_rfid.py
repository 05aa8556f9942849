"""RFID: Mercury frame decoding and tag-record decode, against the 115,200-baud line rate.

A stream of streamed tag-read frames (opcode 0x22, every UHF metadata field: what
MercuryAPI's readasync asks for, 51 bytes a frame) is fed to the frame parser in 4 KiB
chunks and every frame's tag record is decoded, on one core. The line rate of a 115,200
baud 8N1 link (11,520 bytes/s) is the physical ceiling; the same-run baseline is the same
decoding with MercuryAPI's nibble-at-a-time CRC in pure Python (what a literal port does).
End to end: the simulated reader streams through a real pty into the driver, which turns
the reads into sightings (two processes' worth of work on this machine's two cores).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.report import Figure, median, print_figures
from hardware.rfid.commands import GEN2_PROTOCOL, METADATA_ALL_UHF, Opcode
from hardware.rfid.config import ThingMagicConfig
from hardware.rfid.crc import crc16_nibble
from hardware.rfid.driver import ThingMagicReader
from hardware.rfid.frames import Frame, FrameParser, build_response
from hardware.rfid.records import TagRead, decode_stream_reads, encode_stream_read
from simulators.serial_endpoint import PtyEndpoint
from simulators.thingmagic import SimulatorSettings, ThingMagicSimulator

LINE_BYTES_PER_S = 115_200 / 10  # 8N1: 10 bits on the wire per byte
FRAMES = 20_000
CHUNK = 4096
ROUNDS = 5
TAGS = 50
E2E_SECONDS = 2.0


def tag_stream(frames: int = FRAMES) -> tuple[bytes, int]:
    """(stream of streamed tag-read frames over TAGS tags, bytes per frame)."""
    encoded = []
    for n in range(TAGS):
        epc = bytes.fromhex("3074257BF7194E40") + n.to_bytes(4, "big")
        read = TagRead(epc, b"\x30\x00", -50 - n % 20, 1, 1, 915250, n, n % 180, GEN2_PROTOCOL, 0)
        data = encode_stream_read(read, METADATA_ALL_UHF)
        encoded.append(build_response(Opcode.READ_TAG_MULTIPLE, data))
    return b"".join(encoded[i % TAGS] for i in range(frames)), len(encoded[0])


def decode_all(stream: bytes, feed: Callable[[bytes], list[Frame]]) -> int:
    """Frames decoded, tag records included."""
    reads = 0
    for at in range(0, len(stream), CHUNK):
        for frame in feed(stream[at : at + CHUNK]):
            reads += len(decode_stream_reads(frame.data))
    return reads


def reference_feed() -> Callable[[bytes], list[Frame]]:
    """A literal port: find FF, check the CRC nibble by nibble, slice."""
    buf = b""

    def feed(chunk: bytes) -> list[Frame]:
        nonlocal buf
        buf += chunk
        out, pos = [], 0
        while True:
            start = buf.find(0xFF, pos)
            if start < 0:
                pos = len(buf)
                break
            end = start + 7 + (buf[start + 1] if start + 1 < len(buf) else 0)
            if end > len(buf):
                pos = start
                break
            if crc16_nibble(buf[start + 1 : end - 2]) == int.from_bytes(buf[end - 2 : end], "big"):
                out.append(Frame(buf[start + 2], 0, buf[start + 5 : end - 2]))
                pos = end
            else:
                pos = start + 1
        buf = buf[pos:]
        return out

    return feed


def rate(stream: bytes, make_feed: Callable[[], Callable[[bytes], list[Frame]]]) -> float:
    """Median frames/s over ROUNDS passes."""
    samples = []
    for _ in range(ROUNDS):
        feed = make_feed()
        started = time.perf_counter()
        decoded = decode_all(stream, feed)
        samples.append(decoded / (time.perf_counter() - started))
        assert decoded == FRAMES, decoded
    return median(samples)


def end_to_end_rate() -> float:
    """Tag reads/s from the simulated reader through a pty into the driver."""
    settings = SimulatorSettings(read_rate_hz=1e6, multi_reads=4)
    tags = [f"urn:epc:id:sgtin:0614141.812345.{n}" for n in range(1, TAGS + 1)]
    with ThingMagicSimulator(PtyEndpoint(), settings, tags=tags) as simulator:
        config = ThingMagicConfig(type="thingmagic_mercury", port=simulator.url, queue_size=0)
        reader = ThingMagicReader(config)
        reader.start()
        try:
            if not reader.wait_streaming(10):
                raise RuntimeError(f"reader did not start: {reader.health().last_error}")
            time.sleep(0.3)  # warm up
            before, started = reader.health().counters.get("tag_reads", 0), time.perf_counter()
            time.sleep(E2E_SECONDS)
            after, ended = reader.health().counters.get("tag_reads", 0), time.perf_counter()
        finally:
            reader.stop()
    return (after - before) / (ended - started)


def run() -> list[Figure]:
    """All figures of this benchmark."""
    stream, frame_bytes = tag_stream()
    line_frames = LINE_BYTES_PER_S / frame_bytes
    decode_all(stream, FrameParser().feed)  # warm caches
    fast = rate(stream, lambda: FrameParser().feed)
    reference = rate(stream, reference_feed)
    e2e = end_to_end_rate()
    return [
        Figure(
            f"frame parse + tag record decode ({frame_bytes}-byte frames), one core",
            fast,
            "frames/s",
            "115,200 baud 8N1 line rate",
            line_frames,
            target="≥ 50,000 frames/s, ≥ 100× line rate",
        ),
        Figure(
            "frame parse + tag record decode, one core",
            fast,
            "frames/s",
            "nibble-CRC reference decoder",
            reference,
        ),
        Figure(
            "end to end: simulator → pty → driver → sightings (one process, one GIL)",
            e2e,
            "reads/s",
            "115,200 baud 8N1 line rate",
            line_frames,
        ),
    ]


if __name__ == "__main__":
    print_figures(__doc__.splitlines()[0] if __doc__ else "RFID", run())
