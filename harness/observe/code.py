"""Which code is the application's: the one decision behind every ``file:line`` the harness reports.

A frame belongs to the application when its file lies under one of the application's code
roots (the folders of the packages its configuration names) and not under an installed
library's folder. Locations are shown relative to the folder that holds those packages, so
``/srv/app/src/services/discovery_agent.py`` reads ``services/discovery_agent.py`` when the
package root is ``/srv/app/src``.
"""

from __future__ import annotations

import linecache
import sys
import sysconfig
import types
from collections.abc import Iterable
from pathlib import Path

from harness.observe.timeline import CodeLocation, ExceptionInfo
from harness.redaction import redact_text

__all__ = ["AppCode", "exception_info"]

#: Characters of an exception message kept in the timeline.
_MESSAGE_CHARS = 500


def _library_folders() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    folders = {paths.get(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(sorted(str(Path(folder).resolve()) + "/" for folder in folders if folder))


class AppCode:
    """The application's code roots; answers "is this frame the application's?" and "where is it?"."""

    def __init__(self, roots: Iterable[Path], *, display_base: Path | None = None) -> None:
        resolved = [Path(root).resolve() for root in roots]
        #: Folders whose files are the application's code (trailing ``/`` so prefixes are whole folders).
        self.roots: tuple[str, ...] = tuple(sorted({str(root) + "/" for root in resolved}))
        common = display_base or _common_parent(resolved)
        self._base = str(common.resolve()) + "/" if common else ""
        # A root inside site-packages (an installed application) is still the application.
        self._libraries = tuple(lib for lib in _library_folders() if not any(r.startswith(lib) for r in self.roots))
        self._cache: dict[str, bool] = {}

    @classmethod
    def for_modules(cls, module_names: Iterable[str], *, extra: Iterable[Path] = ()) -> AppCode:
        """Code roots from dotted module names: each module's package folder (a module alone: its file's folder)."""
        import importlib.util

        roots: list[Path] = list(extra)
        for name in module_names:
            spec = importlib.util.find_spec(name)
            if spec is None:
                continue
            if spec.submodule_search_locations:
                roots.extend(Path(location) for location in spec.submodule_search_locations)
            elif spec.origin:
                roots.append(Path(spec.origin).parent)
        return cls(roots)

    def owns(self, filename: str) -> bool:
        """``filename`` is one of the application's source files."""
        known = self._cache.get(filename)
        if known is None:
            path = filename if filename.startswith("/") else str(Path(filename).resolve())
            known = any(path.startswith(root) for root in self.roots) and not any(
                path.startswith(lib) for lib in self._libraries
            )
            self._cache[filename] = known
        return known

    def location(self, filename: str, line: int, function: str) -> CodeLocation:
        """A location in the application's code, shown relative to its base folder."""
        path = str(Path(filename).resolve())
        shown = path[len(self._base) :] if self._base and path.startswith(self._base) else path
        code = linecache.getline(filename, line).strip() or None
        return CodeLocation(shown, line, function, code)

    def innermost_in_stack(self, frame: types.FrameType | None = None, *, skip: int = 1) -> CodeLocation | None:
        """The innermost application frame on the current stack (below ``skip`` frames of the caller)."""
        current = frame if frame is not None else sys._getframe(skip)
        while current is not None:
            code = current.f_code
            if self.owns(code.co_filename):
                return self.location(code.co_filename, current.f_lineno, code.co_name)
            current = current.f_back
        return None

    def innermost_in_traceback(self, tb: types.TracebackType | None) -> CodeLocation | None:
        """The innermost application frame an exception passed through (where its code failed)."""
        found: CodeLocation | None = None
        while tb is not None:
            code = tb.tb_frame.f_code
            if self.owns(code.co_filename):
                found = self.location(code.co_filename, tb.tb_lineno, code.co_name)
            tb = tb.tb_next
        return found

    def defined_at(self, function: object) -> CodeLocation | None:
        """Where a function of the application is defined."""
        code = getattr(getattr(function, "__wrapped__", function), "__code__", None)
        if code is None:
            return None
        return self.location(code.co_filename, code.co_firstlineno, code.co_name)


def _common_parent(roots: list[Path]) -> Path | None:
    """The folder the packages live in: the parent of the shallowest root's common path."""
    if not roots:
        return None
    import os

    common = Path(os.path.commonpath([str(root) for root in roots]))
    return common.parent if len(roots) == 1 or common in roots else common


def exception_info(exc: BaseException, code: AppCode | None) -> ExceptionInfo:
    """How an exception is kept in the timeline: type, redacted message, the application's line."""
    location = code.innermost_in_traceback(exc.__traceback__) if code is not None else None
    message = redact_text(str(exc))
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 1] + "…"
    return ExceptionInfo(type(exc).__name__, message, location, exc)
