"""``harness migrate``: bring DATABASE_URL's schema to the flow's head revision."""

from __future__ import annotations

import os

import click

from harness.cli.app import UsageProblem, cli


@cli.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to upgrade to.")
def migrate(revision: str) -> None:
    """Create or upgrade the flow's tables in the database named by DATABASE_URL.

    \b
    Example:
      DATABASE_URL=postgresql://app:pw@localhost/app harness migrate
    """
    from harness.config import sqlalchemy_url
    from harness.flow.database import migrate as run_migrations
    from harness.redaction import redact_url

    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise UsageProblem("DATABASE_URL is not set")
    try:
        sqlalchemy_url(url)
    except ValueError as exc:
        raise UsageProblem(f"DATABASE_URL {redact_url(url)!r} does not parse: {exc}") from None
    run_migrations(url, revision)
    click.echo(f"{redact_url(url)} is at revision {revision}.")
