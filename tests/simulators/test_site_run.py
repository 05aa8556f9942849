"""A simulated site run: the parts start in order, a part that fails stops the whole site
with a message naming it and its log, and the private broker falls back to the embedded one
where mosquitto is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewire.messages import GateKind
from simulators import site_processes, site_run
from simulators.embedded_broker import EmbeddedBroker
from simulators.site_run import RunSettings, SiteRun, SiteRunError, gate_layout


def _processes_naming(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def test_gates_are_half_inbound_rounded_towards_inbound() -> None:
    assert gate_layout(3) == [
        ("in-01", GateKind.INBOUND),
        ("in-02", GateKind.INBOUND),
        ("out-01", GateKind.OUTBOUND),
    ]
    with pytest.raises(ValueError, match="at least one gate"):
        gate_layout(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gates": 17}, "gates must be 1…16"),
        ({"rate": 0}, "rate must be in"),
        ({"broker": "rabbit"}, "broker must be one of"),
        ({"mqtt_url": "tcp://x"}, "must start with mqtt://"),
    ],
)
def test_bad_settings_are_refused_saying_why(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunSettings(**kwargs)  # type: ignore[arg-type]


def test_without_mosquitto_the_private_broker_is_the_embedded_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(site_processes, "find_mosquitto", lambda: None)
    broker, what = site_processes.start_broker("auto")
    try:
        assert isinstance(broker, EmbeddedBroker)
        assert "mosquitto is not installed" in what
    finally:
        broker.close()


@pytest.mark.broker
def test_a_gate_that_fails_before_its_belt_starts_stops_the_whole_site_naming_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad-profile.yaml"
    bad.write_text("gate: [not, a, mapping\n")
    monkeypatch.setitem(site_run._PROFILE_OF, GateKind.INBOUND, bad)
    run_dir = tmp_path / "run"
    with (
        SiteRun(run_dir, RunSettings(gates=1, items=2)) as run,
        pytest.raises(SiteRunError) as failed,
    ):
        run.start()
    message = str(failed.value)
    assert "gate in-01 exited with 2 before its belt started" in message
    assert str(run_dir / "in-01.log") in message
    assert _processes_naming(str(run_dir)) == []  # the gateway was stopped too


@pytest.mark.broker
def test_a_gateway_that_dies_during_the_run_is_reported_with_its_log(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with SiteRun(run_dir, RunSettings(gates=1, items=3, rate=1.0)) as run:
        run.start()
        gateway = run._gateway
        assert gateway is not None
        gateway.kill()
        gateway.wait()
        run.stop()
        assert run.gateway_failure is not None
        assert "the gateway died during the run" in run.gateway_failure
        assert str(run_dir / "gateway.log") in run.gateway_failure
    assert _processes_naming(str(run_dir)) == []
