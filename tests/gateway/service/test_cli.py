"""``provgate gateway run`` as a child process, asked by ``provgate verify`` like a gate."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from gateway.registry import Registry
from gatewire.messages import Availability, Decision, Verdict, decode
from gatewire.topics import SiteTopics
from simulators.broker import MosquittoBroker
from tests.gateway.service.support import (
    SECRET,
    SITE_ORG,
    SITE_SGLN,
    Site,
    epc,
    gate_client,
    item,
)
from tests.support.cli import PROVGATE, ROOT, first_line, provgate
from tests.support.mqtt import Inbox, running_client
from tests.support.waiting import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(path: Path, site: Site, url: str, site_id: str, http_port: int) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "site": site_id,
                "site_org": SITE_ORG,
                "location": SITE_SGLN,
                "site_secret": SECRET.hex(),
                "ledger_url": site.url,
                "keystore_dir": str(site.keys_dir),
                "mqtt": {"url": url, "share_group": f"g-{site_id}"},
                "http": {"host": "127.0.0.1", "port": http_port},
            }
        )
    )
    return path


@contextmanager
def running_gateway(config: Path, *flags: str) -> Iterator[subprocess.Popen[str]]:
    with provgate("gateway", "run", "--config", str(config), *flags) as proc:
        line = first_line(proc)
        assert line.startswith("gateway ready:"), line
        yield proc


def stopped(proc: subprocess.Popen[str], timeout: float = 45.0) -> int:
    """The exit code of a gateway told to stop; on a hang, fail with what it printed (it
    dumps its threads' stacks after SLOW_STOP_S seconds of stopping)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"gateway still running {timeout} s after SIGTERM; stderr:\n{err[-6000:]}")


def verify(url: str, site_id: str, item_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *PROVGATE,
            "verify",
            item_id,
            "--mqtt",
            url,
            "--site",
            site_id,
            "--secret",
            SECRET.hex(),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_verify_asks_a_running_gateway_and_exits_by_decision(
    tmp_path: Path, site: Site, mosquitto: MosquittoBroker, site_id: str
) -> None:
    site.commissioned(1)
    config = write_config(tmp_path / "gw.yaml", site, mosquitto.url, site_id, free_port())
    with running_gateway(config, "--mqtt-only") as proc:
        passed = verify(mosquitto.url, site_id, epc(1))
        rejected = verify(mosquitto.url, site_id, epc(2), "--json")
        bad = verify(mosquitto.url, site_id, "not-an-id")
        proc.send_signal(signal.SIGTERM)
        assert stopped(proc) == 0
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.startswith(f"PASS  {item(1).key}  ")
    assert "ledger.ok" in passed.stdout
    assert rejected.returncode == 4, rejected.stderr
    verdict = json.loads(rejected.stdout)
    assert (verdict["type"], verdict["decision"]) == ("verdict", "REJECT")
    assert verdict["reasons"] == ["ledger.unknown_serial"]
    assert bad.returncode == 2
    assert "not an item ID" in bad.stderr


def test_verify_without_a_gateway_times_out_with_its_own_exit_code(
    mosquitto: MosquittoBroker, site_id: str
) -> None:
    result = verify(mosquitto.url, site_id, epc(1), "--timeout", "0.5")
    assert result.returncode == 6
    assert "no verdict" in result.stderr


def test_gateway_run_serves_the_http_api_too_and_goes_offline_on_sigterm(
    tmp_path: Path, site: Site, mosquitto: MosquittoBroker, site_id: str
) -> None:
    port = free_port()
    config = write_config(tmp_path / "gw.yaml", site, mosquitto.url, site_id, port)
    with running_gateway(config) as proc:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=10) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert stopped(proc) == 0
    inbox = Inbox()
    topic = SiteTopics(site_id).gateway_status
    with running_client(mosquitto.url, f"probe-{site_id}", [topic], inbox.on_message):
        status = decode(bytes(inbox.get().payload))
    assert isinstance(status, Availability)
    assert not status.online


def test_a_killed_gateway_is_marked_offline_by_its_last_will(
    tmp_path: Path, site: Site, mosquitto: MosquittoBroker, site_id: str
) -> None:
    config = write_config(tmp_path / "gw.yaml", site, mosquitto.url, site_id, free_port())
    topic = SiteTopics(site_id).gateway_status
    inbox = Inbox()
    with (
        running_client(mosquitto.url, f"probe-{site_id}", [topic], inbox.on_message),
        running_gateway(config, "--mqtt-only") as proc,
    ):
        online = decode(bytes(inbox.get().payload))
        proc.kill()
        offline = decode(bytes(inbox.get(timeout=60).payload))
    assert isinstance(online, Availability)
    assert online.online
    assert isinstance(offline, Availability)
    assert not offline.online


def test_a_bad_config_exits_2_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("site: demo\nmqtt:\n  url: ftp://x\n")
    with provgate("gateway", "run", "--config", str(path)) as proc:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert f"{path}:3: mqtt.url" in err


def test_gateway_run_with_two_workers_starts_a_second_process_that_answers_too(
    tmp_path: Path, site: Site, mosquitto: MosquittoBroker, site_id: str
) -> None:
    site.commissioned(*range(1, 13))
    config = write_config(tmp_path / "gw.yaml", site, mosquitto.url, site_id, free_port())
    document = yaml.safe_load(config.read_text())
    document["mqtt"]["workers"] = 2
    document["limits"] = {"status_interval_s": 0.2}
    config.write_text(yaml.safe_dump(document))
    registry = Registry(site.ledger.store)

    def own_counters() -> dict[str, int]:
        rows = [g for g in registry.gates() if (g.site, g.gate) == (site_id, "gateway")]
        return rows[0].counters if rows else {}

    with (
        running_gateway(config, "--mqtt-only") as proc,
        gate_client(mosquitto.url, site_id) as gate,
    ):
        assert wait_until(lambda: "w2.uptime_s" in own_counters(), timeout=30)
        for n in range(1, 13):
            reply = gate.verify(item(n))
            assert isinstance(reply, Verdict)
            assert reply.decision is Decision.PASS
        assert wait_until(
            lambda: (
                own_counters().get("w1.requests", 0) + own_counters().get("w2.requests", 0) == 12
            )
        )
        proc.send_signal(signal.SIGTERM)
        assert stopped(proc) == 0
    counters = own_counters()
    assert counters["w1.requests"] > 0
    assert counters["w2.requests"] > 0
