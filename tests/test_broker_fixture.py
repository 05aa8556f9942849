"""The mosquitto fixture: real broker, free port, TCP_NODELAY, stopped by PID."""

from __future__ import annotations

import os
import socket
import time

import pytest

from simulators.broker import BrokerError, MosquittoBroker
from tests.support.mqtt import Inbox, running_client

pytestmark = pytest.mark.broker


def test_broker_relays_a_message_between_two_clients(mosquitto: MosquittoBroker) -> None:
    inbox = Inbox()
    with (
        running_client(mosquitto.url, "t-sub", ["t/relay"], inbox.on_message),
        running_client(mosquitto.url, "t-pub") as pub,
    ):
        pub.publish("t/relay", b"hello", qos=1).wait_for_publish(5)
        assert inbox.get().payload == b"hello"


def test_client_sockets_have_tcp_nodelay(mosquitto: MosquittoBroker) -> None:
    with running_client(mosquitto.url, "t-nodelay") as client:
        sock = client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_broker_config_turns_tcp_nodelay_on() -> None:
    broker = MosquittoBroker()
    assert "set_tcp_nodelay true" in broker._config_text()


def test_stop_kills_the_process_and_frees_the_port(fresh_mosquitto: MosquittoBroker) -> None:
    pid = fresh_mosquitto.pid
    assert pid is not None
    port = fresh_mosquitto.port
    fresh_mosquitto.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    deadline = time.monotonic() + 2
    refused = False
    while time.monotonic() < deadline and not refused:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            time.sleep(0.05)
        except OSError:
            refused = True
    assert refused


def test_restart_brings_the_broker_back_on_the_same_port(fresh_mosquitto: MosquittoBroker) -> None:
    port, pid = fresh_mosquitto.port, fresh_mosquitto.pid
    fresh_mosquitto.restart()
    assert fresh_mosquitto.port == port
    assert fresh_mosquitto.pid not in (None, pid)
    socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_restart_needs_a_broker_that_ran() -> None:
    with pytest.raises(BrokerError, match="started before"):
        MosquittoBroker().restart()
