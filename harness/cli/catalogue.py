"""``harness probes`` and ``harness explain``: the check catalogue."""

from __future__ import annotations

import click

from harness.cli.app import UsageProblem, cli


@cli.command()
@click.option("--stage", "stages", multiple=True, help="Only checks of this stage (repeatable).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "markdown"]),
    default="text",
    show_default=True,
    help="markdown prints the table README.md carries.",
)
def probes(stages: tuple[str, ...], output_format: str) -> None:
    """List every check: ID, stage, level, what it establishes.

    \b
    Example:
      harness probes --stage db
      harness probes --format markdown
    """
    from probes import ALL_CHECKS
    from probes.core import Stage

    known = {stage.value for stage in Stage}
    unknown = [stage for stage in stages if stage not in known]
    if unknown:
        raise UsageProblem(f"unknown stage {unknown[0]!r}; stages are: {', '.join(s.value for s in Stage)}")
    chosen = [check for check in ALL_CHECKS if not stages or check.stage.value in stages]
    if output_format == "markdown":
        click.echo("| ID | stage | level | what it establishes | what to do when it fails |")
        click.echo("|---|---|---|---|---|")
        for check in chosen:
            click.echo(
                f"| `{check.id}` | {check.stage.value} | {check.level.name.lower()} | {check.title} | {check.hint} |"
            )
        return
    for check in chosen:
        click.echo(f"{check.id:<11} {check.stage.value:<8} {check.level.name.lower():<8} {check.title}")


@cli.command()
@click.argument("check_id")
def explain(check_id: str) -> None:
    """Print one check: what it establishes, when it fails, and the fix.

    \b
    Example:
      harness explain LLM001
    """
    from probes import check_by_id

    try:
        check = check_by_id(check_id)
    except KeyError as exc:
        raise UsageProblem(str(exc.args[0])) from None
    click.echo(f"{check.id} — {check.title}")
    click.echo(f"stage: {check.stage.value}   level: {check.level.name.lower()}")
    click.echo(f"fix: {check.hint}")
