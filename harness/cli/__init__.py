"""The ``harness`` command line: one module per command (or family), registered on import.

Exit codes: 0 as expected, 1 findings, 2 bad usage or unusable input, 3 a harness bug.
"""

from harness.cli import (  # noqa: F401  (each module registers its commands)
    cassettes,
    catalogue,
    diagnose,
    migrate,
    record,
    replay,
    report,
)
from harness.cli.app import cli, main

__all__ = ["cli", "main"]
