"""Driver registry: each driver module declares its config with a ``type`` tag.

In the style of Frigate's detector plugins: a driver module defines a pydantic config
whose ``type`` field is a ``Literal`` and registers a factory with
:func:`register_driver`; configuration picks the driver by that tag.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, TypeVar, get_args

from pydantic import BaseModel

from gatewire.yamlconfig import ConfigError, ConfigProblem, validate
from hardware.base import Device

# Modules that register drivers when imported; each must import without optional
# dependencies installed (they import those inside the driver, when it is built).
DRIVER_MODULES: tuple[str, ...] = (
    "hardware.barcode.driver",
    "hardware.rfid.driver",
    "hardware.camera.driver",
    "hardware.gate_io.sim",
    "hardware.gate_io.gpiozero_io",
)


class DeviceKind(StrEnum):
    """What a device is for at the gate."""

    BARCODE = "barcode"
    RFID = "rfid"
    CAMERA = "camera"
    GATE_IO = "gate_io"


ConfigT = TypeVar("ConfigT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """One registered driver."""

    type_tag: str
    kind: DeviceKind
    config: type[BaseModel]
    factory: Callable[[Any], Device]
    description: str


_DRIVERS: dict[str, DriverSpec] = {}


def register_driver(
    kind: DeviceKind, config: type[ConfigT]
) -> Callable[[Callable[[ConfigT], Device]], Callable[[ConfigT], Device]]:
    """Register ``factory`` as the driver for configs of class ``config``.

    The tag is read from ``config``'s ``type: Literal[...]`` field.
    """
    field = config.model_fields.get("type")
    tags = get_args(field.annotation) if field is not None else ()
    if len(tags) != 1 or not isinstance(tags[0], str):
        raise TypeError(f"{config.__name__} needs a field `type: Literal['<tag>']`")
    tag = tags[0]

    def decorate(factory: Callable[[ConfigT], Device]) -> Callable[[ConfigT], Device]:
        if tag in _DRIVERS and _DRIVERS[tag].factory is not factory:
            raise ValueError(f"two drivers registered for type {tag!r}")
        doc = (config.__doc__ or "").strip().splitlines()
        _DRIVERS[tag] = DriverSpec(tag, kind, config, factory, doc[0] if doc else "")
        return factory

    return decorate


def load_driver_modules() -> None:
    """Import every module that registers drivers (idempotent)."""
    for module in DRIVER_MODULES:
        importlib.import_module(module)


def drivers() -> dict[str, DriverSpec]:
    """All registered drivers by type tag."""
    load_driver_modules()
    return dict(_DRIVERS)


def parse_device_config(
    data: object,
    source: str = "<config>",
    lines: Mapping[tuple[str, ...], int] | None = None,
    path: tuple[str, ...] = (),
    kind: DeviceKind | None = None,
) -> BaseModel:
    """Validate one device's config with the model its ``type`` names."""
    known = drivers()
    line = (lines or {}).get(path)
    where = ".".join(path)
    if not isinstance(data, Mapping):
        raise ConfigError([ConfigProblem(source, line, where, "expected a mapping with a type")])
    tag = data.get("type")
    candidates = sorted(t for t, s in known.items() if kind is None or s.kind is kind)
    if tag not in known or (kind is not None and known[str(tag)].kind is not kind):
        choices = ", ".join(candidates) or "none"
        if tag is None:
            message = f"missing `type`; one of: {choices}"
        else:
            message = f"unknown device type {tag!r}; known: {choices}"
            line = (lines or {}).get((*path, "type"), line)
        raise ConfigError([ConfigProblem(source, line, ".".join((*path, "type")), message)])
    spec = known[str(tag)]
    if not path:
        return validate(spec.config, data, source, lines)
    shifted = {k[len(path) :]: v for k, v in (lines or {}).items() if k[: len(path)] == path}
    try:
        return validate(spec.config, data, source, shifted)
    except ConfigError as exc:
        raise ConfigError(
            [replace(p, path=".".join(filter(None, (where, p.path)))) for p in exc.problems]
        ) from exc


def build_device(config: BaseModel) -> Device:
    """Build the driver a validated config names."""
    tag = getattr(config, "type", None)
    spec = drivers().get(str(tag))
    if spec is None or not isinstance(config, spec.config):
        raise ValueError(f"no driver registered for {type(config).__name__} (type {tag!r})")
    return spec.factory(config)
