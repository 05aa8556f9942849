"""A raw TCP echo server in a child process: the floor under any broker round trip."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from bench.report import percentile

MESSAGE_SIZE = 200


def serve() -> None:
    """Echo fixed-size messages on a free port; print the port; run until stdin closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    sys.stdout.write(f"{listener.getsockname()[1]}\n")
    sys.stdout.flush()
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(65536):
        conn.sendall(data)


def measure(single: int, pipelined: int, window: int) -> tuple[float, float, float]:
    """(p50 s, p99 s, messages/s pipelined) for 200-byte echoes through loopback TCP."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.tcp_echo"], stdout=subprocess.PIPE, stdin=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        msg = b"x" * MESSAGE_SIZE
        latencies = []
        for _ in range(single):
            t0 = time.perf_counter()
            sock.sendall(msg)
            _recv_exact(sock, MESSAGE_SIZE)
            latencies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        in_flight = 0
        received = 0
        for _ in range(pipelined):
            sock.sendall(msg)
            in_flight += 1
            if in_flight >= window:
                _recv_exact(sock, MESSAGE_SIZE * in_flight)
                received += in_flight
                in_flight = 0
        _recv_exact(sock, MESSAGE_SIZE * in_flight)
        rate = pipelined / (time.perf_counter() - t0)
        sock.close()
        return percentile(latencies, 50), percentile(latencies, 99), rate
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.kill()
        proc.wait()


def _recv_exact(sock: socket.socket, size: int) -> None:
    while size > 0:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("echo server closed")
        size -= len(chunk)


if __name__ == "__main__":
    serve()
