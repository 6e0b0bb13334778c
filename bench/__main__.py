"""Run every benchmark module of this package, or those named: ``python -m bench [name]...``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def modules() -> list[str]:
    """Names of the modules in this package that define ``main``, in alphabetical order."""
    here = str(Path(__file__).resolve().parent)
    return sorted(info.name for info in pkgutil.iter_modules([here]) if not info.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    available = modules()
    unknown = [name for name in args if name not in available]
    if unknown:
        print(f"bench: no benchmark named {', '.join(unknown)} (available: {', '.join(available)})", file=sys.stderr)
        return 2
    status = 0
    for name in args or available:
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "main", None)
        if run is None:
            continue
        print(f"== bench.{name}", flush=True)
        status |= int(run([]) or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
