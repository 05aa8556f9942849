"""Gate profiles: one YAML file per gate, validated on load (``firmware_configs/gates/``).

A profile names the gate (site, gate id, kind, where its key is), its devices, the belt
geometry, how items are triggered, how verification runs, the optional camera label
check, its heartbeat and reconnect backoff, the local decision policy and the journal.
The verification deadline is derived from the belt (:attr:`GateProfile.deadline_s`) and a
profile whose deadline leaves no time to verify is refused with a message naming the
numbers to change.

Devices reuse the hardware config models. Each entry is either an inline device config
(``type: …``) or ``profile: PATH`` (a device profile, relative to the gate profile's
folder) plus settings that override it (typically ``port``). :func:`load_gate_profile`
resolves the references; every error reads ``file:line: path: message``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.vision.config import VisionConfig
from gatewire.auth import KEY_SIZE
from gatewire.messages import MAX_BATCH, Decision, GateKind
from gatewire.mqtt import BrokerAddress
from gatewire.topics import ID_PATTERN
from gatewire.yamlconfig import (
    ConfigError,
    ConfigProblem,
    parse_yaml,
    read_yaml_file,
    validate,
)
from hardware.barcode.config import SerialScannerConfig
from hardware.camera.config import OpenCvCameraConfig
from hardware.gate_io.config import GpiozeroGateIoConfig, SimGateIoConfig
from hardware.registry import DeviceKind, parse_device_config
from hardware.rfid.config import ThingMagicConfig

__all__ = [
    "CONFIG_KEY",
    "GPIO_MAX_PULSES_PER_S",
    "BeltSettings",
    "DecisionPolicy",
    "DeviceSettings",
    "EncoderSettings",
    "GateIdentitySettings",
    "GateKind",
    "GateProfile",
    "JournalSettings",
    "PresenceSettings",
    "TriggerMode",
    "TriggerSettings",
    "VerificationSettings",
    "check_gate_profile_mapping",
    "load_gate_profile",
    "parse_gate_profile",
]

GPIO_MAX_PULSES_PER_S: Final = 5000
"""Encoder pulse rate above which gpiozero callbacks are not trusted to count every pulse
(a conservative figure, not measured on a Pi)."""
CONFIG_KEY: Final = "gate"
"""Top-level key that tells ``provgate config check`` a file is a gate profile."""
_CONFIG = ConfigDict(extra="forbid", frozen=True)
_ENV_NAME: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_HEX_KEY: Final = re.compile(r"^[0-9a-fA-F]{64}$")
_DEVICE_SLOTS: Final = (
    ("scanner", DeviceKind.BARCODE),
    ("rfid", DeviceKind.RFID),
    ("gate_io", DeviceKind.GATE_IO),
)


class GateIdentitySettings(BaseModel):
    """Who the gate is and where its key is (the ``gate:`` section)."""

    model_config = _CONFIG

    site: Annotated[str, Field(pattern=ID_PATTERN)] = Field(
        title="Site id", description="The site id in topics and messages (a-z, 0-9, _ and -)."
    )
    id: Annotated[str, Field(pattern=ID_PATTERN)] = Field(
        title="Gate id",
        description="This gate's id in topics and messages; unique within the site.",
    )
    kind: GateKind = Field(
        title="Gate kind",
        description="inbound (PASS = received), outbound (PASS = shipped) or inspection.",
    )
    key_file: Path | None = Field(
        default=None,
        title="Gate key file",
        description=(
            "File holding this gate's 32-byte key (64 hex digits, or the raw bytes), as "
            "`provgate gateway` derives it from the site secret. Read when the agent "
            "starts, not by `config check`. Give this or key_env."
        ),
    )
    key_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = Field(
        default=None,
        title="Gate key variable",
        description="Environment variable holding the gate key as 64 hex digits. Give "
        "this or key_file.",
    )

    @field_validator("id")
    @classmethod
    def _not_gateway(cls, value: str) -> str:
        if value == "gateway":
            raise ValueError("'gateway' is the gateway's own id, not a gate id")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> GateIdentitySettings:
        if (self.key_file is None) == (self.key_env is None):
            raise ValueError("give exactly one of key_file and key_env")
        return self

    def load_key(self, environ: Mapping[str, str] | None = None) -> bytes:
        """The gate key; ValueError saying what is wrong (never quoting the key)."""
        if self.key_env is not None:
            env = os.environ if environ is None else environ
            text = env.get(self.key_env)
            if text is None:
                raise ValueError(f"environment variable {self.key_env} is not set")
            if not _HEX_KEY.fullmatch(text.strip()):
                raise ValueError(f"{self.key_env} must hold {KEY_SIZE * 2} hex digits")
            return bytes.fromhex(text.strip())
        assert self.key_file is not None  # the validator guarantees one source
        try:
            raw = self.key_file.expanduser().read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read key_file {self.key_file}: {exc.strerror}") from None
        stripped = raw.strip()
        if _HEX_KEY.fullmatch(stripped.decode("ascii", "replace")):
            return bytes.fromhex(stripped.decode("ascii"))
        if len(raw) == KEY_SIZE:
            return raw
        raise ValueError(
            f"key_file {self.key_file} must hold {KEY_SIZE * 2} hex digits or {KEY_SIZE} bytes"
        )


class DeviceSettings(BaseModel):
    """The gate's devices, as their drivers' own configs (``hardware`` models)."""

    model_config = _CONFIG

    scanner: SerialScannerConfig | None = Field(
        default=None,
        title="Barcode scanner",
        description="The scanner at the scan point (`type: serial_scanner`), or "
        "`profile: PATH` plus overrides such as `port`.",
    )
    rfid: ThingMagicConfig | None = Field(
        default=None,
        title="RFID reader",
        description="The UHF reader at the scan point (`type: thingmagic_mercury`), or "
        "`profile: PATH` plus overrides.",
    )
    cameras: list[OpenCvCameraConfig] = Field(
        default_factory=list,
        max_length=4,
        title="Cameras",
        description="Cameras on the labels (`type: opencv_camera`), each with a distinct "
        "name; needed by the vision check.",
    )
    gate_io: Annotated[SimGateIoConfig | GpiozeroGateIoConfig, Field(discriminator="type")] = Field(
        title="Gate I/O",
        description="Photo eye, diverter and stack light (`type: gpiozero` on a "
        "Raspberry Pi, `type: sim_gate_io` in simulation).",
    )

    @model_validator(mode="after")
    def _usable(self) -> DeviceSettings:
        if self.scanner is None and self.rfid is None:
            raise ValueError("a gate needs an ID source: configure scanner, rfid or both")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be distinct (got {', '.join(names)})")
        return self


class EncoderSettings(BaseModel):
    """A belt encoder: its pulses, counted by the gate I/O (``devices.gate_io.encoder``),
    give the belt's travel, and the diverter fires when the item has travelled to it."""

    model_config = _CONFIG

    pulses_per_m: float = Field(
        gt=0,
        le=1_000_000,
        title="Pulses per metre",
        description="Encoder pulses per metre of belt travel (pulses per revolution ÷ "
        "the circumference of the wheel or drum it turns with).",
    )


class BeltSettings(BaseModel):
    """Belt speed and the distances that set the item window and the deadline."""

    model_config = _CONFIG

    speed_m_s: float = Field(
        gt=0,
        le=10,
        title="Belt speed (m/s)",
        description="Belt speed; with an encoder, the highest speed the belt runs at "
        "(deadlines are computed for it).",
    )
    encoder: EncoderSettings | None = Field(
        default=None,
        title="Encoder",
        description="Belt encoder, when fitted (the gate I/O must count its pulses: "
        "devices.gate_io.encoder); without one the speed above is used.",
    )
    scan_to_reject_m: float = Field(
        gt=0,
        le=100,
        title="Scan point to reject point (m)",
        description="Belt travel from the photo eye at the scan point to the diverter.",
    )
    window_m: float = Field(
        gt=0,
        le=10,
        title="Item window (m)",
        description="Belt travel after the trigger during which reads belong to the item "
        "(cut short when the next item triggers).",
    )
    window_lead_m: float = Field(
        default=0.0,
        ge=0,
        le=2,
        title="Window lead (m)",
        description="The window also takes reads this much belt travel before the trigger "
        "(an RFID field reaching past the photo eye).",
    )
    actuation_ms: float = Field(
        ge=0,
        le=5000,
        title="Actuation time (ms)",
        description="From firing the diverter to it being in position (valve and stroke).",
    )

    @property
    def travel_s(self) -> float:
        """Seconds from the scan point to the reject point."""
        return self.scan_to_reject_m / self.speed_m_s

    @property
    def window_s(self) -> float:
        """Seconds the item window stays open after its trigger."""
        return self.window_m / self.speed_m_s

    @property
    def lead_s(self) -> float:
        """Seconds before the trigger the window starts."""
        return self.window_lead_m / self.speed_m_s


class TriggerMode(StrEnum):
    """What opens an item window."""

    PHOTO_EYE = "photo_eye"
    QUIET_GAP = "quiet_gap"


class TriggerSettings(BaseModel):
    """How an item window opens, and how long late reads are waited for."""

    model_config = _CONFIG

    mode: TriggerMode = Field(
        default=TriggerMode.PHOTO_EYE,
        title="Trigger",
        description="photo_eye: the photo eye's enter edge opens the window; quiet_gap "
        "(gates without a photo eye): the first read after a quiet gap opens it.",
    )
    quiet_gap_ms: float = Field(
        default=150.0,
        gt=0,
        le=10_000,
        title="Quiet gap (ms)",
        description="quiet_gap mode: no read for this long ends an item (the window also "
        "ends after window_m of belt travel).",
    )
    read_grace_ms: float = Field(
        default=20.0,
        ge=0,
        le=1000,
        title="Late-read grace (ms)",
        description="Reads are taken in time order this long after they happen, so a read "
        "delivered late still lands in its window; windows close this much later too.",
    )


class VerificationSettings(BaseModel):
    """Verification with the gateway over MQTT."""

    model_config = _CONFIG

    mqtt_url: str = Field(
        default="mqtt://localhost:1883",
        title="Broker URL",
        description="mqtt://[user[:password]@]host[:port]",
    )
    batch_max: int = Field(
        default=32,
        ge=1,
        le=MAX_BATCH,
        title="Largest batch",
        description="Items in flight are asked for in one batch request of at most this "
        "many items.",
    )
    batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        title="Batch wait (ms)",
        description="How long a closed item may wait for others to share its request "
        "(0: ask at once; items already waiting still go together).",
    )
    margin_ms: float = Field(
        default=50.0,
        ge=0,
        le=10_000,
        title="Safety margin (ms)",
        description="Kept free before the actuation deadline (scheduling jitter).",
    )
    keepalive_s: int = Field(
        default=15, ge=5, le=3600, title="Keepalive (s)", description="MQTT keepalive."
    )

    @field_validator("mqtt_url")
    @classmethod
    def _url(cls, value: str) -> str:
        BrokerAddress.from_url(value)  # raises ValueError saying what is wrong
        return value


class PresenceSettings(BaseModel):
    """The gate's heartbeat and how it reconnects to the broker."""

    model_config = _CONFIG

    heartbeat_s: float = Field(
        default=5.0,
        ge=0.1,
        le=3600,
        title="Heartbeat interval (s)",
        description="A sealed heartbeat (uptime, counters, device health) goes to the "
        "gateway this often.",
    )
    reconnect_min_s: int = Field(
        default=1,
        ge=1,
        le=60,
        title="First reconnect delay (s)",
        description="Wait before the first attempt after losing the broker; doubled after "
        "each failed attempt up to reconnect_max_s.",
    )
    reconnect_max_s: int = Field(
        default=8,
        ge=1,
        le=600,
        title="Longest reconnect delay (s)",
        description="The longest wait between reconnect attempts (items are held meanwhile).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PresenceSettings:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(
                f"reconnect_max_s ({self.reconnect_max_s}) must be at least reconnect_min_s "
                f"({self.reconnect_min_s})"
            )
        return self


class DecisionPolicy(BaseModel):
    """What the gate itself decides, on top of the gateway's verdict (never PASS)."""

    model_config = _CONFIG

    vision_suspect: Literal["REJECT", "HOLD"] = Field(
        default="REJECT",
        title="Suspect label",
        description="Decision when the label check says suspect and the gateway says PASS.",
    )
    vision_unreadable: Literal["REJECT", "HOLD"] = Field(
        default="HOLD",
        title="Unreadable label",
        description="Decision when the label check cannot judge the label.",
    )
    no_id: Literal["REJECT", "HOLD"] = Field(
        default="HOLD",
        title="No ID read",
        description="Decision for an item no source read a valid ID from.",
    )
    honour_inspection: bool = Field(
        default=True,
        title="Honour inspection requests",
        description="Hold items the gateway picks for random or risk-based inspection.",
    )

    def decision(self, case: Literal["vision_suspect", "vision_unreadable", "no_id"]) -> Decision:
        """The configured decision for ``case``."""
        return Decision(getattr(self, case))


class JournalSettings(BaseModel):
    """The local SQLite journal (``edge_agent.journal``)."""

    model_config = _CONFIG

    path: Path = Field(
        title="Journal file",
        description="SQLite file (relative paths: from the agent's working directory).",
    )
    durability: Literal["full", "normal"] = Field(
        default="full",
        title="Durability",
        description="full: each decision is on disk before the gate acts (survives power "
        "loss); normal: survives an agent crash only.",
    )
    max_backlog: int = Field(
        default=100_000,
        ge=100,
        le=10_000_000,
        title="Outbox backlog",
        description="Events waiting for the gateway beyond which new items are held.",
    )


class GateProfile(BaseModel):
    """One gate: identity, devices, belt, trigger, verification, vision, presence, policy,
    journal."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="provgate gate profile")

    gate: GateIdentitySettings = Field(title="Gate", description="Site, gate id, kind, key.")
    devices: DeviceSettings = Field(title="Devices", description="Scanner, RFID, cameras, I/O.")
    belt: BeltSettings = Field(title="Belt", description="Speed and distances.")
    trigger: TriggerSettings = Field(
        default_factory=TriggerSettings, title="Trigger", description="What opens a window."
    )
    verification: VerificationSettings = Field(
        default_factory=VerificationSettings,
        title="Verification",
        description="MQTT, batching and the safety margin.",
    )
    vision: VisionConfig | None = Field(
        default=None,
        title="Label check",
        description="The camera label check; leave out for a gate without one.",
    )
    presence: PresenceSettings = Field(
        default_factory=PresenceSettings,
        title="Presence",
        description="Heartbeat interval and reconnect backoff.",
    )
    policy: DecisionPolicy = Field(
        default_factory=DecisionPolicy,
        title="Decision policy",
        description="What suspect, unreadable and unread items get.",
    )
    journal: JournalSettings = Field(title="Journal", description="The local journal.")

    @model_validator(mode="after")
    def _consistent(self) -> GateProfile:
        if self.vision is not None and not self.devices.cameras:
            raise ValueError("vision needs a camera: add one under devices.cameras")
        self._check_timing()
        self._check_encoder()
        return self

    def _check_encoder(self) -> None:
        belt, io = self.belt, self.devices.gate_io
        gpio = isinstance(io, GpiozeroGateIoConfig)
        if belt.encoder is not None and io.encoder is None:
            if gpio:
                add = "encoder: {pin: N} (the BCM input its pulse channel is wired to)"
            else:
                rate = belt.speed_m_s * belt.encoder.pulses_per_m
                add = f"encoder: {{pulses_per_s: {rate:g}}} (belt.speed_m_s × pulses_per_m)"
            raise ValueError(
                "belt encoder: belt.encoder is set but the gate I/O counts no encoder pulses "
                f"(items would be timed as if the belt ran at {belt.speed_m_s:g} m/s); add "
                f"{add} under devices.gate_io, or remove belt.encoder"
            )
        if belt.encoder is None and io.encoder is not None:
            raise ValueError(
                "belt encoder: devices.gate_io.encoder counts pulses but belt.encoder is not "
                "set; add belt.encoder: {pulses_per_m: N}, or remove devices.gate_io.encoder"
            )
        if belt.encoder is not None and self.trigger.mode is not TriggerMode.PHOTO_EYE:
            raise ValueError(
                "belt encoder: needs trigger.mode photo_eye (a stuck encoder is detected while "
                "an item blocks the photo eye; with a quiet-gap trigger a dead encoder would "
                "leave every item 'not there yet' and never diverted); set trigger.mode: "
                "photo_eye or remove the encoder"
            )
        if belt.encoder is not None and gpio:
            rate = belt.speed_m_s * belt.encoder.pulses_per_m
            if rate > GPIO_MAX_PULSES_PER_S:
                raise ValueError(
                    f"belt encoder: belt.speed_m_s {belt.speed_m_s:g} × belt.encoder."
                    f"pulses_per_m {belt.encoder.pulses_per_m:g} = {rate:g} pulses/s, more "
                    f"than the {GPIO_MAX_PULSES_PER_S} gpiozero callbacks count reliably "
                    "(missed pulses fire the diverter late); lower pulses_per_m (a coarser "
                    "encoder or a divider)"
                )

    def _check_timing(self) -> None:
        belt, margin_s = self.belt, self.verification.margin_ms / 1000
        travel, actuation = belt.travel_s, belt.actuation_ms / 1000
        deadline = travel - actuation - margin_s
        numbers = (
            f"belt.scan_to_reject_m {belt.scan_to_reject_m:g} m ÷ belt.speed_m_s "
            f"{belt.speed_m_s:g} m/s = {travel * 1000:.0f} ms travel, minus "
            f"belt.actuation_ms {belt.actuation_ms:g} and verification.margin_ms "
            f"{self.verification.margin_ms:g}"
        )
        if deadline <= 0:
            raise ValueError(
                f"no time to decide: deadline = {numbers} = {deadline * 1000:.0f} ms; "
                "increase belt.scan_to_reject_m or lower belt.speed_m_s, belt.actuation_ms "
                "or verification.margin_ms"
            )
        budget = self.verification_budget_s
        if budget <= 0:
            raise ValueError(
                f"no time to verify: deadline {deadline * 1000:.0f} ms ({numbers}) ends "
                f"before the item window closes ({(belt.window_s) * 1000:.0f} ms of "
                f"belt.window_m, + trigger.read_grace_ms {self.trigger.read_grace_ms:g} + "
                f"verification.batch_wait_ms {self.verification.batch_wait_ms:g}); "
                "shorten belt.window_m or increase belt.scan_to_reject_m"
            )

    @property
    def deadline_s(self) -> float:
        """Seconds after the trigger by which the decision must exist:
        scan-to-reject travel - actuation time - margin."""
        return (
            self.belt.travel_s - self.belt.actuation_ms / 1000 - self.verification.margin_ms / 1000
        )

    @property
    def verification_budget_s(self) -> float:
        """Seconds left for verification once the window has closed and the batch left."""
        window = self.belt.window_s
        if self.trigger.mode is TriggerMode.QUIET_GAP:
            window = max(window, self.trigger.quiet_gap_ms / 1000)
        return (
            self.deadline_s
            - window
            - self.trigger.read_grace_ms / 1000
            - self.verification.batch_wait_ms / 1000
        )


# --- loading ---------------------------------------------------------------------------


def _read_yaml(path: Path, where: ConfigProblem) -> tuple[Any, dict[tuple[str, ...], int]]:
    """A referenced device profile; a problem at ``where`` when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            [replace(where, message=f"cannot read device profile {path}: {reason}")]
        ) from None
    return parse_yaml(text, str(path))


def _resolve_device(
    entry: object,
    kind: DeviceKind,
    path: tuple[str, ...],
    source: str,
    lines: Mapping[tuple[str, ...], int],
    base: Path,
) -> object:
    """The validated device config of one entry (inline, or ``profile:`` + overrides)."""
    if not isinstance(entry, Mapping) or "profile" not in entry:
        return parse_device_config(entry, source, lines, path, kind)
    ref = entry["profile"]
    where = ConfigProblem(source, lines.get((*path, "profile")), ".".join((*path, "profile")), "")
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError([replace(where, message="expected the path of a device profile")])
    file = (base / ref).expanduser()
    data, file_lines = _read_yaml(file, where)
    if not isinstance(data, dict):
        raise ConfigError([replace(where, message=f"{file} is not a device profile mapping")])
    overrides = {k: v for k, v in entry.items() if k != "profile"}
    merged = {**data, **overrides}
    try:
        return parse_device_config(merged, str(file), file_lines, (), kind)
    except ConfigError as exc:
        problems = []
        for problem in exc.problems:
            top = problem.path.split(".")[0]
            if top in overrides:  # the override's fault: point at the gate profile
                key = (*path, *problem.path.split("."))
                line = lines.get(key) or lines.get((*path, top))
                full = ".".join((*path, problem.path))
                problems.append(replace(problem, source=source, line=line, path=full))
            else:
                line = problem.line if problem.line is not None else file_lines.get((top,))
                problems.append(replace(problem, line=line))
        raise ConfigError(problems) from exc


def parse_gate_profile(
    data: object,
    source: str = "<gate profile>",
    lines: Mapping[tuple[str, ...], int] | None = None,
    base: Path | None = None,
) -> GateProfile:
    """Validate a gate profile mapping; ``profile:`` references are read from ``base``.

    Raises ConfigError listing every problem as ``file:line: path: message``.
    """
    lines = lines or {}
    base = base if base is not None else Path(source).parent
    if not isinstance(data, Mapping):
        message = "expected a mapping with gate:, devices:, belt: and journal:"
        raise ConfigError([ConfigProblem(source, lines.get(()), "", message)])
    resolved: dict[str, Any] = dict(data)
    devices = data.get("devices")
    problems: list[ConfigProblem] = []
    if isinstance(devices, Mapping):
        out: dict[str, Any] = dict(devices)
        for name, kind in _DEVICE_SLOTS:
            if out.get(name) is not None:
                try:
                    out[name] = _resolve_device(
                        out[name], kind, ("devices", name), source, lines, base
                    )
                except ConfigError as exc:
                    problems.extend(exc.problems)
        cameras = out.get("cameras")
        if isinstance(cameras, list):
            resolved_cameras: list[object] = []
            for index, camera in enumerate(cameras):
                path = ("devices", "cameras", str(index))
                try:
                    resolved_cameras.append(
                        _resolve_device(camera, DeviceKind.CAMERA, path, source, lines, base)
                    )
                except ConfigError as exc:
                    problems.extend(exc.problems)
            out["cameras"] = resolved_cameras
        resolved["devices"] = out
    if problems:  # also report what is wrong outside the devices
        others = {k: v for k, v in resolved.items() if k != "devices"}
        try:
            validate(GateProfile, others, source, lines)
        except ConfigError as exc:
            problems.extend(p for p in exc.problems if p.path.split(".")[0] != "devices")
        raise ConfigError(problems)
    try:
        return validate(GateProfile, resolved, source, lines)
    except ConfigError as exc:
        raise ConfigError([_placed(p, lines) for p in exc.problems]) from exc


def _placed(problem: ConfigProblem, lines: Mapping[tuple[str, ...], int]) -> ConfigProblem:
    """A whole-profile problem moved to the section it is about (timing → belt)."""
    if problem.path:
        return problem
    message = problem.message.removeprefix("Value error, ")
    cut = message.find(" (got ")  # the whole profile's repr: no help
    message = message if cut < 0 else message[:cut]
    for marker, section, path in (
        ("no time to", ("belt", "speed_m_s"), "belt"),
        ("vision needs", ("vision",), "vision"),
        ("belt encoder", ("belt", "encoder"), "belt.encoder"),
        ("belt encoder", ("devices", "gate_io", "encoder"), "devices.gate_io.encoder"),
        ("belt encoder", ("devices", "gate_io"), "devices.gate_io"),
    ):
        if marker in message and section in lines:
            return replace(problem, line=lines[section], path=path, message=message)
    return replace(problem, message=message)


def load_gate_profile(path: str | Path) -> GateProfile:
    """Read and validate the gate profile at ``path``; ConfigError says what to fix."""
    data, lines = read_yaml_file(path)
    return parse_gate_profile(data, str(path), lines, Path(path).parent)


def check_gate_profile_mapping(
    data: Mapping[str, Any], source: str, lines: Mapping[tuple[str, ...], int]
) -> str:
    """``provgate config check`` for a gate profile (recognised by ``gate:``)."""
    profile = parse_gate_profile(data, source, lines, Path(source).parent)
    encoder = profile.belt.encoder
    timed = (
        f"diverter timed by the belt encoder ({encoder.pulses_per_m:g} pulses/m)"
        if encoder is not None
        else f"diverter timed at {profile.belt.speed_m_s:g} m/s"
    )
    return (
        f"gate profile {profile.gate.site}/{profile.gate.id} ({profile.gate.kind}), "
        f"deadline {profile.deadline_s * 1000:.0f} ms, "
        f"verification budget {profile.verification_budget_s * 1000:.0f} ms, {timed}"
    )
