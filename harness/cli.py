"""The ``harness`` command line.

Exit codes: 0 — everything as expected; 1 — findings (or a replay verdict that differs
from its cassette's expectation); 2 — bad usage or unusable input (missing path, broken
cassette, no PostgreSQL to be had); 3 — a bug in the harness itself.

Library errors become :class:`click.ClickException` here and only here. Heavy imports
(SDKs, SQLAlchemy) happen inside commands so ``harness --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

__all__ = ["main"]

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

_MARKS = {"passed": "✔", "warned": "!", "failed": "✘", "blocked": "·", "skipped": "-"}


class UsageProblem(click.ClickException):
    """Bad input: one line on stderr, exit 2."""

    exit_code = EXIT_USAGE


def _fail_internal(exc: BaseException) -> NoReturn:
    from harness.redaction import redact_text

    click.echo(f"harness: internal error: {type(exc).__name__}: {redact_text(str(exc))}", err=True)
    click.echo("This is a bug in the harness; rerun with HARNESS_DEBUG=1 for the traceback.", err=True)
    sys.exit(EXIT_INTERNAL)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="masterplan-harness", prog_name="harness")
def cli() -> None:
    """Find which stage of the discovery → masterplan flow breaks, and why.

    \b
    harness replay            run recorded LLM answers through the flow on a disposable database
    harness probes            list every check ID with its title and fix
    harness explain DB004     print one check

    Exit codes: 0 as expected, 1 findings or unexpected verdicts, 2 bad usage, 3 harness bug.
    """


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text for people, json for machines.")
def replay(paths: tuple[Path, ...], output_format: str) -> None:
    """Replay cassettes through the whole flow on a disposable PostgreSQL.

    Each cassette (a recorded LLM conversation with its expected verdict) runs on its
    own fresh database cloned from a migrated template. No API is called. PATHS are
    cassette files or folders; the default is ./cassettes.

    \b
    Example:
      harness replay
      harness replay cassettes/healthy-task-manager.yaml

    Exits 0 when every verdict matches its cassette's expectation, 1 when one does not.
    """
    from harness.cassettes import CassetteError, discover_cassettes, load_meta

    targets = list(paths) or [Path("cassettes")]
    try:
        metas = [load_meta(path) for path in discover_cassettes(targets)]
    except CassetteError as exc:
        raise UsageProblem(str(exc)) from None

    from harness.flow.database import migrate
    from harness.postgres import DatabaseFactory, PostgresUnavailable, start_cluster
    from harness.replay import replay_all

    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        raise UsageProblem(f"no disposable PostgreSQL could be started: {exc}") from None
    with cluster:
        factory = DatabaseFactory(cluster, prepare_template=migrate)
        if output_format == "text":
            click.echo(f"Replaying {len(metas)} cassette(s) on disposable PostgreSQL ({cluster.info.provider}).")
        width = max(len(meta.name) for meta in metas)
        results = replay_all(
            metas,
            factory.new_database,
            factory.drop,
            on_result=(lambda result: _print_replay_row(result, width)) if output_format == "text" else None,
        )
    mismatched = [result for result in results if not result.matched]
    if output_format == "json":
        import json

        click.echo(
            json.dumps(
                {
                    "cassettes": [
                        {
                            "name": r.meta.name,
                            "path": str(r.meta.path),
                            "expect": r.meta.expect,
                            "verdict": r.verdict,
                            "matched": r.matched,
                            "duration_s": round(r.duration_s, 3),
                            "report": r.run.report.to_dict(),
                        }
                        for r in results
                    ],
                    "matched": len(results) - len(mismatched),
                    "mismatched": len(mismatched),
                },
                indent=2,
                default=str,
            )
        )
    else:
        click.echo(f"{len(results)} cassette(s): {len(results) - len(mismatched)} as expected, {len(mismatched)} not.")
    sys.exit(EXIT_FINDINGS if mismatched else EXIT_OK)


def _print_replay_row(result: Any, width: int) -> None:
    mark = "✔" if result.matched else "✘"
    click.echo(
        f"  {mark} {result.meta.name:<{width}}  expect {result.meta.expect:<16} got {result.verdict:<16} "
        f"{result.duration_s:6.2f} s"
    )
    report = result.run.report
    first = report.first_failure
    if first is not None:
        click.echo(f"      {first.id} [{first.stage.value}/{first.point}] {first.message}")
        if not result.matched:
            click.echo(f"      fix: {first.hint}")
    warnings = [f for f in report.findings if f.level < report.fail_level]
    if warnings:
        ids = ", ".join(dict.fromkeys(f"{f.id} [{f.stage.value}/{f.point}]" for f in warnings))
        click.echo(f"      warning(s): {ids}")
    if not result.matched and first is None:
        click.echo("      the run passed, but the cassette expects a failure: was the fault fixed? re-record it.")


@cli.command()
@click.option("--stage", "stages", multiple=True, help="Only checks of this stage (repeatable).")
@click.option("--format", "output_format", type=click.Choice(["text", "markdown"]), default="text", show_default=True,
              help="markdown prints the table README.md carries.")
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
            click.echo(f"| `{check.id}` | {check.stage.value} | {check.level.name.lower()} | {check.title} | {check.hint} |")
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


def main() -> None:
    """Console-script entry point: no traceback ever reaches the user unless HARNESS_DEBUG is set."""
    import os

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if exc.exit_code in (1, 2) else exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:
        if os.environ.get("HARNESS_DEBUG"):
            raise
        _fail_internal(exc)
    sys.exit(EXIT_OK)


if __name__ == "__main__":
    main()
