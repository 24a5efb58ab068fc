"""Targets: which application the harness runs and judges, read from ``[tool.masterplan-harness]``.

::

    [tool.masterplan-harness]
    flow = "myapp.harness_entry:run"     # required: (request, user_id, session_id), sync or async
    metadata = "myapp.db:Base"           # a declarative base or a MetaData: what the db stage judges
    models = ["myapp.models"]            # modules imported so the metadata is complete
    migrations = "alembic.ini"           # the app's Alembic config (optional)
    database-url-env = "DATABASE_URL"    # where the app reads its database URL (the default)
    app-path = "src"                     # prepended to sys.path (a string or a list)
    cassette = "cassettes/healthy.yaml"  # recorded answers `diagnose --llm replay` uses (optional)
    loop-stall-threshold = 1.0           # seconds the event loop may stand still before LLM017 (default 1)

    [tool.masterplan-harness.points]     # optional: the app's functions per stage
    llm = ["myapp.llm:Client.complete"]
    parse = ["myapp.agent:parse_plan"]
    persist = ["myapp.agent:save_plan"]
    load = ["myapp.agent:get_plan"]
    events = ["myapp.ws:Manager.emit"]

Where the table comes from (first wins): ``--config FILE``; the nearest ``pyproject.toml``
holding the table, from the working directory upward; else the reference flow, whose table
ships in ``harness/flow/masterplan-harness.toml`` and is read by this same code. Paths in a
table (``migrations``, ``app-path``, ``cassette``) are relative to the file that holds it.

:class:`TargetError` is bad configuration: the CLI shows it as one line and exits 2.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import os
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from harness.observe.code import AppCode

__all__ = [
    "CONFIG_TABLE",
    "POINT_STAGES",
    "REFERENCE_CONFIG",
    "Target",
    "TargetConfig",
    "TargetError",
    "find_config",
    "load_target",
]

#: The table name in ``pyproject.toml``.
CONFIG_TABLE = "masterplan-harness"
#: The stages a function in ``points`` can be named for.
POINT_STAGES = ("llm", "parse", "persist", "load", "events")
#: The packaged table of the reference flow.
REFERENCE_CONFIG = "masterplan-harness.toml"

_KNOWN_KEYS = {
    "flow",
    "metadata",
    "models",
    "migrations",
    "database-url-env",
    "app-path",
    "cassette",
    "code",
    "points",
    "loop-stall-threshold",
}


class TargetError(ValueError):
    """The target's configuration cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class TargetConfig:
    """The ``[tool.masterplan-harness]`` table of one application, paths made absolute."""

    #: The file the table was read from.
    source: Path
    #: ``module:attribute`` of the flow callable.
    flow: str
    metadata: str | None = None
    models: tuple[str, ...] = ()
    #: The app's ``alembic.ini``.
    migrations: Path | None = None
    database_url_env: str = "DATABASE_URL"
    app_path: tuple[Path, ...] = ()
    #: Recorded answers ``diagnose --llm replay`` uses when no ``--cassette`` is given.
    cassette: Path | None = None
    #: Packages whose frames are the application's code (default: the packages the table names).
    code: tuple[str, ...] = ()
    #: Stage → ``module:Qualname`` of the app's functions for that stage.
    points: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Seconds the flow's event loop may stand still before it is a finding (LLM017).
    loop_stall_threshold: float = 1.0
    #: The project's name (``[project] name``), or the reference flow's.
    name: str = ""
    #: This is the bundled reference flow.
    reference: bool = False

    def describe(self) -> str:
        return f"{self.name or self.flow} ({self.source})"


def _strings(value: Any, key: str, source: Path) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise TargetError(f"{source}: [tool.{CONFIG_TABLE}] {key} must be a string or a list of strings")


def _dotted(value: Any, key: str, source: Path, *, attribute: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TargetError(f"{source}: [tool.{CONFIG_TABLE}] {key} must be a non-empty string")
    value = value.strip()
    if attribute and ":" not in value:
        raise TargetError(f"{source}: [tool.{CONFIG_TABLE}] {key} = {value!r} must be 'module:attribute'")
    return value


def parse_config(table: Mapping[str, Any], source: Path, *, name: str = "", reference: bool = False) -> TargetConfig:
    """A :class:`TargetConfig` from a parsed table; ``TargetError`` naming the key for anything wrong."""
    where = f"{source}: [tool.{CONFIG_TABLE}]"
    unknown = sorted(set(table) - _KNOWN_KEYS)
    if unknown:
        raise TargetError(f"{where} has unknown key(s): {', '.join(unknown)} (known: {', '.join(sorted(_KNOWN_KEYS))})")
    if "flow" not in table:
        raise TargetError(f"{where} needs flow = \"module:callable\" (the app's /masterplan run)")
    base = source.parent

    def path(key: str) -> Path | None:
        raw = table.get(key)
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw.strip():
            raise TargetError(f"{where} {key} must be a path")
        resolved = (base / raw).resolve()
        if not resolved.exists():
            raise TargetError(f"{where} {key} = {raw!r}: {resolved} does not exist")
        return resolved

    points_table = table.get("points", {})
    if not isinstance(points_table, Mapping):
        raise TargetError(f"{where} points must be a table ([tool.{CONFIG_TABLE}.points])")
    stray = sorted(set(points_table) - set(POINT_STAGES))
    if stray:
        raise TargetError(f"{where}.points: unknown stage(s) {', '.join(stray)}; stages are {', '.join(POINT_STAGES)}")
    points = {
        stage: tuple(_dotted(item, f"points.{stage}", source, attribute=True) for item in _strings(names, stage, source))
        for stage, names in points_table.items()
    }
    env_name = table.get("database-url-env", "DATABASE_URL")
    if not isinstance(env_name, str) or not env_name.replace("_", "").isalnum():
        raise TargetError(f"{where} database-url-env must be an environment variable name")
    threshold = table.get("loop-stall-threshold", 1.0)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.05 <= threshold <= 3600:
        raise TargetError(f"{where} loop-stall-threshold must be a number of seconds between 0.05 and 3600")
    app_paths = tuple((base / item).resolve() for item in _strings(table.get("app-path", []), "app-path", source))
    for app_path in app_paths:
        if not app_path.is_dir():
            raise TargetError(f"{where} app-path: {app_path} is not a folder")
    return TargetConfig(
        source=source,
        flow=_dotted(table["flow"], "flow", source, attribute=True),
        metadata=_dotted(table["metadata"], "metadata", source, attribute=True) if "metadata" in table else None,
        models=_strings(table.get("models", []), "models", source),
        migrations=path("migrations"),
        database_url_env=env_name,
        app_path=app_paths,
        cassette=path("cassette"),
        code=_strings(table.get("code", []), "code", source),
        points=points,
        loop_stall_threshold=float(threshold),
        name=name,
        reference=reference,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise TargetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: cannot be read ({type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{path}: not valid TOML ({exc})") from None


def _table_of(document: Mapping[str, Any]) -> Mapping[str, Any] | None:
    table = document.get("tool", {}).get(CONFIG_TABLE)
    return table if isinstance(table, Mapping) else None


def reference_config() -> TargetConfig:
    """The bundled reference flow's table."""
    source = Path(str(resources.files("harness.flow") / REFERENCE_CONFIG))
    table = _table_of(_read_toml(source))
    if table is None:  # pragma: no cover - the packaged file is ours
        raise TargetError(f"{source}: has no [tool.{CONFIG_TABLE}] table")
    return parse_config(table, source, name="reference flow (harness.flow)", reference=True)


def find_config(config_file: Path | None = None, *, start: Path | None = None) -> TargetConfig:
    """The target's configuration: ``config_file``, else the nearest ``pyproject.toml`` with the table, else ours."""
    if config_file is not None:
        path = Path(config_file).resolve()
        document = _read_toml(path)
        table = _table_of(document)
        if table is None:
            raise TargetError(f"{path}: has no [tool.{CONFIG_TABLE}] table")
        return parse_config(table, path, name=str(document.get("project", {}).get("name", "")))
    folder = (start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file():
            document = _read_toml(pyproject)
            table = _table_of(document)
            if table is not None:
                return parse_config(table, pyproject, name=str(document.get("project", {}).get("name", "")))
    return reference_config()


def _import_attribute(dotted: str, key: str, source: Path) -> Any:
    module_name, _, attribute = dotted.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TargetError(f"{source}: {key} = {dotted!r}: importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise TargetError(f"{source}: {key} = {dotted!r}: {module_name} has no {attribute}") from None
    return value


@dataclass
class Target:
    """A loaded target: its flow callable, its metadata, its code roots."""

    config: TargetConfig

    @classmethod
    def with_flow(cls, flow: Callable[..., Any], base: TargetConfig | None = None) -> Target:
        """``base`` (default: the reference flow's table) with ``flow`` called instead of the one it names.

        For shims written in code rather than named in a table — a test's broken variant of a
        flow. The shim's own file counts as the application's code, so its lines are reported.
        """
        from pathlib import Path

        config = base or reference_config()
        module = inspect.getmodule(flow)
        name = f"{getattr(module, '__name__', 'shim')}:{getattr(flow, '__qualname__', 'flow')}"
        target = cls(dataclasses.replace(config, flow=name))
        target.__dict__["flow"] = flow
        source = inspect.getsourcefile(flow)
        if source:
            roots = [Path(root) for root in target.code.roots] + [Path(source).parent]
            target.__dict__["code"] = AppCode(roots, display_base=Path(source).parent.parent)
        return target

    @cached_property
    def flow(self) -> Callable[..., Any]:
        """The flow callable (imports the app on first use)."""
        self._prepare_imports()
        flow = _import_attribute(self.config.flow, "flow", self.config.source)
        if not callable(flow):
            raise TargetError(f"{self.config.source}: flow = {self.config.flow!r} is not callable")
        return flow

    @cached_property
    def metadata(self) -> Any:
        """The app's ``MetaData`` (``None`` when the table names none)."""
        from sqlalchemy import MetaData

        self._prepare_imports()
        for module in self.config.models:
            try:
                importlib.import_module(module)
            except Exception as exc:
                raise TargetError(
                    f"{self.config.source}: models: importing {module} failed: {type(exc).__name__}: {exc}"
                ) from None
        if self.config.metadata is None:
            return None
        value = _import_attribute(self.config.metadata, "metadata", self.config.source)
        metadata = value if isinstance(value, MetaData) else getattr(value, "metadata", None)
        if not isinstance(metadata, MetaData):
            raise TargetError(
                f"{self.config.source}: metadata = {self.config.metadata!r} is neither a MetaData nor a declarative base"
            )
        return metadata

    @cached_property
    def code(self) -> AppCode:
        """The application's code roots, shown relative to the folder of its configuration."""
        self._prepare_imports()
        names = self.config.code or tuple(
            dict.fromkeys(
                dotted.partition(":")[0].split(".")[0]
                for dotted in (
                    self.config.flow,
                    *(self.config.metadata or "",),
                    *self.config.models,
                    *(name for names in self.config.points.values() for name in names),
                )
                if dotted
            )
        )
        code = AppCode.for_modules(names)
        display = self.config.source.parent
        if self.config.reference:
            display = Path(str(resources.files("harness"))).parent
        return AppCode([Path(root) for root in code.roots], display_base=display)

    def check_points(self) -> None:
        """Every function named in ``points`` resolves; ``TargetError`` naming the first that does not."""
        from harness.observe.points import PointError, resolve_point

        self._prepare_imports()
        for stage, names in self.config.points.items():
            for name in names:
                try:
                    resolve_point(name)
                except PointError as exc:
                    raise TargetError(f"{self.config.source}: points.{stage}: {exc}") from None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.flow)

    def _prepare_imports(self) -> None:
        for path in reversed(self.config.app_path):
            if str(path) not in sys.path:
                sys.path.insert(0, str(path))

    @property
    def builds_schema_apart(self) -> bool:
        """Whether :meth:`build_schema` does its work in a child process (the app's migrations do).

        Such a build can overlap this process's own work (importing the application and its SDKs);
        one from the metadata imports the models here and runs in this process.
        """
        return self.config.migrations is not None

    def build_schema(self, database_url: str, *, revision: str = "heads") -> None:
        """Give an empty database the application's schema: its own migrations, else its metadata's tables.

        ``TargetError`` when the migrations fail (naming the revision and the error) or there is
        nothing to build from.
        """
        self._prepare_imports()  # the migrations' child imports the app from the same roots
        if self.builds_schema_apart:
            from harness.config import plain_url
            from harness.migrations import apply_migrations

            run = apply_migrations(
                self.config.migrations,
                plain_url(database_url),
                revision=revision,
                database_url_env=self.config.database_url_env,
            )
            if not run.succeeded:
                where = f" at revision {run.revision}" if getattr(run, "revision", None) else ""
                raise TargetError(f"{self.config.migrations}: the migrations failed{where}: {run.error}")
            return
        if self.metadata is None:
            raise TargetError(f"{self.config.source}: names neither migrations nor metadata to build a schema from")
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        from harness.config import sqlalchemy_url

        engine = create_engine(sqlalchemy_url(database_url), poolclass=NullPool)
        try:
            self.metadata.create_all(engine)
        finally:
            engine.dispose()

    def call(self, request: str, user_id: str | None, session_id: str | None) -> Any:
        """One run of the flow; an async flow runs to completion in a new event loop."""
        result = self.flow(request, user_id, session_id)
        if inspect.isawaitable(result):
            return asyncio.run(_awaited(result))
        return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def load_target(config_file: Path | None = None, *, start: Path | None = None) -> Target:
    """The target for this working directory (or ``config_file``); the app is imported lazily."""
    return Target(find_config(config_file, start=start))


@contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for ``None``, remove) environment variables for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
