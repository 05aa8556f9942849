"""Baseline for every MQTT benchmark: a no-op responder through a private mosquitto.

Measures single round-trip p50/p99 and pipelined requests/s at QoS 0 and QoS 1, each
beside a raw loopback TCP echo measured in the same run (the floor under any broker).
"""

from __future__ import annotations

from bench import noop_responder, tcp_echo
from bench.report import Figure, percentile, print_figures
from simulators.broker import MosquittoBroker

SINGLE = 2000
PIPELINED = 20000
WINDOW = 64


def measure_noop(url: str, qos: int) -> tuple[float, float, float]:
    """(p50 s, p99 s, requests/s pipelined) of the no-op responder at ``qos``."""
    responder = noop_responder.ResponderProcess(url, qos)
    requester = noop_responder.Requester(url, f"q{qos}", qos)
    try:
        requester.run(200, 1)  # warm-up
        single = requester.run(SINGLE, 1)
        pipelined = requester.run(PIPELINED, WINDOW)
    finally:
        requester.close()
        responder.close()
    return percentile(single.latencies, 50), percentile(single.latencies, 99), pipelined.rate


def run() -> list[Figure]:
    """All figures of this benchmark."""
    tcp_p50, tcp_p99, tcp_rate = tcp_echo.measure(SINGLE, PIPELINED, WINDOW)
    figures: list[Figure] = []
    with MosquittoBroker() as broker:
        for qos in (0, 1):
            p50, p99, rate = measure_noop(broker.url, qos)
            figures += [
                Figure(
                    f"no-op MQTT round trip p50, QoS {qos}",
                    p50 * 1e3,
                    "ms",
                    "TCP echo p50",
                    tcp_p50 * 1e3,
                    higher_is_better=False,
                ),
                Figure(
                    f"no-op MQTT round trip p99, QoS {qos}",
                    p99 * 1e3,
                    "ms",
                    "TCP echo p99",
                    tcp_p99 * 1e3,
                    higher_is_better=False,
                ),
                Figure(
                    f"no-op MQTT pipelined (window {WINDOW}), QoS {qos}",
                    rate,
                    "req/s",
                    "TCP echo",
                    tcp_rate,
                ),
            ]
    return figures


if __name__ == "__main__":
    print_figures("MQTT baseline: no-op responder vs raw TCP echo", run())
