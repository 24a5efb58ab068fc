"""Watchers that record what an application does, from outside its code (see docs/architecture.md)."""
