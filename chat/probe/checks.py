"""The probe's requests (being written): see :func:`run_probe`."""

from __future__ import annotations

from .model import OnStep, ProbeOptions, ProbeReport

__all__ = ["run_probe"]


async def run_probe(options: ProbeOptions, on_step: OnStep | None = None) -> ProbeReport:
    """Probe ``options.url``; ``on_step`` is called with each step as it ends. Never raises for network trouble:
    every failure is in the report. Every wait is bounded by ``options.timeout``."""
    raise NotImplementedError
