"""``harness record``: run the flow live and keep its LLM exchanges as a redacted cassette."""

from __future__ import annotations

import re
import sys
from contextlib import ExitStack
from pathlib import Path

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

#: A cassette name becomes a file name: keep it to what every file system and shell accepts.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Stages that run before any LLM call: a failure there leaves nothing a replay could reproduce.
_PREFLIGHT_STAGES = ("env", "db", "auth")


@cli.command()
@click.argument("request")
@click.option("--name", required=True, help="Cassette name; the file is OUT/NAME.yaml.")
@click.option("--description", default="", help="What the recording shows (kept in its metadata).")
@click.option("--user-id", default="harness-record", show_default=True, help="conversation.user_id of the request.")
@click.option(
    "--session-id", default="harness-record-session", show_default=True, help="Socket session id of the request."
)
@click.option(
    "--anthropic-base-url",
    metavar="URL",
    help="An Anthropic-compatible server instead of api.anthropic.com (wins over ANTHROPIC_BASE_URL).",
)
@click.option(
    "--openai-base-url",
    metavar="URL",
    help="An OpenAI-compatible server instead of api.openai.com, ending in /v1 (wins over OPENAI_BASE_URL).",
)
@click.option(
    "--disposable-db",
    is_flag=True,
    help="Write to a fresh disposable PostgreSQL instead of DATABASE_URL.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("cassettes"),
    show_default=True,
    help="Folder the cassette is written to.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing cassette of that name.")
@click.option(
    "--flow-env",
    "flow_env",
    multiple=True,
    metavar="NAME=VALUE",
    help="A setting the flow reads that shapes its requests (repeatable); set for the run and kept in the "
    "cassette so a replay sends the same requests. MASTERPLAN_* variables in the environment are kept too.",
)
@reports_dir_option
@config_option
def record(
    config_file: Path | None,
    flow_env: tuple[str, ...],
    request: str,
    name: str,
    description: str,
    user_id: str,
    session_id: str,
    anthropic_base_url: str | None,
    openai_base_url: str | None,
    disposable_db: bool,
    out: Path,
    force: bool,
    reports_dir: Path,
) -> None:
    """Run REQUEST through the application's flow live and record every LLM exchange as a cassette.

    The calls go to the real APIs (ANTHROPIC_API_KEY, OPENAI_API_KEY) unless a base URL
    says otherwise. The flow writes its rows to its database variable (DATABASE_URL unless
    the target says otherwise) — use a scratch database — or, with --disposable-db, to a
    fresh disposable PostgreSQL built by the application's migrations.
    The cassette is redacted before it is written (keys, cookies, organization and request
    ids, x-stainless-* and user-agent headers, key-shaped text), and the verdict of the run
    becomes its expectation (metadata.harness.expect, editable). A truncated answer
    (max_tokens, or a stream cut before its stop events) is flagged as a warning.

    \b
    Example:
      harness record "A booking system for a physiotherapy clinic" --name clinic-booking
      harness record "$(cat request.txt)" --name prod-failure --disposable-db --force

    Exits 0 when the cassette was written (whatever its verdict), 1 when the run failed
    before any LLM call (nothing worth keeping), 2 on bad usage or an existing cassette;
    130/143/129 when stopped by SIGINT/SIGTERM/SIGHUP (nothing recorded; the report of what
    finished is written, a disposable database is stopped).
    """
    import time
    from datetime import UTC, datetime

    import os

    from harness.config import MODELS_ENV_PREFIX, Settings
    from harness.interrupts import Interrupted
    from harness.record import record_cassette
    from harness.redaction import redact_text, redact_url
    from harness.reports import ReportedRun, RunContext
    from harness.runner import FlowRequest

    if not _NAME.match(name):
        raise UsageProblem(f"--name {name!r}: use letters, digits, '.', '_' and '-' (it becomes the file name)")
    path = out / f"{name}.yaml"
    if path.exists() and not force:
        raise UsageProblem(f"{path} exists; pass --force to overwrite it")
    if not request.strip():
        raise UsageProblem("REQUEST is empty: give the project description the /masterplan command would get")

    target = target_from(config_file, load=False)
    url_variable = target.config.database_url_env
    recorded_env = {name: value for name, value in os.environ.items() if name.startswith(MODELS_ENV_PREFIX)}
    for item in flow_env:
        key, sep, value = item.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            raise UsageProblem(f"--flow-env {item!r}: write NAME=VALUE")
        recorded_env[key] = value
    # Command-line options win over the environment; the environment over the vendors' defaults.
    try:
        settings = Settings.from_env({**os.environ, **recorded_env}, database_url_env=url_variable)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    overrides: dict[str, object] = {}
    if anthropic_base_url:
        overrides["anthropic_base_url"] = anthropic_base_url
    if openai_base_url:
        overrides["openai_base_url"] = openai_base_url
    if not settings.anthropic_api_key:
        raise UsageProblem("ANTHROPIC_API_KEY is not set: recording calls the Anthropic API with it")
    if not disposable_db and not settings.database_url:
        raise UsageProblem(
            f"{url_variable} is not set: set it to the (scratch) database the flow writes to, or pass --disposable-db"
        )

    check_reports_dir(reports_dir)
    if disposable_db:
        from harness.postgres import ProviderUnknown, check_provider_setting

        try:
            check_provider_setting()
        except ProviderUnknown as exc:
            raise UsageProblem(str(exc)) from None
    # The application (and the SDKs it imports: seconds) once the input is known to be usable.
    load_application(target)
    made_with = "the live APIs"
    if anthropic_base_url or openai_base_url or settings.anthropic_base_url or settings.openai_base_url:
        merged = settings.with_overrides(**overrides)
        made_with = "API-compatible server(s): " + ", ".join(
            redact_url(url) for url in (merged.anthropic_base_url, merged.openai_base_url) if url
        )

    with ExitStack() as stack:
        where = url_variable
        if disposable_db:
            from harness.postgres import DatabaseFactory, PostgresUnavailable, ProviderUnknown, start_cluster

            try:
                cluster = stack.enter_context(start_cluster())
            except (PostgresUnavailable, ProviderUnknown) as exc:
                raise UsageProblem(f"no disposable PostgreSQL could be started: {exc}") from None
            factory = DatabaseFactory(cluster, prepare_template=target.build_schema)
            stack.callback(factory.close)  # the clone made ahead is dropped before the cluster stops
            prepared_template(factory)
            overrides["database_url"] = factory.new_database()
            stack.callback(factory.drop, overrides["database_url"])
            where = f"a disposable PostgreSQL ({cluster.info.provider})"
        click.echo(f"Recording {path} (flow writes to {where}; LLM calls to {made_with}).")
        started, clock = datetime.now(UTC), time.perf_counter()
        try:
            recorded = record_cassette(
                path,
                name=name,
                description=description,
                request=FlowRequest(request, user_id, session_id),
                settings=settings.with_overrides(**overrides),
                made_with=made_with,
                force=force,
                target=target,
                flow_env=recorded_env,
                progress=progress_watcher(name),
            )
        except FileExistsError as exc:
            raise UsageProblem(str(exc)) from None
        except Interrupted as stopped:
            interrupted = stopped
        else:
            interrupted = None
    if interrupted is not None:
        if interrupted.partial is not None:
            folder = write_reports(
                "record",
                [ReportedRun(name, interrupted.partial, time.perf_counter() - clock, source=str(path))],
                RunContext(
                    started_at=started,
                    target=f"recording {path} ({where}; {made_with})",
                    interrupted=interrupted.signal_name,
                ),
                reports_dir,
            )
            interrupted.note = f"nothing recorded ({path} not written); report of what finished: {folder}"
        else:
            interrupted.note = f"nothing recorded ({path} not written)"
        raise interrupted

    report = recorded.run.report
    folder = write_reports(
        "record",
        [ReportedRun(name, recorded.run, time.perf_counter() - clock, source=str(path))],
        RunContext(started_at=started, target=f"recording {path} ({where}; {made_with})"),
        reports_dir,
    )
    click.echo(f"Reports: {folder}")
    first = report.first_failure
    if first is not None and first.stage.value in _PREFLIGHT_STAGES:
        recorded.path.unlink(missing_ok=True)
        click.echo(redact_text(f"  {first.id} [{first.stage.value}/{first.point}] {first.message}"))
        click.echo(redact_text(f"  fix: {first.hint}"))
        click.echo(f"Nothing recorded: the run failed at {first.stage.value} before any LLM call.")
        sys.exit(EXIT_FINDINGS)

    for number, call in enumerate(recorded.calls, 1):
        usage = f"in {call.input_tokens if call.input_tokens is not None else '-'} / out {call.output_tokens or '-'}"
        kind = f"SSE, {call.events} events" if call.streamed else "JSON"
        click.echo(f"  {number}. {call.method} {call.path} -> {call.status} ({kind}) {call.outcome}; tokens {usage}")
    if first is not None:
        click.echo(redact_text(f"  {first.id} [{first.stage.value}/{first.point}] {first.message}"))
    for warning in recorded.warnings:
        click.echo(f"  warning: {warning}")
    click.echo(f"Wrote {recorded.path}: {len(recorded.calls)} call(s), expect {report.verdict}.")
    sys.exit(EXIT_OK)
