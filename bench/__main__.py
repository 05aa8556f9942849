"""Run every benchmark in bench/ (``make bench``), or those named on the command line."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench
from bench.report import print_figures


def main(selected: list[str]) -> None:
    """Import each ``bench_*`` module and print its figures."""
    names = sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )
    for name in names:
        if selected and name not in selected and name.removeprefix("bench_") not in selected:
            continue
        module = importlib.import_module(f"bench.{name}")
        print_figures(module.__doc__.splitlines()[0] if module.__doc__ else name, module.run())


if __name__ == "__main__":
    main(sys.argv[1:])
