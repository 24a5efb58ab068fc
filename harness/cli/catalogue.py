"""``harness probes`` and ``harness explain``: the check catalogue."""

from __future__ import annotations

from typing import Any

import click

from pathlib import Path

from harness.cli.app import UsageProblem, cli, target_from


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
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Say which checks apply to the application this pyproject.toml names (and what the others need).",
)
def probes(stages: tuple[str, ...], output_format: str, config_file: Path | None) -> None:
    """List every check: ID, stage, level, what it establishes.

    With --config, each check also says whether it applies to that application, or which
    entry of its [tool.masterplan-harness] table it needs (metadata, migrations, a point).

    \b
    Example:
      harness probes --stage db
      harness probes --config ../app/pyproject.toml
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
    applies = _applicability(config_file) if config_file is not None else None
    for check in chosen:
        line = f"{check.id:<11} {check.stage.value:<8} {check.level.name.lower():<8} {check.title}"
        if applies is not None:
            line += f"  [{applies(check.id)}]"
        click.echo(line)


def _applicability(config_file: Path) -> Any:
    """For one target: ``applies`` or ``needs <entry>`` per check ID."""
    from probes.registry import REGISTRY, needs_of

    config = target_from(config_file, load=False).config
    by_id = {check.id: entry for entry in REGISTRY for check in entry.emits}

    def applies(check_id: str) -> str:
        entry = by_id.get(check_id)
        missing = entry.missing_for(config) if entry is not None else []
        if not needs_of(check_id) or not missing:
            return "applies"
        return "needs " + " and ".join(missing)

    return applies


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
