"""Beacon: project plans written in batches by Claude, streamed and saved as they arrive."""

__version__ = "1.2.0"
