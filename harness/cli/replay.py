"""``harness replay``: cassettes through the whole flow on disposable PostgreSQL."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from harness.cli.app import EXIT_FINDINGS, EXIT_OK, UsageProblem, cli


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for machines.",
)
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
