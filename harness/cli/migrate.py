"""``harness migrate``: bring the application's database to its migrations' head (or build it from its models)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from harness.cli.app import UsageProblem, cli, config_option, load_application, target_from


@cli.command()
@click.option("--revision", default="heads", show_default=True, help="Alembic revision to upgrade to.")
@config_option
def migrate(revision: str, config_file: Path | None) -> None:
    """Create or upgrade the application's tables in the database its URL variable names.

    Runs the application's own Alembic migrations (its alembic.ini), or, for an application
    without migrations, creates the tables its metadata declares. The database comes from
    the target's database-url-env (DATABASE_URL for the bundled reference flow).

    \b
    Example:
      DATABASE_URL=postgresql://app:pw@localhost/app harness migrate
      harness migrate --config ../app/pyproject.toml
    """
    from harness.config import sqlalchemy_url
    from harness.redaction import redact_url
    from harness.target import TargetError

    target = target_from(config_file, load=False)
    load_application(target, flow=False)  # the schema is built; the flow is not run
    variable = target.config.database_url_env
    url = os.environ.get(variable, "").strip()
    if not url:
        raise UsageProblem(f"{variable} is not set")
    try:
        sqlalchemy_url(url)
    except ValueError as exc:
        raise UsageProblem(f"{variable} {redact_url(url)!r} does not parse: {exc}") from None
    try:
        target.build_schema(url, revision=revision)
    except TargetError as exc:
        raise UsageProblem(str(exc)) from None
    click.echo(f"{redact_url(url)} is at revision {revision}.")
