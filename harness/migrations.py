"""An application's Alembic migrations, read from its ``alembic.ini``: revisions, heads, versions, a trial run.

Paths in the ini (``script_location``, ``version_locations``, ``prepend_sys_path``) are
taken relative to the ini's folder, as a user reading the file would — Alembic itself
takes them relative to the working directory — and ``%(here)s`` means that folder too.

The database's revision is read from Alembic's version table wherever it is: a table
whose only column is ``version_num``, in any schema (``version_table`` and
``version_table_schema`` may be set in the app's ``env.py``, which is not run for this).

:func:`apply_migrations` runs the app's own ``env.py`` in a child interpreter, so that
settings the app cached at import time cannot point it at any database but the one given,
and refuses (without migrating) when ``env.py`` connects anywhere else anyway.

Exceptions::

    MigrationsError     the scripts cannot be loaded: the ini, script_location, a revision file
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.redaction import redact_text

__all__ = [
    "MigrationRun",
    "MigrationScripts",
    "MigrationsError",
    "Revision",
    "VersionTable",
    "app_config",
    "apply_migrations",
    "find_version_tables",
    "load_migrations",
    "scripts_fingerprint",
]

#: Characters of an error message kept.
_MESSAGE_CHARS = 500


class MigrationsError(ValueError):
    """The app's migrations cannot be loaded; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Revision:
    """One migration script."""

    id: str
    #: The revisions it follows (more than one for a merge; none for a base).
    down_revisions: tuple[str, ...]
    #: Its file, relative to the ini's folder.
    file: str
    #: The first line of its docstring.
    message: str = ""


@dataclass(frozen=True)
class MigrationScripts:
    """The app's migration scripts, loaded from its ``alembic.ini``."""

    ini: Path
    script_location: Path
    #: Every revision, newest first (Alembic's walk order).
    revisions: tuple[Revision, ...]
    #: The head revision ids, sorted.
    heads: tuple[str, ...]

    def revision(self, revision_id: str) -> Revision | None:
        """The revision with this id, ``None`` if the scripts have none."""
        return next((r for r in self.revisions if r.id == revision_id), None)

    def knows(self, revision_id: str) -> bool:
        return self.revision(revision_id) is not None

    def ancestry(self, revision_ids: Iterable[str]) -> frozenset[str]:
        """The given revisions and every revision they follow, directly or not."""
        by_id = {r.id: r for r in self.revisions}
        seen: set[str] = set()
        todo = [rid for rid in revision_ids if rid in by_id]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            todo.extend(down for down in by_id[current].down_revisions if down in by_id)
        return frozenset(seen)

    def pending(self, applied: Iterable[str]) -> tuple[str, ...]:
        """Revisions the heads need that ``applied`` (a database's revisions) has not reached, oldest last."""
        missing = self.ancestry(self.heads) - self.ancestry(applied)
        return tuple(r.id for r in self.revisions if r.id in missing)


@dataclass(frozen=True)
class VersionTable:
    """An Alembic version table found in a database, with the revisions it holds."""

    schema: str
    name: str
    revisions: tuple[str, ...]

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class MigrationRun:
    """What became of one trial run of the app's migrations."""

    #: Every migration up to the target applied and committed.
    succeeded: bool
    #: The revision whose migration failed (``None`` when none, or when it failed outside one).
    failed_revision: str | None = None
    #: That revision's file, relative to the ini's folder.
    failed_file: str | None = None
    #: The error, redacted, first line(s) only.
    error: str | None = None
    error_type: str | None = None
    #: Why the run was refused before it migrated anything (``env.py`` connected elsewhere).
    refused: str | None = None


# --------------------------------------------------------------------------- the ini


def _absolute(value: str, base: Path) -> str:
    path = Path(value)
    return str(path if path.is_absolute() else (base / path).resolve())


def app_config(ini: Path, database_url: str | None = None) -> Any:
    """An Alembic ``Config`` of the app's ini with its paths made absolute (and ``sqlalchemy.url`` set, if given)."""
    from alembic.config import Config

    ini = Path(ini).resolve()
    if not ini.is_file():
        raise MigrationsError(f"{ini}: no such file")
    base = ini.parent
    config = Config(str(ini))
    try:
        location = config.get_main_option("script_location")
        version_locations = config.get_version_locations_list()
        prepend = config.get_prepend_sys_paths_list()
    except Exception as exc:  # configparser's errors: no [alembic] section, bad syntax, bad interpolation
        raise MigrationsError(f"{ini}: cannot be read: {type(exc).__name__}: {exc}") from None
    if not location:
        raise MigrationsError(f"{ini}: [alembic] has no script_location")
    # "package:folder" names a package resource, which Alembic resolves itself; anything else is a path.
    if ":" not in location or Path(location).is_absolute():
        config.set_main_option("script_location", _absolute(location, base).replace("%", "%%"))
    if version_locations or prepend:
        config.set_main_option("path_separator", "os")
    if version_locations:
        joined = os.pathsep.join(_absolute(item, base) for item in version_locations)
        config.set_main_option("version_locations", joined.replace("%", "%%"))
    if prepend:
        joined = os.pathsep.join(_absolute(item, base) for item in prepend)
        config.set_main_option("prepend_sys_path", joined.replace("%", "%%"))
    if database_url is not None:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _script_directory(config: Any) -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config)


def _relative(path: str | os.PathLike[str], base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive
        return str(path)


def load_migrations(ini: Path) -> MigrationScripts:
    """Load the app's revisions and heads from its ``alembic.ini``; :class:`MigrationsError` if they cannot be."""
    ini = Path(ini).resolve()
    config = app_config(ini)
    saved_path = list(sys.path)
    try:
        script = _script_directory(config)
        scripts = list(script.walk_revisions())
        heads = tuple(sorted(script.get_heads()))
    except Exception as exc:  # alembic's CommandError / RevisionError, or a revision file that fails to import
        where = _revision_file_in(exc, ini.parent)
        raise MigrationsError(
            f"{ini}: the migrations cannot be loaded{f' ({where})' if where else ''}: "
            f"{type(exc).__name__}: {redact_text(str(exc))[:_MESSAGE_CHARS]}"
        ) from None
    finally:
        sys.path[:] = saved_path  # alembic prepends prepend_sys_path for good; loading is done
    revisions = tuple(
        Revision(
            id=s.revision,
            down_revisions=_as_tuple(s.down_revision),
            file=_relative(s.path, ini.parent),
            message=(s.doc or "").strip().splitlines()[0] if (s.doc or "").strip() else "",
        )
        for s in scripts
    )
    return MigrationScripts(
        ini=ini,
        script_location=Path(script.dir),
        revisions=revisions,
        heads=heads,
    )


def scripts_fingerprint(ini: Path) -> tuple[str, int, int]:
    """What changes when the app's migrations change: the ini, and its newest file under the script locations.

    (resolved ini, its ``st_mtime_ns``, the newest ``st_mtime_ns`` of a ``.py`` file or a folder under
    ``script_location`` and ``version_locations``); an ini that cannot be read gives zeros, so its loading
    error is what callers see.
    Cheap (the ini is parsed, no script is imported): a cache keyed by it is dropped when a revision is edited.
    """
    ini = Path(ini).resolve()
    try:
        config = app_config(ini)
        folders = [config.get_main_option("script_location") or "", *(config.get_version_locations_list() or [])]
        ini_changed = ini.stat().st_mtime_ns
    except Exception:  # noqa: BLE001 - load_migrations reports it properly
        return str(ini), 0, 0
    newest = 0
    for folder in folders:
        if folder and ":" in folder and not Path(folder).is_absolute():
            continue  # a package resource: alembic resolves it, and a package does not change under a run
        for directory, _dirs, files in os.walk(folder):
            # A folder's own time changes when a file is added, removed or renamed in it.
            for path in (directory, *(os.path.join(directory, name) for name in files if name.endswith(".py"))):
                try:
                    newest = max(newest, os.stat(path).st_mtime_ns)
                except OSError:
                    pass
    return str(ini), ini_changed, newest


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _revision_file_in(exc: BaseException, base: Path) -> str | None:
    """The script file an exception was raised in (a syntax error names it; else the deepest frame under ``base``)."""
    filename = getattr(exc, "filename", None)
    if isinstance(filename, str) and filename.endswith(".py"):
        return _relative(filename, base)
    tb = exc.__traceback__
    found = None
    base_text = str(base) + os.sep
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.startswith(base_text):
            found = f"{_relative(name, base)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


# --------------------------------------------------------------------------- the database's revisions

_VERSION_TABLES = """
SELECT n.nspname, c.relname, has_table_privilege(c.oid, 'SELECT') AS readable
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  AND has_schema_privilege(n.oid, 'USAGE')
  AND ARRAY(
      SELECT a.attname::text FROM pg_attribute a
      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  ) = ARRAY['version_num']
ORDER BY array_position(current_schemas(false), n.nspname::text) NULLS LAST, n.nspname, c.relname
"""


def find_version_tables(connection: Any) -> tuple[VersionTable, ...]:
    """Every Alembic version table the connected role can read, those on its ``search_path`` first."""
    from sqlalchemy import text

    quote = connection.dialect.identifier_preparer.quote
    tables = []
    for schema, name, readable in connection.execute(text(_VERSION_TABLES)).all():
        if not readable:
            continue
        rows = connection.execute(text(f"SELECT version_num FROM {quote(schema)}.{quote(name)}")).scalars()
        tables.append(VersionTable(schema, name, tuple(sorted(rows))))
    return tuple(tables)


# --------------------------------------------------------------------------- a trial run


def _set_search_path(database_url: str, search_path: str) -> None:
    """Make ``search_path`` the default of the database at ``database_url``, as it is where the app runs."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from harness.config import TIMEOUTS, sqlalchemy_url

    engine = create_engine(
        sqlalchemy_url(database_url),
        poolclass=NullPool,
        connect_args={
            "connect_timeout": max(2, int(TIMEOUTS.db_connect)),
            "options": f"-c statement_timeout={int(TIMEOUTS.db_statement * 1000)}",
        },
    )
    try:
        with engine.begin() as connection:
            name = make_url(database_url).database or ""
            quoted = connection.dialect.identifier_preparer.quote(name)
            connection.execute(text("SELECT set_config('search_path', :path, true)"), {"path": search_path})
            connection.execute(text(f"ALTER DATABASE {quoted} SET search_path FROM CURRENT"))
    finally:
        engine.dispose()


def apply_migrations(
    ini: Path,
    database_url: str,
    *,
    revision: str = "heads",
    database_url_env: str = "DATABASE_URL",
    search_path: str | None = None,
    timeout: float | None = None,
    extra_environ: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
) -> MigrationRun:
    """Run the app's migrations up to ``revision`` against ``database_url`` (a disposable database).

    The app's ``env.py`` runs in a child interpreter with ``database_url_env`` and the ini's
    ``sqlalchemy.url`` both set to ``database_url``; with ``search_path``, that becomes the
    database's default first (the setting the app's own database has). A run that does not
    finish within ``timeout`` seconds (default ``TIMEOUTS.migrations``) is killed and reported
    as failed; so is one whose ``stop`` is set meanwhile (a run begun ahead that is no longer wanted).
    """
    from harness.config import TIMEOUTS

    timeout = TIMEOUTS.migrations if timeout is None else timeout
    ini = Path(ini).resolve()
    if search_path is not None:
        _set_search_path(database_url, search_path)
    environ = dict(os.environ)
    environ.update(extra_environ or {})
    environ[database_url_env] = database_url
    environ["PYTHONPATH"] = os.pathsep.join(entry for entry in sys.path if entry)
    request = {"ini": str(ini), "url": database_url, "revision": revision}
    with tempfile.TemporaryDirectory(prefix="harness-migrate-") as folder:
        result_file = Path(folder) / "result.json"
        child = subprocess.Popen(
            [sys.executable, "-m", "harness.migrations", str(result_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ini.parent,
            env=environ,
        )
        ended = _child_ended(child, json.dumps(request), timeout, stop)
        if ended is None:
            stopped = stop is not None and stop.is_set()
            return MigrationRun(
                succeeded=False,
                error="the run was stopped" if stopped else f"the migrations did not finish within {timeout:g} s",
                error_type="Stopped" if stopped else "TimeoutExpired",
            )
        if not result_file.exists():
            tail = " | ".join(ended.strip().splitlines()[-3:])
            return MigrationRun(
                succeeded=False,
                error=redact_text(f"the migration run exited with status {child.returncode}: {tail}")[:_MESSAGE_CHARS],
                error_type="ChildProcessError",
            )
        outcome = json.loads(result_file.read_text())
    return MigrationRun(**outcome)


def _child_ended(
    child: subprocess.Popen[str], request: str, timeout: float, stop: threading.Event | None
) -> str | None:
    """The child's stderr once it has exited; ``None`` when it was killed (``timeout`` passed, or ``stop`` set)."""
    deadline = time.monotonic() + timeout
    given: str | None = request
    try:
        while True:
            left = deadline - time.monotonic()
            try:
                # A short wait at a time only when someone may ask it to stop; otherwise the whole bound at once.
                _stdout, stderr = child.communicate(given, timeout=max(0.0, min(left, 0.1) if stop else left))
                return stderr
            except subprocess.TimeoutExpired:
                given = None  # sent with the first call; a later call may not send it again
                if (stop is not None and stop.is_set()) or time.monotonic() >= deadline:
                    return None
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


# --------------------------------------------------------------------------- the child's side


class _WrongDatabase(RuntimeError):
    """The app's env.py connected to a database other than the disposable one."""


def _guard_connections(expected_database: str, tripped: list[str]) -> None:
    """Refuse, before any statement runs, every connection the app makes to another database."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT current_database()")
            name = cursor.fetchone()[0]
        finally:
            cursor.close()
        dbapi_connection.rollback()
        if name != expected_database:
            tripped.append(name)
            raise _WrongDatabase(f"env.py connected to database {name!r}, not the disposable {expected_database!r}")

    event.listen(Pool, "connect", on_connect)


def _failed_revision(exc: BaseException, paths: Mapping[str, str]) -> str | None:
    tb = exc.__traceback__
    found = None
    while tb is not None:
        revision = paths.get(os.path.realpath(tb.tb_frame.f_code.co_filename))
        if revision is not None:
            found = revision
        tb = tb.tb_next
    return found


def _first_lines(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if isinstance(orig, BaseException) else exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()][:2]
    return redact_text(" ".join(lines) or type(exc).__name__)[:_MESSAGE_CHARS]


def _child(result_file: Path, request: Mapping[str, Any]) -> None:
    from alembic import command
    from sqlalchemy.engine import make_url

    ini = Path(request["ini"])
    tripped: list[str] = []
    outcome: dict[str, Any]
    try:
        config = app_config(ini, request["url"])
        script = _script_directory(config)
        paths = {os.path.realpath(s.path): s.revision for s in script.walk_revisions()}
        files = {s.revision: _relative(s.path, ini.parent) for s in script.walk_revisions()}
    except Exception as exc:
        outcome = {"succeeded": False, "error": _first_lines(exc), "error_type": type(exc).__name__}
    else:
        _guard_connections(make_url(request["url"]).database or "", tripped)
        try:
            command.upgrade(config, request["revision"])
            outcome = {"succeeded": True}
        except BaseException as exc:  # noqa: BLE001 - whatever the app's migrations raise is the finding
            if tripped:
                outcome = {
                    "succeeded": False,
                    "refused": f"the app's env.py connected to another database ({tripped[0]})",
                }
            else:
                failed = _failed_revision(exc, paths)
                outcome = {
                    "succeeded": False,
                    "failed_revision": failed,
                    "failed_file": files.get(failed) if failed else None,
                    "error": _first_lines(exc),
                    "error_type": type(getattr(exc, "orig", None) or exc).__name__,
                }
    result_file.write_text(json.dumps(outcome))


def main(argv: Sequence[str] | None = None) -> int:
    """Child entry point: ``python -m harness.migrations RESULT_FILE`` with the request as JSON on stdin."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m harness.migrations RESULT_FILE  (request as JSON on stdin)", file=sys.stderr)
        return 2
    _child(Path(args[0]), json.loads(sys.stdin.read()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
