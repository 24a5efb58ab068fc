"""Seeded bugs: realistic small mistakes in the example applications, and what the harness must say.

Each bug is one exact text replacement in one file of an app. :func:`apply_bug` copies the
app into a folder and applies it there, failing loudly when the old text is not found
exactly once, so a bug never silently stops applying after the app changes.

Some bugs only show when the database refuses a write; they name the ``script`` (the
scripted LLM answers, see :mod:`tests.examples.runs`) that makes it refuse one.
"""

from __future__ import annotations

import enum
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from probes.core import Stage

__all__ = ["APPS_DIR", "BUGS", "Bug", "BugError", "Finding", "apply_bug", "apply_patch", "copy_app"]

#: The folder holding the example applications.
APPS_DIR = Path(__file__).resolve().parent


class Finding(str, enum.Enum):
    """The kind of finding the harness must report for a bug."""

    #: The app raised an exception of its own before an LLM call it was about to make.
    EXCEPTION_BEFORE_CALL = "exception-before-call"
    #: A good answer arrived, and the app's own LLM wrapper returned None instead of it.
    ANSWER_LOST = "answer-lost"
    #: A column the models declare does not exist in the migrated database.
    MISSING_COLUMN = "missing-column"
    #: The migrations have more than one head: `alembic upgrade head` refuses to run.
    MULTIPLE_HEADS = "multiple-heads"
    #: A write failed, was rolled back, and the exception never reached the flow, which went on.
    EXCEPTION_SWALLOWED = "exception-swallowed"
    #: One unit of work committed more than once.
    DOUBLE_COMMIT = "double-commit"
    #: Rows were sent to the database and the unit ended without committing them.
    NEVER_COMMITTED = "never-committed"
    #: An object returned by a load was expired and detached: reading it raised.
    DETACHED_OBJECT = "detached-object"


@dataclass(frozen=True)
class Bug:
    """One seeded mistake: where it goes, and what the harness must report for it."""

    name: str
    #: ``atlas`` or ``beacon``: a folder under :data:`APPS_DIR`.
    app: str
    #: Path of the patched file, relative to the app's folder.
    file: str
    old: str
    new: str
    stage: Stage
    finding: Finding
    #: One sentence: what the harness must tell the user.
    says: str
    #: The check the harness reports for it (the first failure, or for a warning the warning).
    check: str | None = None
    #: The check it reports when the app names no ``points`` (where that differs).
    check_without_points: str | None = None
    #: The exception type the flow raises (``None``: the flow returns, or is never run).
    raises: str | None = None
    #: The innermost line of the app's code the exception passed through: (file, text on that line).
    where: tuple[str, str] | None = None
    #: The scripted LLM answers that make the bug show (``healthy``, or ``long-title``: one task title
    #: is longer than its column, so the database refuses that write).
    script: str = "healthy"


class BugError(Exception):
    """A bug cannot be applied: the message names the bug, the file and what went wrong."""


_ATLAS_FIRST_MIGRATION = "migrations/versions/20251104_0001_create_planning_schema_and_tables.py"
_ATLAS_THIRD_MIGRATION = "migrations/versions/20251119_0003_unique_task_numbers_per_plan.py"
_ATLAS_DISCOVERY = "src/atlas/services/discovery_agent.py"
_ATLAS_GENERATOR = "src/atlas/services/masterplan_generator.py"

_BUG_LIST = (
    Bug(
        name="atlas-llm-wrapper-returns-none",
        app="atlas",
        file="src/atlas/llm.py",
        old="            message.stop_reason,\n        )\n        return result\n",
        new="            message.stop_reason,\n        )\n",
        check="LLM102",
        check_without_points="PARSE101",
        stage=Stage.LLM,
        finding=Finding.ANSWER_LOST,
        says="ClaudeClient.complete got a complete end_turn answer and returned None; the caller failed on it.",
        raises="TypeError",
        where=(_ATLAS_DISCOVERY, 'discovery_data = self._parse_discovery(response["content"])'),
    ),
    Bug(
        name="atlas-logging-keyword-arguments",
        app="atlas",
        file=_ATLAS_DISCOVERY,
        old='logger.info("Starting discovery for session %s", session_id)',
        new='logger.info("Starting discovery", session_id=session_id, user_id=user_id)',
        check="LLM101",
        stage=Stage.LLM,
        finding=Finding.EXCEPTION_BEFORE_CALL,
        says=(
            "The discovery call was never made: a stdlib logging call with structlog-style keyword "
            "arguments raised TypeError just before it."
        ),
        raises="TypeError",
        where=(_ATLAS_DISCOVERY, 'logger.info("Starting discovery", session_id=session_id'),
    ),
    Bug(
        name="atlas-migration-missing-column",
        app="atlas",
        file=_ATLAS_FIRST_MIGRATION,
        old='        sa.Column("estimated_duration_minutes", sa.Integer(), nullable=True),\n',
        new="",
        check="DB006",
        stage=Stage.DB,
        finding=Finding.MISSING_COLUMN,
        says="planning.masterplans has no column estimated_duration_minutes, which MasterPlan declares.",
        raises="ProgrammingError",
        where=(_ATLAS_GENERATOR, "db.flush()  # get masterplan_id without committing"),
    ),
    Bug(
        name="atlas-two-heads",
        app="atlas",
        file=_ATLAS_THIRD_MIGRATION,
        old='down_revision = "20251112_0002_record_llm_usage_and_generation_cost"',
        new='down_revision = "20251104_0001_create_planning_schema_and_tables"',
        check="DB011",
        stage=Stage.DB,
        finding=Finding.MULTIPLE_HEADS,
        says=(
            "The migrations have two heads (20251112_0002_… and 20251119_0003_… both revise 20251104_0001_…): "
            "`alembic upgrade head` fails until they are merged."
        ),
    ),
    Bug(
        name="atlas-swallowing-session-scope",
        app="atlas",
        file="src/atlas/db.py",
        old="        db.rollback()\n        raise\n",
        new="        db.rollback()\n",
        check="PERSIST011",
        stage=Stage.PERSIST,
        finding=Finding.EXCEPTION_SWALLOWED,
        says=(
            "The masterplan save was rolled back on a DataError that get_db_context() logged and swallowed; "
            "the flow went on as if the plan were saved."
        ),
        script="long-title",
    ),
    Bug(
        name="atlas-double-commit",
        app="atlas",
        file=_ATLAS_DISCOVERY,
        old="            db.flush()  # assigns discovery_id\n",
        new="            db.commit()\n            db.refresh(discovery)\n",
        check="PERSIST009",
        stage=Stage.PERSIST,
        finding=Finding.DOUBLE_COMMIT,
        says="The discovery's unit of work committed twice: db.commit() inside get_db_context(), which commits again.",
    ),
    Bug(
        name="atlas-save-never-commits",
        app="atlas",
        file=_ATLAS_GENERATOR,
        old="        with get_db_context() as db:\n            masterplan = MasterPlan(",
        new="        with SessionLocal() as db:\n            masterplan = MasterPlan(",
        check="PERSIST012",
        stage=Stage.PERSIST,
        finding=Finding.NEVER_COMMITTED,
        says=(
            "_save_masterplan flushed the plan and all its children and closed the session without committing: "
            "`with SessionLocal()` only closes."
        ),
    ),
    Bug(
        name="atlas-expire-on-commit",
        app="atlas",
        file="src/atlas/db.py",
        old="SessionLocal = sessionmaker(autoflush=False, expire_on_commit=False)",
        new="SessionLocal = sessionmaker(autoflush=False, expire_on_commit=True)",
        check="PERSIST005",
        stage=Stage.PERSIST,
        finding=Finding.DETACHED_OBJECT,
        says=(
            "get_discovery returned a DiscoveryDocument expired by get_db_context()'s commit and detached by its "
            "close; reading .domain raised DetachedInstanceError."
        ),
        raises="DetachedInstanceError",
        where=("src/atlas/services/chat_service.py", '"domain": discovery.domain,'),
    ),
    Bug(
        name="beacon-row-in-prompt",
        app="beacon",
        file="beacon/pipeline.py",
        old="skeleton_prompt(request, discovery.document, examples)",
        new="skeleton_prompt(request, discovery._asdict(), examples)",
        check="LLM101",
        stage=Stage.LLM,
        finding=Finding.EXCEPTION_BEFORE_CALL,
        says=(
            "The skeleton call was never made: building its prompt from the whole discovery row raised TypeError "
            "(its created_at datetime is not JSON serializable)."
        ),
        raises="TypeError",
        where=("beacon/prompts.py", "json.dumps(discovery, indent=1, sort_keys=True)"),
    ),
    Bug(
        name="beacon-swallowing-transaction",
        app="beacon",
        file="beacon/db.py",
        old='        logger.error("write failed (%s): %s", what, exc.orig)\n        raise\n',
        new='        logger.error("write failed (%s): %s", what, exc.orig)\n',
        check="PERSIST011",
        stage=Stage.PERSIST,
        finding=Finding.EXCEPTION_SWALLOWED,
        says=(
            "Batch 2's tasks were rolled back on a DataError that write_transaction() logged and swallowed; "
            "the plan was marked ready without them."
        ),
        script="long-title",
    ),
    Bug(
        name="beacon-write-never-committed",
        app="beacon",
        file="beacon/store.py",
        old="    async def mark_ready(self, plan_id: UUID) -> None:\n        async with self.engine.begin() as conn:",
        new="    async def mark_ready(self, plan_id: UUID) -> None:\n        async with self.engine.connect() as conn:",
        check="PERSIST012",
        stage=Stage.PERSIST,
        finding=Finding.NEVER_COMMITTED,
        says=(
            "mark_ready's UPDATE ran on a connection that was closed without commit: the plan stays 'generating' "
            "although every task was saved."
        ),
    ),
    Bug(
        name="beacon-migration-missing-column",
        app="beacon",
        file="migrations/versions/3c1f9a2e7b40_initial_schema.py",
        old='        sa.Column("estimated_tokens", sa.Integer(), nullable=True),\n',
        new="",
        check="DB006",
        stage=Stage.DB,
        finding=Finding.MISSING_COLUMN,
        says="plan_tasks has no column estimated_tokens, which the plan_tasks table declares.",
        raises="ProgrammingError",
        where=("beacon/store.py", "await conn.execute(insert(plan_tasks), rows)"),
    ),
)

#: Every seeded bug, by name.
BUGS: Mapping[str, Bug] = {bug.name: bug for bug in _BUG_LIST}


def copy_app(app: str, destination: Path) -> Path:
    """Copy an example app (without caches and recordings) to ``destination/app``; returns that folder."""
    target = Path(destination) / app
    shutil.copytree(
        APPS_DIR / app,
        target,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "cassettes"),
    )
    return target


def apply_patch(bug: Bug, app_root: Path) -> None:
    """Apply ``bug`` to the app at ``app_root`` in place; :class:`BugError` unless its old text occurs once."""
    path = Path(app_root) / bug.file
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BugError(f"{bug.name}: {bug.file} does not exist in {app_root}") from None
    found = text.count(bug.old)
    if found != 1:
        raise BugError(f"{bug.name}: the old text occurs {found} times in {bug.file} (it must occur exactly once)")
    path.write_text(text.replace(bug.old, bug.new), encoding="utf-8")


def apply_bug(name: str, tmp_path: Path) -> Path:
    """Copy the bug's app into ``tmp_path``, apply the bug there; returns the copy's pyproject.toml."""
    try:
        bug = BUGS[name]
    except KeyError:
        raise BugError(f"no bug named {name!r}; known: {', '.join(sorted(BUGS))}") from None
    root = copy_app(bug.app, tmp_path)
    apply_patch(bug, root)
    return root / "pyproject.toml"
