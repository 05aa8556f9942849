"""What every device driver offers, whatever its kind."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from hardware.health import DeviceHealth


class Device(ABC):
    """A driver for one physical device: started, stopped, and asked for its health."""

    name: str

    @abstractmethod
    def start(self) -> None:
        """Start talking to the device; connecting and reconnecting happen by themselves."""

    @abstractmethod
    def stop(self) -> None:
        """Stop and release the device."""

    @abstractmethod
    def health(self) -> DeviceHealth:
        """State, counters and the last error."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
