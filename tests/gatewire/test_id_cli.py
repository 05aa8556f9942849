"""``provgate id parse``: canonical form on stdout, exit 2 and a one-line reason otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatewire.cli import app
from provgate_cli.main import app as root_app

runner = CliRunner()

GS1_EXAMPLE = "]d2" + "0109506000134352" + "17201225" + "10ABC123" + "\\x1d" + "21XYZ"
JSON_KEYS = ["gtin", "serial", "batch", "expiry", "epc_uri", "digital_link", "kind"]


def test_parse_json_prints_the_canonical_form_with_iso_expiry() -> None:
    result = runner.invoke(app, ["parse", GS1_EXAMPLE, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == JSON_KEYS
    assert data == {
        "gtin": "09506000134352",
        "serial": "XYZ",
        "batch": "ABC123",
        "expiry": "2020-12-25",
        "epc_uri": "urn:epc:id:sgtin:95060001343.05.XYZ",
        "digital_link": "https://id.gs1.org/01/09506000134352/10/ABC123/21/XYZ?17=201225",
        "kind": "gs1_element_string",
    }


def test_backslash_x1d_escape_and_literal_gs_are_the_same_separator() -> None:
    escaped = runner.invoke(app, ["parse", "0109506000134352" + "10L1\\x1D21S1", "--json"])
    literal = runner.invoke(app, ["parse", "0109506000134352" + "10L1\x1d21S1", "--json"])
    assert escaped.exit_code == literal.exit_code == 0
    assert json.loads(escaped.stdout) == json.loads(literal.stdout)
    assert json.loads(literal.stdout)["batch"] == "L1"


def test_null_fields_are_json_null() -> None:
    result = runner.invoke(app, ["parse", "9506000134352", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["serial"] is data["expiry"] is data["epc_uri"] is None
    assert data["kind"] == "gtin"


def test_human_output_lists_every_field_and_the_key() -> None:
    result = runner.invoke(app, ["parse", "3074257BF7194E4000001A85"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for name in [*JSON_KEYS, "key"]:
        assert any(line.split()[:1] == [name] for line in lines), name
    assert "urn:epc:id:sgtin:0614141.812345.6789" in result.stdout
    assert "80614141123458/6789" in result.stdout


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0109506000134353", "check digit"),
        ("(01)09506000134352(23)5", "Application Identifier"),
        ("3074257BF7194E4000001A", "truncated"),
        ("3174257BF7194E4000001A85", "not an item ID (sgtin required)"),
        ("junk", "unrecognised ID"),
        ("", "empty input"),
    ],
)
def test_invalid_id_exits_2_with_one_line_reason_on_stderr(text: str, reason: str) -> None:
    result = runner.invoke(app, ["parse", text, "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("invalid item ID: ")
    assert reason in result.stderr
    assert result.stderr.count("\n") == 1


def test_root_cli_mounts_parse_under_id() -> None:
    result = runner.invoke(root_app, ["id", "parse", "(01)09506000134352(21)XYZ", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["serial"] == "XYZ"


def test_installed_provgate_command_parses_and_rejects() -> None:
    exe = Path(sys.executable).with_name("provgate")
    if not exe.exists():  # pragma: no cover - only without an installed console script
        pytest.skip("provgate console script not installed")
    good = subprocess.run(
        [str(exe), "id", "parse", "--json", GS1_EXAMPLE],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["serial"] == "XYZ"
    invalid = subprocess.run(
        [str(exe), "id", "parse", "0109506000134353"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert invalid.returncode == 2
    assert invalid.stdout == ""
    assert invalid.stderr.startswith("invalid item ID:")
