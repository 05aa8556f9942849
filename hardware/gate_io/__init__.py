"""Gate I/O: the photo eye (item present), the reject diverter and the stack light.

``GateIo`` is the interface the agent uses; ``SimGateIo`` (``type: sim_gate_io``)
records actuations for simulation and tests; ``GpiozeroGateIo`` (``type: gpiozero``)
drives Raspberry Pi GPIO, importing gpiozero only when built. See
``docs/hardware-camera-io.md``.
"""

from hardware.gate_io.common import BaseGateIo, OutputError
from hardware.gate_io.config import (
    EncoderPinConfig,
    GateIoTiming,
    GpiozeroGateIoConfig,
    InputPinConfig,
    OutputPinConfig,
    SimEncoderConfig,
    SimGateIoConfig,
    StackLightPins,
)
from hardware.gate_io.encoder import EncoderSource, PulseCounter, SimEncoder
from hardware.gate_io.gpiozero_io import GpiozeroGateIo, build_gpiozero_gate_io
from hardware.gate_io.interface import (
    Actuation,
    ActuationKind,
    GateIo,
    LightColor,
    LightMode,
    PhotoEyeEdge,
    PhotoEyeEvent,
    PhotoEyeListener,
)
from hardware.gate_io.sim import SimGateIo, build_sim_gate_io

__all__ = [
    "Actuation",
    "ActuationKind",
    "BaseGateIo",
    "EncoderPinConfig",
    "EncoderSource",
    "GateIo",
    "GateIoTiming",
    "GpiozeroGateIo",
    "GpiozeroGateIoConfig",
    "InputPinConfig",
    "LightColor",
    "LightMode",
    "OutputError",
    "OutputPinConfig",
    "PhotoEyeEdge",
    "PhotoEyeEvent",
    "PhotoEyeListener",
    "PulseCounter",
    "SimEncoder",
    "SimEncoderConfig",
    "SimGateIo",
    "SimGateIoConfig",
    "StackLightPins",
    "build_gpiozero_gate_io",
    "build_sim_gate_io",
]
