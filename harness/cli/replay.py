"""``harness replay``: cassettes through the whole flow on disposable PostgreSQL."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from harness.cli.app import (
    EXIT_FINDINGS,
    EXIT_OK,
    UsageProblem,
    cli,
    config_option,
    load_application,
    prepared_template,
    progress_watcher,
    target_from,
)
from harness.cli.report import check_reports_dir, reports_dir_option, write_reports


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
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Cassettes replayed at once, each in its own process on its own database [default: the cores].",
)
@reports_dir_option
@config_option
@click.pass_context
def replay(
    ctx: click.Context,
    paths: tuple[Path, ...],
    output_format: str,
    jobs: int | None,
    reports_dir: Path,
    config_file: Path | None,
) -> None:
    """Replay cassettes through the application's flow on a disposable PostgreSQL.

    Each cassette (a recorded LLM conversation with its expected verdict) runs on its
    own fresh database cloned from a template built by the application's migrations. No
    API is called. PATHS are cassette files or folders; the default is ./cassettes. The
    application is the one --config names (default: found from here upward, else the
    bundled reference flow).

    Cassettes replay side by side (-j, default: the cores); results are shown and reported in
    cassette order. The checks of the database's schema are judged once, on the first clone
    of the template: every other clone starts as the same copy and inherits that verdict.

    \b
    Example:
      harness replay
      harness replay -j 1 cassettes/healthy-task-manager.yaml

    Exits 0 when every verdict matches its cassette's expectation, 1 when one does not, 2 on
    bad input (a broken cassette or an expectation no replay can give, no PostgreSQL, an
    unwritable --reports-dir). Writes reports/<UTC timestamp>-replay/ (report.json,
    report.md, junit.xml, report.html); --format json prints that report.json.
    Stopped by SIGINT/SIGTERM/SIGHUP (exit 130/143/129): the disposable PostgreSQL is
    stopped and the report of the cassettes already finished is written.
    """
    from harness.cassettes import CassetteError, discover_cassettes, load_meta

    from harness.replay import flow_env

    target = target_from(config_file, load=False)
    folders = list(paths) or [Path("cassettes")]
    try:
        metas = [load_meta(path) for path in discover_cassettes(folders)]
        for meta in metas:
            flow_env(meta)  # a malformed env is bad input, found before anything runs
    except CassetteError as exc:
        raise UsageProblem(str(exc)) from None
    check_reports_dir(reports_dir)

    from harness.interrupts import Interrupted
    from harness.logs import get_logger, log_report
    from harness.postgres import DatabaseFactory, PostgresUnavailable, ProviderUnknown, start_cluster
    from harness.replay import default_jobs, replay_all
    from harness.reports import ReportedRun, RunContext

    started = datetime.now(UTC)
    log = get_logger("harness.replay", command="replay")
    finished: list[Any] = []

    def on_result(result: Any) -> None:
        finished.append(result)
        log_report(log, result.run.report, cassette=result.meta.name, expect=result.meta.expect)
        if not result.matched:
            log.warning("verdict_unexpected", cassette=result.meta.name, expect=result.meta.expect, got=result.verdict)
        if output_format == "text":
            _print_replay_row(result, width)

    try:
        cluster = start_cluster()
    except (PostgresUnavailable, ProviderUnknown) as exc:
        raise UsageProblem(f"no disposable PostgreSQL could be started: {exc}") from None

    def context(interrupted: str | None = None) -> Any:
        return RunContext(
            started_at=started,
            database_url=cluster.info.url("postgres"),
            target=f"{target.config.name or target.config.flow} on disposable PostgreSQL ({cluster.info.provider}), "
            "one database per cassette",
            interrupted=interrupted,
        )

    def reported(results: list[Any]) -> list[Any]:
        return [
            ReportedRun(r.meta.name, r.run, r.duration_s, source=str(r.meta.path), expect=r.meta.expect)
            for r in results
        ]

    jobs = min(jobs or default_jobs(), len(metas))
    try:
        with cluster:
            factory = DatabaseFactory(cluster, prepare_template=target.build_schema)
            try:
                if target.builds_schema_apart:
                    factory.prepare_ahead()  # the migrations' child runs while this process imports
                # The application (and the SDKs it imports: seconds) once the input is known to be usable.
                load_application(target)
                template = prepared_template(factory)
                if output_format == "text":
                    at_once = f", {jobs} at a time" if jobs > 1 else ""
                    click.echo(
                        f"Replaying {len(metas)} cassette(s) on disposable PostgreSQL ({cluster.info.provider})"
                        f"{at_once}."
                    )
                width = max(len(meta.name) for meta in metas)
                results = replay_all(
                    metas,
                    factory.new_database,
                    factory.drop,
                    target=target,
                    on_result=on_result,
                    empty_database=(lambda: cluster.url(cluster.create_database()), factory.drop),
                    # One progress line at a time: side by side, runs would overwrite each other's.
                    progress_for=(lambda meta: progress_watcher(meta.name, output_format=output_format))
                    if jobs == 1
                    else None,
                    template=template,
                    jobs=jobs,
                    before_fork=factory.settle,
                )
            finally:
                factory.close()
    except Interrupted as stopped:
        # The cluster is stopped (its `with` has unwound); keep the report of what finished.
        folder = write_reports("replay", reported(finished), context(stopped.signal_name), reports_dir)
        stopped.note = (
            f"{len(finished)} of {len(metas)} cassette(s) finished; disposable PostgreSQL stopped; "
            f"their report: {folder}"
        )
        raise
    folder = write_reports("replay", reported(results), context(), reports_dir)
    mismatched = [result for result in results if not result.matched]
    if output_format == "json":
        click.echo((folder / "report.json").read_text(encoding="utf-8"), nl=False)
        click.echo(f"Reports: {folder}/", err=True)
    else:
        click.echo(f"{len(results)} cassette(s): {len(results) - len(mismatched)} as expected, {len(mismatched)} not.")
        click.echo(f"Reports: {folder}/ (report.html, report.md, junit.xml, report.json)")
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
