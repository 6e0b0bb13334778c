"""Benchmarks: each module here measures one part of the product against a baseline run in the same process.

Run one with ``python -m bench.<module>``, all with ``python -m bench`` (``make bench``). A module takes part by
defining ``main(argv: list[str] | None = None) -> int``. Numbers are for comparison on one machine, never asserted
by tests.
"""
