"""Running an example application from its folder, as the harness would: its config, its migrations, its flow.

The apps are someone else's code: they are imported from their own folder (``app-path``
in their ``pyproject.toml``), and purged from ``sys.modules`` afterwards, so a patched copy
of an app never meets a module of the original. The LLM APIs are the local stand-in server,
scripted with documents from :mod:`tests.support.content`.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.target import Target, TargetConfig, environment, find_config
from tests.support import content
from tests.support.scenarios import skeleton_of
from tests.support.wire_server import EmbeddingReply, MessageReply, WireScript, WireServer

__all__ = [
    "ANTHROPIC_KEY",
    "BEACON_BATCH_SIZE",
    "KINDS",
    "LONG_TITLE_TASK",
    "OPENAI_KEY",
    "SESSION_ID",
    "USER_ID",
    "App",
    "FlowOutcome",
    "SavedPlan",
    "SavedTask",
    "Scripted",
    "StandIns",
    "heads",
    "imported",
    "load_app",
    "migrate",
    "read_saved",
    "run_flow",
    "script_for",
    "serving",
]

#: Which project each app is asked to plan.
KINDS: Mapping[str, str] = {"atlas": "task_manager", "beacon": "online_shop"}
USER_ID = "user-5d21"
SESSION_ID = "sid-8c7e0f"
#: Keys the SDKs send to the stand-in server (never real; redacted from cassettes all the same).
ANTHROPIC_KEY = "sk-ant-example-7d3c9b1e5f2a4680"
OPENAI_KEY = "sk-proj-example-2b6e8d0a4c1f3e57"
#: Beacon asks for tasks in windows of this many task numbers (its default).
BEACON_BATCH_SIZE = 50
#: The task whose title the ``long-title`` script makes too long for every app's column (in beacon's batch 2).
LONG_TITLE_TASK = 60


@dataclass(frozen=True)
class App:
    """An example app, as its ``[tool.masterplan-harness]`` table describes it."""

    config: TargetConfig

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def root(self) -> Path:
        return self.config.source.parent

    @property
    def package(self) -> str:
        return self.config.flow.partition(".")[0]

    @property
    def database_env(self) -> str:
        return self.config.database_url_env


def load_app(pyproject: Path) -> App:
    """The app whose ``pyproject.toml`` this is."""
    return App(find_config(pyproject))


@contextmanager
def imported(app: App) -> Iterator[None]:
    """The app importable from its own folder; afterwards its modules are forgotten and ``sys.path`` restored."""
    saved_path = list(sys.path)
    sys.path[:0] = [str(path) for path in app.config.app_path]
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in [name for name in sys.modules if name == app.package or name.startswith(app.package + ".")]:
            del sys.modules[name]


def _alembic_config(app: App) -> Any:
    from alembic.config import Config

    if app.config.migrations is None:
        raise ValueError(f"{app.name} names no migrations")
    return Config(str(app.config.migrations))


def migrate(app: App, database_url: str, revision: str = "head") -> None:
    """Run the app's own Alembic migrations against ``database_url``, as its deployment does."""
    from alembic import command

    with imported(app), environment({app.database_env: database_url}):
        command.upgrade(_alembic_config(app), revision)


def heads(app: App) -> tuple[str, ...]:
    """The head revisions of the app's migrations."""
    from alembic.script import ScriptDirectory

    return tuple(sorted(ScriptDirectory.from_config(_alembic_config(app)).get_heads()))


# -- the scripted APIs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scripted:
    """What the stand-in APIs answer one run with, and the documents in those answers."""

    request: str
    discovery: dict[str, Any]
    plan: dict[str, Any]
    script: WireScript


def _with_long_title(plan: dict[str, Any]) -> dict[str, Any]:
    plan = json.loads(json.dumps(plan))
    for task in content.iter_tasks(plan):
        if task["task_number"] == LONG_TITLE_TASK:
            task["title"] = (task["title"] + " — ") * 20
            task["title"] = task["title"][:300]
    return plan


def script_for(app_name: str, script: str = "healthy") -> Scripted:
    """The answers for one run of ``app_name``: ``healthy``, or ``long-title`` (one title too long for its column)."""
    kind = KINDS[app_name]
    discovery = content.discovery_for(kind)
    plan = content.masterplan_for(kind)
    if script == "long-title":
        plan = _with_long_title(plan)
    elif script != "healthy":
        raise ValueError(f"unknown script {script!r}")
    if app_name == "atlas":
        # One call for the discovery, one for the whole plan; answers wrapped as models do.
        replies = [
            MessageReply(content.render_reply(discovery, "fenced")),
            MessageReply(content.render_reply(plan, "prose")),
        ]
        wire = WireScript(anthropic=replies)
    else:
        tasks = list(content.iter_tasks(plan))
        replies = [
            MessageReply(content.render_reply(discovery, "plain")),
            MessageReply(content.render_reply(skeleton_of(plan), "fenced")),
        ]
        for start in range(0, len(tasks), BEACON_BATCH_SIZE):
            batch = {"tasks": tasks[start : start + BEACON_BATCH_SIZE]}
            replies.append(MessageReply(json.dumps(batch, indent=2, ensure_ascii=False)))
        wire = WireScript(anthropic=replies, openai=[EmbeddingReply()])
    return Scripted(content.request_for(kind), discovery, plan, wire)


@dataclass(frozen=True)
class StandIns:
    """The running stand-in servers, and the environment that points the SDKs at them."""

    anthropic: WireServer
    openai: WireServer

    @property
    def environ(self) -> dict[str, str]:
        return {
            "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
            "ANTHROPIC_BASE_URL": self.anthropic.base_url,
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": self.openai.base_url + "/v1",
        }

    @property
    def official(self) -> dict[str, str]:
        """Each stand-in's base URL mapped to the API it stands in for (for cassettes)."""
        return {self.anthropic.base_url: "https://api.anthropic.com", self.openai.base_url: "https://api.openai.com"}

    def unused(self) -> dict[str, int]:
        """Scripted replies nobody asked for, per API."""
        left = {"anthropic": self.anthropic.remaining()["anthropic"], "openai": self.openai.remaining()["openai"]}
        return {api: len(replies) for api, replies in left.items() if replies}


@contextmanager
def serving(script: WireScript) -> Iterator[StandIns]:
    """One stand-in server per API, so each recorded URL maps back to exactly one official host."""
    with ExitStack() as stack:
        anthropic_api = stack.enter_context(WireServer(WireScript(anthropic=list(script.anthropic))))
        openai_api = stack.enter_context(WireServer(WireScript(openai=list(script.openai))))
        yield StandIns(anthropic_api, openai_api)


# -- one run -------------------------------------------------------------------------------------


@dataclass
class FlowOutcome:
    """How one run of an app's flow came back."""

    result: Any = None
    error: BaseException | None = None
    #: Innermost frame of the app's own code in the error's traceback: (path relative to the app, line).
    app_frame: tuple[str, int] | None = None


def _app_frame(app: App, exc: BaseException) -> tuple[str, int] | None:
    root = str(app.root.resolve()) + "/"
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        filename = str(Path(frame.filename).resolve())
        if filename.startswith(root) and frame.lineno is not None:
            found = (filename[len(root) :], frame.lineno)
    return found


def run_flow(
    app: App,
    database_url: str,
    environ: Mapping[str, str | None],
    *,
    request: str,
    user_id: str | None = USER_ID,
    session_id: str | None = SESSION_ID,
) -> FlowOutcome:
    """Call the app's flow once, with its database variable and ``environ`` set, as the harness does."""
    values: dict[str, str | None] = {app.database_env: database_url, **environ}
    outcome = FlowOutcome()
    with imported(app), environment(values):
        try:
            outcome.result = Target(app.config).call(request, user_id, session_id)
        except Exception as exc:  # noqa: BLE001  (whatever the app raised is the outcome)
            outcome.error = exc
            outcome.app_frame = _app_frame(app, exc)
    return outcome


# -- what was saved, read over a connection of our own -------------------------------------------


@dataclass(frozen=True)
class SavedTask:
    title: str
    milestone: str
    #: Task numbers it depends on, rebuilt from however the app stores them.
    depends_on: frozenset[int]


@dataclass(frozen=True)
class SavedPlan:
    """Every discovery and plan row in an app's database, as another connection sees them."""

    #: ``(domain, bounded_contexts)`` of each discovery row.
    discoveries: tuple[tuple[str, Any], ...]
    #: ``(project_name, status, total_tasks)`` of each plan row.
    plans: tuple[tuple[str, str, int], ...]
    phases: int
    milestones: int
    tasks: Mapping[int, SavedTask]


_ATLAS_QUERIES = {
    "discoveries": "SELECT domain, bounded_contexts FROM planning.discovery_documents",
    "plans": "SELECT project_name, status::text, total_tasks FROM planning.masterplans",
    "phases": "SELECT count(*) FROM planning.masterplan_phases",
    "milestones": "SELECT count(*) FROM planning.masterplan_milestones",
    "tasks": (
        "SELECT t.task_id::text, t.task_number, t.name, m.name, t.depends_on_tasks "
        "FROM planning.masterplan_tasks t JOIN planning.masterplan_milestones m USING (milestone_id)"
    ),
}
_BEACON_QUERIES = {
    "discoveries": "SELECT domain, document -> 'bounded_contexts' FROM public.discoveries",
    "plans": "SELECT project_name, status, total_tasks FROM public.plans",
    "phases": "SELECT count(*) FROM public.plan_phases",
    "milestones": "SELECT count(*) FROM public.plan_milestones",
    "tasks": (
        "SELECT NULL, t.task_number, t.title, m.name, t.depends_on "
        "FROM public.plan_tasks t JOIN public.plan_milestones m ON m.id = t.milestone_id"
    ),
}


def read_saved(app_name: str, database_url: str) -> SavedPlan:
    """What the app's tables hold, read with psycopg over a new connection (schema-qualified: no search_path)."""
    import psycopg

    queries = _ATLAS_QUERIES if app_name == "atlas" else _BEACON_QUERIES
    with psycopg.connect(database_url, connect_timeout=5, autocommit=True) as conn:
        discoveries = tuple(conn.execute(queries["discoveries"]).fetchall())
        plans = tuple(conn.execute(queries["plans"]).fetchall())
        phases = conn.execute(queries["phases"]).fetchone()[0]
        milestones = conn.execute(queries["milestones"]).fetchone()[0]
        rows = conn.execute(queries["tasks"]).fetchall()
    number_of_id = {task_id: number for task_id, number, *_ in rows if task_id is not None}
    tasks = {
        number: SavedTask(
            title=title,
            milestone=milestone,
            # atlas keeps task-id strings in JSON; beacon keeps task numbers in an integer array.
            depends_on=frozenset(number_of_id.get(item, -1) if isinstance(item, str) else item for item in depends),
        )
        for _task_id, number, title, milestone, depends in rows
    }
    return SavedPlan(discoveries, plans, phases, milestones, tasks)
