"""A network camera on loopback: MJPEG over HTTP, as IP cameras serve it.

``GET /stream.mjpg`` answers ``multipart/x-mixed-replace; boundary=…`` and then one part
per frame (``Content-Type: image/jpeg`` with ``Content-Length``) at the set rate;
``GET /snapshot.jpg`` answers the current frame. OpenCV opens the stream URL through
its FFMPEG backend exactly as it opens a real camera (no hints needed).

Faults for reconnect tests: :meth:`MjpegServer.drop` closes every stream and answers
new requests with 503 until :meth:`MjpegServer.resume`; :meth:`MjpegServer.stall` keeps
connections open but stops sending, as a hung camera does.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Final

import cv2

from simulators.camera import FrameRenderer, dataset_frames, placeholder_label
from simulators.labels import RenderConfig

__all__ = ["MjpegServer", "MjpegStats", "main"]

log = logging.getLogger(__name__)

STREAM_PATH: Final = "/stream.mjpg"
SNAPSHOT_PATH: Final = "/snapshot.jpg"
_POLL_S: Final = 0.05
_RECENT_FRAMES: Final = 16  # a client that falls further behind skips to the newest


@dataclass(frozen=True, slots=True)
class MjpegStats:
    """What the server has done so far."""

    frames_rendered: int
    parts_sent: int
    parts_skipped: int
    connections: int
    refused: int
    clients: int


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    camera: MjpegServer


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.0"  # the connection is the stream; it ends when we close

    def do_GET(self) -> None:
        camera = self.server.camera
        path = self.path.split("?", 1)[0]
        try:
            if path == STREAM_PATH:
                camera._serve_stream(self)
            elif path == SNAPSHOT_PATH:
                camera._serve_snapshot(self)
            else:
                self.send_error(404, "try /stream.mjpg or /snapshot.jpg")
        except OSError:  # the client went away, or drop() shut the socket
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        log.debug("mjpeg %s: " + format, self.address_string(), *args)


class MjpegServer:
    """Serves frames from ``render`` as an MJPEG stream on ``host:port`` (0: a free port).

    Frames are made at ``fps`` whether or not anyone watches (a camera does not wait);
    each is JPEG-encoded once and sent to every connected client.
    """

    def __init__(
        self,
        render: FrameRenderer | None = None,
        *,
        fps: float = 15.0,
        host: str = "127.0.0.1",
        port: int = 0,
        quality: int = 85,
        boundary: str = "provgateframe",
    ) -> None:
        if not 0 < fps <= 1000:
            raise ValueError("fps must be in (0, 1000]")
        self.render = render or placeholder_label()
        self.fps = fps
        self.quality = quality
        self.boundary = boundary
        self._http = _HttpServer((host, port), _Handler)
        self._http.camera = self
        self._cond = threading.Condition()
        self._recent: deque[tuple[int, bytes]] = deque(maxlen=_RECENT_FRAMES)
        self._generation = 0  # bumped by drop(): streams of an older generation end
        self._refusing = False
        self._stalled = False
        self._stopped = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._rendered = self._sent = self._skipped = self._connections = self._refused = 0
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        """The TCP port served."""
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        """The stream URL a camera config's ``source`` takes."""
        host = str(self._http.server_address[0])
        return f"http://{host}:{self.port}{STREAM_PATH}"

    def start(self) -> MjpegServer:
        """Start making frames and serving; returns self."""
        if self._threads:
            return self
        producer = threading.Thread(target=self._produce, name="mjpeg-frames", daemon=True)
        http = threading.Thread(
            target=self._http.serve_forever, args=(_POLL_S,), name="mjpeg-http", daemon=True
        )
        for thread in (producer, http):
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Close every connection and stop serving."""
        self._stopped.set()
        self.drop()
        if self._threads:
            self._http.shutdown()
        self._http.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def drop(self, *, refuse: bool = True) -> None:
        """Close every open stream; with ``refuse``, answer 503 until :meth:`resume`."""
        with self._cond:
            self._generation += 1
            self._refusing = refuse
            sockets = list(self._sockets)
            self._cond.notify_all()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stall(self) -> None:
        """Keep connections open but send nothing (a hung camera) until :meth:`resume`."""
        with self._cond:
            self._stalled = True

    def resume(self) -> None:
        """Serve normally again after :meth:`drop` or :meth:`stall`."""
        with self._cond:
            self._refusing = False
            self._stalled = False
            self._cond.notify_all()

    def stats(self) -> MjpegStats:
        """Counts so far."""
        with self._cond:
            return MjpegStats(
                self._rendered,
                self._sent,
                self._skipped,
                self._connections,
                self._refused,
                len(self._sockets),
            )

    def wait_clients(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` clients are connected to the stream."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._sockets) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    # -- frame production ---------------------------------------------------------------

    def _produce(self) -> None:
        period = 1.0 / self.fps
        due = time.monotonic()
        seq = 0
        while not self._stopped.is_set():
            try:
                ok, encoded = cv2.imencode(
                    ".jpg", self.render(seq), [cv2.IMWRITE_JPEG_QUALITY, self.quality]
                )
            except Exception:  # a broken renderer costs frames, not the server
                log.exception("mjpeg: rendering frame %d failed", seq)
                ok = False
            with self._cond:
                if ok:
                    self._recent.append((seq, encoded.tobytes()))
                    self._rendered += 1
                self._cond.notify_all()
            seq += 1
            due += period
            delay = due - time.monotonic()
            if delay < -period:  # fell behind (slow renderer): do not burst to catch up
                due = time.monotonic()
            self._stopped.wait(max(0.0, delay))

    # -- HTTP (on the handler threads) ----------------------------------------------------

    def _serve_stream(self, handler: _Handler) -> None:
        with self._cond:
            refused = self._refusing
            if refused:
                self._refused += 1
            else:
                self._connections += 1
                self._sockets.add(handler.connection)
                generation = self._generation
                self._cond.notify_all()
        if refused:
            handler.send_error(503, "camera unavailable")
            return
        try:
            handler.send_response(200)
            handler.send_header(
                "Content-Type", f"multipart/x-mixed-replace; boundary={self.boundary}"
            )
            handler.send_header("Cache-Control", "no-cache, no-store")
            handler.send_header("Pragma", "no-cache")
            handler.end_headers()
            with self._cond:  # start with the current frame
                last = self._recent[-1][0] - 1 if self._recent else -1
            while True:
                jpeg, last = self._next_part(last, generation)
                if jpeg is None:
                    return
                head = (
                    f"--{self.boundary}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n"
                ).encode("ascii")
                handler.wfile.write(head + jpeg + b"\r\n")
                handler.wfile.flush()
                with self._cond:
                    self._sent += 1
        finally:
            with self._cond:
                self._sockets.discard(handler.connection)
            handler.close_connection = True

    def _next_part(self, last: int, generation: int) -> tuple[bytes | None, int]:
        """The next frame after ``last``; None when this stream must end."""
        with self._cond:
            while True:
                if self._generation != generation or self._stopped.is_set():
                    return None, last
                newer = [part for part in self._recent if part[0] > last]
                if newer and not self._stalled:
                    if newer[0][0] == self._recent[0][0] and self._recent[0][0] > last + 1:
                        # Too far behind: skip to the newest frame, as cameras do.
                        self._skipped += newer[-1][0] - last - 1
                        return newer[-1][1], newer[-1][0]
                    return newer[0][1], newer[0][0]
                self._cond.wait(_POLL_S)

    def _serve_snapshot(self, handler: _Handler) -> None:
        with self._cond:
            self._cond.wait_for(lambda: bool(self._recent), timeout=1.0)  # the first frame
            jpeg = self._recent[-1][1] if self._recent else b""
            refused = self._refusing or not jpeg
        if refused:
            handler.send_error(503, "camera unavailable")
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", str(len(jpeg)))
        handler.end_headers()
        handler.wfile.write(jpeg)


def main(argv: list[str] | None = None) -> None:
    """``python -m simulators.mjpeg_server``: serve placeholder or label frames until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8081, help="TCP port (0: a free one)")
    parser.add_argument("--fps", type=float, default=15.0, help="frames per second")
    parser.add_argument("--width", type=int, default=640, help="frame width")
    parser.add_argument("--height", type=int, default=480, help="frame height")
    parser.add_argument(
        "--labels",
        action="store_true",
        help="serve rendered product labels (two frames per item, lighting angles A and B) "
        "instead of numbered placeholder frames",
    )
    parser.add_argument("--seed", type=int, default=0, help="render seed (with --labels)")
    parser.add_argument(
        "--counterfeit-share",
        type=float,
        default=0.5,
        help="share of counterfeit labels, 0..1 (with --labels)",
    )
    args = parser.parse_args(argv)
    render = placeholder_label(args.width, args.height)
    if args.labels:
        try:
            config = RenderConfig(
                frame_width=args.width,
                frame_height=args.height,
                counterfeit_share=args.counterfeit_share,
            )
        except ValueError as exc:
            parser.error(str(exc))
        render = dataset_frames(args.seed, config=config)
    server = MjpegServer(render, fps=args.fps, host=args.host, port=args.port)
    with server:
        print(server.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
