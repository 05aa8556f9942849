"""The gateway's configuration: one YAML file, validated by :class:`GatewayConfig`.

Every setting has a default, so ``provgate gateway run`` starts a demo gateway with no file
at all (site ``demo``, a SQLite ledger in the working directory, the documented example
site secret; a warning says so). Errors name the file, line and setting
(:func:`load_config`). Secrets are given as hex or as the path of a file holding them, and
are never printed: they are pydantic ``SecretStr`` values.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from gateway.policy import Policy
from gatewire.auth import MIN_SITE_SECRET
from gatewire.messages import DEFAULT_MAX_PAYLOAD, GateKind
from gatewire.mqtt import BrokerAddress
from gatewire.topics import ID_PATTERN, is_valid_id
from gatewire.yamlconfig import ConfigError, ConfigProblem, read_yaml_file, validate

__all__ = [
    "CONFIG_KEY",
    "DEMO_SITE_SECRET",
    "GateKind",
    "GateSettings",
    "GatewayConfig",
    "HttpSettings",
    "LimitSettings",
    "MqttSettings",
    "check_config_mapping",
    "load_config",
    "resolve_secret",
]

CONFIG_KEY: Final = "site_org"
"""Top-level key that tells ``provgate config check`` a file is a gateway config."""
DEMO_SITE_SECRET: Final = bytes(range(32)).hex()
"""The example secret of docs/protocol.md: the default, for demos only."""
_HEX_RE: Final = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_INBOUND_ID: Final = re.compile(r"in[-_0-9]")
_OUTBOUND_ID: Final = re.compile(r"out[-_0-9]")
_SHARE_GROUP: Final = r"^[A-Za-z0-9_-]{1,64}$"
_INSPECTION_LABEL: Final = b"provgate/v1/inspection-draw"
_CONFIG = ConfigDict(extra="forbid", frozen=True)


def resolve_secret(value: str, what: str, *, min_bytes: int = MIN_SITE_SECRET) -> bytes:
    """Bytes of a secret given as hex, or as the path of a file holding hex or raw bytes."""
    text = value.strip()
    if _HEX_RE.fullmatch(text):
        secret = bytes.fromhex(text)
    else:
        path = Path(text).expanduser()
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ValueError(
                f"{what} is neither hex nor a readable file ({exc.strerror or exc})"
            ) from None
        stripped = raw.strip()
        try:
            decoded = stripped.decode("ascii")
        except UnicodeDecodeError:
            decoded = ""
        secret = bytes.fromhex(decoded) if _HEX_RE.fullmatch(decoded) else raw
    if len(secret) < min_bytes:
        raise ValueError(f"{what} is {len(secret)} bytes; at least {min_bytes} are needed")
    return secret


class GateSettings(BaseModel):
    """One gate of the site, as the ledger records it."""

    model_config = _CONFIG

    kind: GateKind = Field(
        title="Gate kind",
        description="inbound (PASS = receiving), outbound (PASS = shipping) or inspection",
    )
    read_point: str | None = Field(
        default=None,
        title="Read point",
        description="EPCIS readPoint of the gate (an SGLN URI); default "
        "urn:provgate:gate:<site>:<gate>",
    )


# The settings of gates not listed, by kind: shared (frozen), not rebuilt per lookup.
_UNLISTED: Final = {kind: GateSettings(kind=kind) for kind in GateKind}


class MqttSettings(BaseModel):
    """The MQTT verification service."""

    model_config = _CONFIG

    enabled: bool = Field(default=True, title="Enabled", description="Run the MQTT service")
    url: str = Field(
        default="mqtt://localhost:1883",
        title="Broker URL",
        description="mqtt://[user[:password]@]host[:port]",
    )
    share_group: str = Field(
        default="provgate-gateway",
        pattern=_SHARE_GROUP,
        title="Shared subscription group",
        description="Workers with the same group share requests, events and heartbeats "
        "($share/<group>/…)",
    )
    protocol: Literal[311, 5] = Field(
        default=311,
        title="MQTT protocol version",
        description="311 (MQTT 3.1.1; mosquitto serves $share to it too) or 5",
    )
    qos: Literal[0, 1] = Field(
        default=1, title="Verdict QoS", description="QoS of verdicts and error replies"
    )
    keepalive_s: int = Field(
        default=30, ge=5, le=3600, title="Keepalive (s)", description="MQTT keepalive"
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        title="Worker processes",
        description="MQTT worker processes `provgate gateway run` starts (named w1, w2, …); "
        "they share the load through the shared subscription, each with its own database "
        "connections",
    )
    worker: str = Field(
        default="w1",
        pattern=r"^[a-z0-9_-]{1,32}$",
        title="Worker name",
        description="Names this worker in its client id and counters; unique per worker",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        BrokerAddress.from_url(value)  # raises ValueError saying what is wrong
        return value


class HttpSettings(BaseModel):
    """The HTTP API (FastAPI)."""

    model_config = _CONFIG

    enabled: bool = Field(default=True, title="Enabled", description="Serve the HTTP API")
    host: str = Field(default="127.0.0.1", title="Host", description="Address to listen on")
    port: int = Field(default=8080, ge=1, le=65535, title="Port", description="TCP port")
    bootstrap_admin_key: SecretStr | None = Field(
        default=None,
        title="Bootstrap admin key",
        description="A secret (at least 24 characters) accepted as an admin API key, to "
        "create the first keys; leave unset once real admin keys exist",
    )


class LimitSettings(BaseModel):
    """Bounds that keep a misbehaving client from hurting the service."""

    model_config = _CONFIG

    max_payload: int = Field(
        default=DEFAULT_MAX_PAYLOAD,
        ge=1024,
        le=16 * 1024 * 1024,
        title="Max payload (bytes)",
        description="Payloads above this are refused unread (too_large)",
    )
    freshness_s: float = Field(
        default=30.0, gt=0, le=3600, title="Freshness (s)", description="Request ts window"
    )
    max_remembered: int = Field(
        default=262_144,
        ge=1024,
        le=10_000_000,
        title="Remembered request ids",
        description="Replay table size",
    )
    queue_size: int = Field(
        default=10_000,
        ge=10,
        le=1_000_000,
        title="Background queue size",
        description=(
            "Events and heartbeats waiting for the database; beyond: heartbeats dropped and "
            "counted, gate events wait (the broker holds them)"
        ),
    )
    status_interval_s: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        title="Status interval (s)",
        description="How often the gateway records its own counters and logs refusals",
    )


class GatewayConfig(BaseModel):
    """The gateway's configuration file (``provgate gateway run --config FILE``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="provgate gateway")

    site: Annotated[str, Field(pattern=ID_PATTERN)] = Field(
        default="demo", title="Site id", description="The site id in topics and messages"
    )
    site_org: str = Field(
        default="site-dc1",
        min_length=1,
        max_length=64,
        title="Site organisation",
        description="Ledger organisation that signs the site's gate events",
    )
    location: str = Field(
        default="urn:epc:id:sgln:5012345.00005.0",
        min_length=3,
        title="Site location",
        description="EPCIS bizLocation of the site (an SGLN URI)",
    )
    site_secret: SecretStr = Field(
        default=SecretStr(DEMO_SITE_SECRET),
        title="Site secret",
        description="Secret every gate key derives from: hex, or the path of a file holding "
        "it (at least 16 bytes); the default is the documented example secret, demo only",
    )
    inspection_secret: SecretStr | None = Field(
        default=None,
        title="Inspection secret",
        description="Key of the inspection draw (hex or a file path); default: derived from "
        "the site secret",
    )
    ledger_url: str = Field(
        default="provgate-ledger.db",
        min_length=1,
        title="Ledger database",
        description="A path, sqlite:///… or postgresql://…",
    )
    keystore_dir: Path | None = Field(
        default=None,
        title="Keystore directory",
        description="Organisations' Ed25519 keys; default <db>.keys next to a SQLite file",
    )
    gates: dict[str, GateSettings] = Field(
        default_factory=dict,
        title="Gates",
        description="Gate id → kind and read point; an unlisted gate is inbound if its id "
        "starts with in- / in_ / in<digit>, outbound likewise with out, else an inspection "
        "gate (as `provgate verify`'s gate `cli` is)",
    )
    mqtt: MqttSettings = Field(default_factory=MqttSettings, title="MQTT service")
    http: HttpSettings = Field(default_factory=HttpSettings, title="HTTP API")
    policy: Policy = Field(default_factory=Policy, title="Verification policy")
    limits: LimitSettings = Field(default_factory=LimitSettings, title="Limits")

    @field_validator("gates")
    @classmethod
    def _gate_ids(cls, value: dict[str, GateSettings]) -> dict[str, GateSettings]:
        bad = [g for g in value if not is_valid_id(g) or g == "gateway"]
        if bad:
            raise ValueError(f"invalid gate id(s) {', '.join(map(repr, bad))}")
        return value

    @model_validator(mode="after")
    def _something_to_run(self) -> GatewayConfig:
        if not (self.mqtt.enabled or self.http.enabled):
            raise ValueError("mqtt.enabled and http.enabled are both false: nothing to run")
        return self

    # ---- derived values -------------------------------------------------------------------

    @property
    def uses_demo_secret(self) -> bool:
        """True when the site secret is the documented example one."""
        return self.site_secret_bytes() == bytes.fromhex(DEMO_SITE_SECRET)

    def site_secret_bytes(self) -> bytes:
        """The site secret."""
        return resolve_secret(self.site_secret.get_secret_value(), "site_secret")

    def inspection_secret_bytes(self) -> bytes:
        """The inspection draw key: configured, or derived from the site secret."""
        if self.inspection_secret is not None:
            return resolve_secret(self.inspection_secret.get_secret_value(), "inspection_secret")
        return hmac.digest(self.site_secret_bytes(), _INSPECTION_LABEL, hashlib.sha256)

    def gate(self, gate: str) -> GateSettings:
        """The settings of ``gate`` (defaults for a gate not listed)."""
        found = self.gates.get(gate)
        if found is not None:
            return found
        if _INBOUND_ID.match(gate):
            return _UNLISTED[GateKind.INBOUND]
        if _OUTBOUND_ID.match(gate):
            return _UNLISTED[GateKind.OUTBOUND]
        return _UNLISTED[GateKind.INSPECTION]

    def read_point(self, gate: str) -> str:
        """EPCIS readPoint of ``gate``."""
        return self.gate(gate).read_point or f"urn:provgate:gate:{self.site}:{gate}"

    def keys_dir(self) -> Path:
        """The keystore directory (configured, or next to a SQLite ledger)."""
        if self.keystore_dir is not None:
            return self.keystore_dir
        from gateway.cli import default_keys_dir

        return default_keys_dir(self.ledger_url)


def load_config(path: str | Path | None) -> GatewayConfig:
    """The config in ``path`` (defaults for None); ConfigError says what to fix, and where."""
    if path is None:
        return GatewayConfig()
    source = str(path)
    data, lines = read_yaml_file(path)
    config = validate(GatewayConfig, data, source, lines)
    _check_secrets(config, source, lines)
    return config


def _check_secrets(
    config: GatewayConfig, source: str, lines: Mapping[tuple[str, ...], int]
) -> None:
    """Secrets given as hex must be long enough; the message never quotes them. (Secret
    files are read when the gateway starts: they may exist only on the gateway host.)"""
    problems = []
    for name in ("site_secret", "inspection_secret"):
        value: SecretStr | None = getattr(config, name)
        if value is None or not _HEX_RE.fullmatch(value.get_secret_value().strip()):
            continue
        try:
            resolve_secret(value.get_secret_value(), name)
        except ValueError as exc:
            problems.append(ConfigProblem(source, lines.get((name,)), name, str(exc)))
    key = config.http.bootstrap_admin_key
    if key is not None and len(key.get_secret_value()) < 24:
        path = ("http", "bootstrap_admin_key")
        message = "must be at least 24 characters"
        problems.append(ConfigProblem(source, lines.get(path), ".".join(path), message))
    if problems:
        raise ConfigError(problems)


def check_config_mapping(
    data: Mapping[str, Any], source: str, lines: Mapping[tuple[str, ...], int]
) -> str:
    """``provgate config check`` for a gateway config (recognised by ``site_org:``): validate
    it (ConfigError naming file, line and setting) and say what it sets up."""
    config = validate(GatewayConfig, data, source, lines)
    _check_secrets(config, source, lines)
    mqtt = "mqtt on" if config.mqtt.enabled else "mqtt off"
    http = "http on" if config.http.enabled else "http off"
    return f"gateway config, site {config.site}, {mqtt}, {http}"
