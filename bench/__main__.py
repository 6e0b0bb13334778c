"""Run every benchmark module of this package, or those named: ``python -m bench [name]...``; then draw the PNG
plots of the results (``bench/_plots.py``). ``python -m bench plots`` only draws them, from the last results."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
import textwrap
from pathlib import Path

from ._plots import write_plots

HERE = Path(__file__).resolve().parent
USAGE = "usage: python -m bench [-h] [name ...]"
PLOTS = "plots"  # not a module: the name that only draws the plots


def modules() -> list[str]:
    """Names of the modules in this package that define ``main``, in alphabetical order (read from the source:
    ``loadgen`` is a library of the others)."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules([str(HERE)])
        if not info.name.startswith("_") and _defines_main(HERE / f"{info.name}.py")
    )


def _defines_main(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def summary(name: str) -> str:
    """The first paragraph of a module's docstring, on one line (read from the source: nothing is imported)."""
    docstring = ast.get_docstring(ast.parse((HERE / f"{name}.py").read_text(encoding="utf-8"))) or ""
    return " ".join(docstring.split("\n\n")[0].replace("``", "").split())


def help_text() -> str:
    """What ``-h``/``--help`` prints: usage, what the runner does, and each module with its summary."""
    width = max(len(name) for name in modules()) + 2
    lines = [
        USAGE,
        "",
        "Run every benchmark module, or those named, each on its default budget. Every module reports ratios",
        "against a baseline measured in the same run, with the absolute numbers next to them (docs/benchmarks.md).",
        "Then the results written as JSON (artifacts/bench/) are drawn as PNG plots in docs/img/ (needs matplotlib).",
        "",
        "benchmarks:",
    ]
    for name in modules():
        wrapped = textwrap.wrap(summary(name), width=100 - width - 2) or [""]
        lines.append(f"  {name:<{width}}{wrapped[0]}")
        lines.extend(f"  {'':<{width}}{line}" for line in wrapped[1:])
    lines.append(f"  {PLOTS:<{width}}run nothing, only draw the plots from the last results")
    lines += ["", "options:", "  -h, --help  show this help and exit", ""]
    lines.append("Options of one module (budget, rounds, ...): python -m bench.<name> --help")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmark modules (all without names); returns the exit status (2 for bad arguments)."""
    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:
        print(help_text())
        return 0
    options = [arg for arg in args if arg.startswith("-")]
    if options:
        # Module options (--budget, --rounds) are not passed through: one module runs with them on its own.
        print(
            f"bench: unknown option {options[0]} (options of one module: python -m bench.<name> --help)",
            file=sys.stderr,
        )
        return 2
    available = modules()
    unknown = [name for name in args if name not in (*available, PLOTS)]
    if unknown:
        print(f"bench: no benchmark named {', '.join(unknown)} (available: {', '.join(available)})", file=sys.stderr)
        return 2
    status = 0
    for name in [name for name in args if name != PLOTS] if args else available:
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "main", None)
        if run is None:
            continue
        print(f"== bench.{name}", flush=True)
        status |= int(run([]) or 0)
    print("== plots", flush=True)
    for line in write_plots():
        print(line, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
