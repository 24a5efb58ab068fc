"""Wrappers around the application's named functions: every call seen, nothing about the call changed."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path

import pytest

from harness.observe.code import AppCode
from harness.observe.points import PointError, PointWatch
from harness.observe.timeline import PointCalled, Timeline

HERE = Path(__file__).resolve().parent


@pytest.fixture
def app() -> object:
    """The points test app, importable as ``pointsapp`` and forgotten afterwards."""
    sys.path.insert(0, str(HERE))
    try:
        yield importlib.import_module("pointsapp.service")
    finally:
        sys.path.remove(str(HERE))
        for name in [n for n in sys.modules if n == "pointsapp" or n.startswith("pointsapp.")]:
            del sys.modules[name]


def _watch(timeline: Timeline, **points: list[str]) -> PointWatch:
    return PointWatch(timeline, AppCode([HERE / "pointsapp"]), {stage: tuple(names) for stage, names in points.items()})


def test_function_imported_by_name_is_wrapped_where_the_app_calls_it(app: object) -> None:
    """parse_plan named in its own module is also seen when called through ``from .agent import parse_plan``."""
    timeline = Timeline()
    with _watch(timeline, parse=["pointsapp.agent:parse_plan"]):
        assert app.handle("{}") == {"text": "{}"}  # type: ignore[attr-defined]
    (call,) = timeline.of(PointCalled)
    assert (call.stage, call.name, call.returned, call.result) == ("parse", "pointsapp.agent:parse_plan", True, {"text": "{}"})
    assert call.defined_at is not None and str(call.defined_at).startswith("pointsapp/agent.py:")
    # Afterwards the application holds its own function again, in both modules.
    agent = sys.modules["pointsapp.agent"]
    assert app.parse_plan is agent.parse_plan and not hasattr(agent.parse_plan, "__wrapped__")  # type: ignore[attr-defined]


def test_exception_is_recorded_and_still_raised(app: object) -> None:
    """A point that raises is recorded with the error at the app's line; the app still gets the exception."""
    timeline = Timeline()
    with _watch(timeline, parse=["pointsapp.agent:parse_plan"]), pytest.raises(ValueError, match="empty answer"):
        app.handle("")  # type: ignore[attr-defined]
    (call,) = timeline.of(PointCalled)
    assert not call.returned and call.error is not None and call.error.type == "ValueError"
    assert str(call.error.location).startswith("pointsapp/agent.py:")


def test_methods_async_methods_and_static_methods_are_wrapped_on_their_class(app: object) -> None:
    """Client.complete returning None is seen as such; async and static methods keep working and are seen."""
    agent = sys.modules["pointsapp.agent"]
    timeline = Timeline()
    with _watch(
        timeline, llm=["pointsapp.agent:Client.complete", "pointsapp.agent:Client.acomplete", "pointsapp.agent:Client.version"]
    ):
        assert app.ask("lose it") is None  # type: ignore[attr-defined]
        assert asyncio.run(agent.Client().acomplete("HeLLo")) == "hello"
        assert agent.Client.version() == "1"
    calls = timeline.of(PointCalled)
    assert [(c.name.partition(":")[2], c.result) for c in calls] == [
        ("Client.complete", None),
        ("Client.acomplete", "hello"),
        ("Client.version", "1"),
    ]
    assert isinstance(agent.Client.__dict__["version"], staticmethod)  # put back as it was


def test_nested_point_calls_know_their_parent(app: object) -> None:
    """A point called inside another point carries the outer call's seq."""
    timeline = Timeline()
    with _watch(timeline, persist=["pointsapp.service:handle"], parse=["pointsapp.agent:parse_plan"]):
        app.handle("x")  # type: ignore[attr-defined]
    outer, inner = timeline.of(PointCalled)
    assert outer.parent is None and inner.parent == outer.seq


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("pointsapp.nowhere:f", "importing pointsapp.nowhere failed"),
        ("pointsapp.agent:Missing.method", "has no Missing"),
        ("pointsapp.agent:Client.missing", "has no missing"),
    ],
)
def test_a_name_that_does_not_resolve_is_a_point_error(app: object, name: str, says: str) -> None:
    """A misspelt point is refused before the flow runs, and nothing stays wrapped."""
    agent = sys.modules["pointsapp.agent"]
    original = agent.parse_plan
    with pytest.raises(PointError, match=says), _watch(Timeline(), parse=["pointsapp.agent:parse_plan", name]):
        pass
    assert agent.parse_plan is original
