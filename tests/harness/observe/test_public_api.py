"""The watchers' public surface: an explicit ``__all__``, sorted as the project sorts it, every name documented."""

from __future__ import annotations

import importlib

import pytest


def _isort_order(name: str) -> tuple[int, str]:
    """The project's order: CONSTANTS, then Classes, then functions, each alphabetical."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("module_name", ["harness.observe.http", "harness.observe.loop", "harness.observe.orm"])
def test_all_is_sorted_complete_and_documented(module_name: str) -> None:
    """Each watcher module exports a sorted ``__all__`` of names it defines, each with a docstring or a value."""
    module = importlib.import_module(module_name)
    assert module.__all__ == sorted(module.__all__, key=_isort_order)
    for name in module.__all__:
        value = getattr(module, name)
        if callable(value):
            assert value.__doc__, f"{module_name}.{name} has no docstring"
