"""The MJPEG network camera simulator: the real wire format, and drop / stall / resume."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from simulators.camera import placeholder_label, read_seq_code
from simulators.mjpeg_server import MjpegServer
from tests.support.waiting import wait_until


@pytest.fixture
def server() -> Iterator[MjpegServer]:
    with MjpegServer(placeholder_label(160, 120), fps=40, boundary="cam42") as mjpeg:
        yield mjpeg


def read_part(response: http.client.HTTPResponse, boundary: str) -> tuple[dict[str, str], bytes]:
    """One multipart part: its headers and body (read by Content-Length)."""
    line = response.readline()
    while line in (b"\r\n", b"\n"):
        line = response.readline()
    assert line.rstrip(b"\r\n") == f"--{boundary}".encode()
    headers = {}
    while (line := response.readline()) not in (b"\r\n", b"\n"):
        name, _, value = line.decode("ascii").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = response.read(int(headers["content-length"]))
    return headers, body


def test_stream_is_multipart_jpeg_with_content_length(server: MjpegServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", "/stream.mjpg")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=cam42"
        parts = [read_part(response, "cam42") for _ in range(3)]
    finally:
        connection.close()
    codes = []
    for headers, body in parts:
        assert headers["content-type"] == "image/jpeg"
        assert body[:2] == b"\xff\xd8"
        assert body[-2:] == b"\xff\xd9"
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        codes.append(read_seq_code(np.asarray(image, dtype=np.uint8)))
    assert codes == [codes[0], codes[0] + 1, codes[0] + 2]


def test_opencv_ffmpeg_opens_the_url_like_an_ip_camera(server: MjpegServer) -> None:
    capture = cv2.VideoCapture(server.url, cv2.CAP_FFMPEG)
    try:
        assert capture.isOpened()
        assert capture.getBackendName() == "FFMPEG"
        ok, image = capture.read()
    finally:
        capture.release()
    assert ok
    assert image.shape == (120, 160, 3)


def test_snapshot_and_unknown_paths(server: MjpegServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", "/snapshot.jpg")
        response = connection.getresponse()
        body = response.read()
        assert (response.status, response.getheader("Content-Type")) == (200, "image/jpeg")
        assert body[:2] == b"\xff\xd8"
        connection.request("GET", "/nothing")
        missing = connection.getresponse()
        missing.read()
        assert missing.status == 404
    finally:
        connection.close()


def test_drop_closes_streams_and_refuses_until_resume(server: MjpegServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", "/stream.mjpg")
        response = connection.getresponse()
        read_part(response, "cam42")
        assert server.wait_clients(1, 2.0)
        server.drop()
        started = time.monotonic()
        response.read()  # returns once the server has closed the stream
        assert time.monotonic() - started < 2.0
    finally:
        connection.close()
    assert wait_until(lambda: server.stats().clients == 0)
    refused = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        refused.request("GET", "/stream.mjpg")
        answer = refused.getresponse()
        answer.read()
        assert answer.status == 503
    finally:
        refused.close()
    server.resume()
    capture = cv2.VideoCapture(server.url, cv2.CAP_FFMPEG)
    try:
        assert capture.read()[0]
    finally:
        capture.release()
    stats = server.stats()
    assert stats.refused == 1
    assert stats.connections == 2


def test_stall_keeps_the_connection_but_sends_nothing(server: MjpegServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", "/stream.mjpg")
        response = connection.getresponse()
        read_part(response, "cam42")
        server.stall()
        sent = -1
        while (now_sent := server.stats().parts_sent) != sent:  # a part on its way arrives
            sent = now_sent
            time.sleep(0.1)
        time.sleep(0.2)  # 8 frames at 40 fps
        assert server.stats().parts_sent == sent
        assert server.stats().clients == 1
        server.resume()
        assert wait_until(lambda: server.stats().parts_sent > sent)
    finally:
        connection.close()
