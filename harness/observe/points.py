"""Wrappers around the application's own functions named in ``[tool.masterplan-harness.points]``.

Each call becomes a :class:`~harness.observe.timeline.PointCalled` event: entered, returned
(with the value, for the checks that need it) or raised. A wrapper never changes what the
function does. A module-level function is replaced in its module *and* in every module of the
application that imported it by name (``from agent import parse_plan``), because that is where
the application looks it up; a method is replaced on its class.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import inspect
import sys
import weakref
from collections.abc import Mapping
from typing import Any

from harness.observe.code import AppCode, exception_info
from harness.observe.timeline import PointCalled, Timeline

__all__ = ["PointError", "PointWatch", "resolve_point"]

#: The application's loaded modules per code roots, with the state of ``sys.modules`` they were listed at.
_APP_MODULES: weakref.WeakKeyDictionary[AppCode, tuple[tuple[int, str | None], list[Any]]] = weakref.WeakKeyDictionary()

#: The point call the current code runs inside (for nesting).
_current: contextvars.ContextVar[int | None] = contextvars.ContextVar("harness_point", default=None)


class PointError(ValueError):
    """A name in ``points`` does not resolve to a function; the message says which and why."""


def resolve_point(dotted: str) -> tuple[Any, str, Any]:
    """``module:Qual.name`` → (owner object, attribute name, raw attribute as stored on the owner)."""
    module_name, _, qualname = dotted.partition(":")
    try:
        owner: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise PointError(f"{dotted}: importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    parts = qualname.split(".")
    for part in parts[:-1]:
        try:
            owner = getattr(owner, part)
        except AttributeError:
            raise PointError(f"{dotted}: {module_name} has no {part}") from None
    name = parts[-1]
    # On a class, the attribute as stored (staticmethod/classmethod kept), inherited ones included.
    raw = inspect.getattr_static(owner, name, None) if inspect.isclass(owner) else getattr(owner, name, None)
    if raw is None:
        raise PointError(f"{dotted}: {'.'.join(parts[:-1]) or module_name} has no {name}")
    function = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    if not callable(function):
        raise PointError(f"{dotted} is not a function")
    return owner, name, raw


class PointWatch:
    """Wrap the named functions for the duration of a ``with`` block; calls go to the timeline."""

    def __init__(self, timeline: Timeline, code: AppCode, points: Mapping[str, tuple[str, ...]]) -> None:
        self._timeline = timeline
        self._code = code
        self._points = points
        #: (owner, attribute name, original raw attribute) to put back.
        self._patched: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> PointWatch:
        try:
            for names in self._points.values():
                for dotted in names:
                    resolve_point(dotted)  # imports what the points live in, before the modules are listed
            # The application's modules, listed once per watch: walking every loaded module for each
            # point cost ~7 ms a point (~0.1 s a run, twice per replayed cassette).
            app_modules = self._application_modules()
            for stage, names in self._points.items():
                for dotted in names:
                    self._wrap(stage, dotted, app_modules)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()

    def _restore(self) -> None:
        for owner, name, raw in reversed(self._patched):
            _setattr(owner, name, raw)
        self._patched.clear()

    def _application_modules(self) -> list[Any]:
        """Loaded modules whose file is the application's (where ``from module import function`` copies live).

        Remembered per code roots until a module is imported (or removed): the flow of a replay
        imports nothing new, and listing ~4000 modules cost ~10 ms a run.
        """
        state = (len(sys.modules), next(reversed(sys.modules), None))
        known = _APP_MODULES.get(self._code)
        # Still the same module objects: an app purged from sys.modules and imported again is new code.
        if known is not None and known[0] == state and all(sys.modules.get(m.__name__) is m for m in known[1]):
            return known[1]
        found = []
        for module in list(sys.modules.values()):
            namespace = getattr(module, "__dict__", None)
            if namespace is not None and self._code.owns(getattr(module, "__file__", "") or ""):
                found.append(module)
        _APP_MODULES[self._code] = (state, found)
        return found

    def _wrap(self, stage: str, dotted: str, app_modules: list[Any]) -> None:
        owner, name, raw = resolve_point(dotted)
        if isinstance(raw, staticmethod):
            wrapped: Any = staticmethod(self._wrapper(stage, dotted, raw.__func__))
        elif isinstance(raw, classmethod):
            wrapped = classmethod(self._wrapper(stage, dotted, raw.__func__))
        else:
            wrapped = self._wrapper(stage, dotted, raw)
        self._patched.append((owner, name, raw if not inspect.isclass(owner) or name in vars(owner) else _Absent))
        setattr(owner, name, wrapped)
        if inspect.ismodule(owner):
            # ``from module import function`` elsewhere in the application holds the same object.
            for module in app_modules:
                if module is owner:
                    continue
                for alias, value in list(vars(module).items()):
                    if value is raw:
                        self._patched.append((module, alias, raw))
                        setattr(module, alias, wrapped)

    def _wrapper(self, stage: str, dotted: str, function: Any) -> Any:
        timeline, code = self._timeline, self._code
        defined_at = code.defined_at(function)

        def enter() -> tuple[PointCalled, contextvars.Token]:
            call = timeline.add(PointCalled(stage=stage, name=dotted, defined_at=defined_at, parent=_current.get()))
            return call, _current.set(call.seq)

        def done(call: PointCalled, token: contextvars.Token, result: Any) -> None:
            import time

            _current.reset(token)
            call.returned, call.result, call.ended_at = True, result, time.perf_counter()

        def failed(call: PointCalled, token: contextvars.Token, exc: BaseException) -> None:
            import time

            _current.reset(token)
            call.error, call.ended_at = exception_info(exc, code), time.perf_counter()

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_point(*args: Any, **kwargs: Any) -> Any:
                call, token = enter()
                try:
                    result = await function(*args, **kwargs)
                except BaseException as exc:
                    failed(call, token, exc)
                    raise
                done(call, token, result)
                return result

            return async_point

        @functools.wraps(function)
        def point(*args: Any, **kwargs: Any) -> Any:
            call, token = enter()
            try:
                result = function(*args, **kwargs)
            except BaseException as exc:
                failed(call, token, exc)
                raise
            done(call, token, result)
            return result

        return point


class _AbsentType:
    """Marks an inherited method wrapped on a subclass: restoring means deleting the wrapper."""


_Absent: Any = _AbsentType()


def _setattr(owner: Any, name: str, value: Any) -> None:
    if value is _Absent:
        delattr(owner, name)
    else:
        setattr(owner, name, value)
