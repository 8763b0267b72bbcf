"""The open Schemathesis run (bench.fuzz.run_open), as its own part: it is long."""

from bench.fuzz import run_open as run  # noqa: F401 - the part's entry
