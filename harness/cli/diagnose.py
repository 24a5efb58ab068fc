"""``harness diagnose``: every stage against a real environment, the first failure called out."""

from __future__ import annotations

import json
import os
import sys
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
    progress_watcher,
    target_from,
)
from harness.cli.report import check_reports_dir, reports_dir_option, write_reports

_MARKS = {"passed": "✔", "warned": "!", "failed": "✘", "blocked": "·", "skipped": "-", "not_applicable": "–"}
#: Request used by ``--llm full`` when none is given: small, so a live check spends few tokens.
DEFAULT_LIVE_REQUEST = "A to-do list web app: users sign in, create lists, add tasks with due dates, and tick them off."


@cli.command()
@click.option(
    "--env-file", type=click.Path(path_type=Path), help="Read settings from this file; it wins over the environment."
)
@click.option(
    "--llm",
    "llm_mode",
    type=click.Choice(["off", "ping", "full", "replay"]),
    default="replay",
    show_default=True,
    help="off: no LLM stage. ping: one minimal call per API. full: the whole flow live (spends tokens). "
    "replay: the whole flow with recorded answers (no tokens).",
)
@click.option(
    "--cassette",
    type=click.Path(path_type=Path),
    help="Recorded answers for --llm replay (default: the target's `cassette`; the reference flow ships one).",
)
@click.option("--request", "request_text", help="Project description for --llm full.")
@click.option("--user-id", envvar="HARNESS_USER_ID", help="User id the request carries [env HARNESS_USER_ID].")
@click.option(
    "--session-id", envvar="HARNESS_SESSION_ID", help="Session id the request carries [env HARNESS_SESSION_ID]."
)
@click.option(
    "--token",
    envvar="HARNESS_AUTH_TOKEN",
    help="Bearer token (HS256 JWT: sub, sid) instead of ids [env HARNESS_AUTH_TOKEN].",
)
@click.option(
    "--token-secret", envvar="HARNESS_TOKEN_SECRET", help="Secret that verifies --token [env HARNESS_TOKEN_SECRET]."
)
@click.option("--read-only", is_flag=True, help="Write nothing: the flow is not run and persist checks are skipped.")
@click.option(
    "--stage", "stages", multiple=True, help="Only these stages (repeatable): env, db, auth, llm, parse, persist."
)
@click.option(
    "--fail-level",
    type=click.Choice(["warning", "error"]),
    default="error",
    show_default=True,
    help="Findings at or above this level fail the run (exit 1).",
)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@reports_dir_option
@config_option
def diagnose(
    config_file: Path | None,
    env_file: Path | None,
    llm_mode: str,
    cassette: Path | None,
    request_text: str | None,
    user_id: str | None,
    session_id: str | None,
    token: str | None,
    token_secret: str | None,
    read_only: bool,
    stages: tuple[str, ...],
    fail_level: str,
    output_format: str,
    reports_dir: Path,
) -> None:
    """Check a real environment stage by stage and name the first failure, its evidence and fix.

    Settings come from the environment (DATABASE_URL, ANTHROPIC_API_KEY, OPENAI_API_KEY),
    or from --env-file, whose values win. Rows the run writes are tagged with a canary
    session id (harness-canary-...) and always deleted afterwards, also when a step
    fails; --read-only writes nothing. Secrets are only ever shown masked.

    \b
    Example:
      harness diagnose --user-id u-42 --session-id sid-1
      harness diagnose --env-file prod.env --llm ping --token "$JWT" --token-secret "$SECRET"
      harness diagnose --stage env --stage db --format json

    A canary left by an earlier run that was killed outright (kill -9, power loss) is found,
    removed and reported (PERSIST014); PERSIST008 fails while any canary row remains.
    --format json prints the run's report.json (the versioned report schema).

    Exit codes: 0 no finding at or above --fail-level, 1 findings, 2 bad usage; 130/143/129
    when stopped by SIGINT/SIGTERM/SIGHUP — after removing the canary rows and writing the
    report of the checks that finished.
    """
    import time
    from contextlib import nullcontext
    from datetime import UTC, datetime

    from harness.config import EnvFileError, Settings, load_env_file, sqlalchemy_url
    from harness.interrupts import Interrupted
    from harness.postgres import EmptyDatabases, ProviderUnknown, check_provider_setting
    from harness.redaction import redact_url, register_secret

    # The configuration is read here; the application is imported below, once it is known to be needed.
    target = target_from(config_file, load=False)
    url_variable = target.config.database_url_env
    environ: dict[str, str] = dict(os.environ)
    if env_file is not None:
        try:
            environ.update(load_env_file(str(env_file)))
        except EnvFileError as exc:
            raise UsageProblem(str(exc)) from None
    try:
        settings = Settings.from_env(environ, database_url_env=url_variable)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    for secret in (settings.anthropic_api_key, settings.openai_api_key, token, token_secret):
        register_secret(secret)
    if settings.database_url and (not stages or "db" in stages):
        from harness.dbconnect import connect_ahead

        # Before the heavy imports: a server that never answers costs the connect timeout from here.
        connect_ahead(settings.database_url, settings.timeouts)

    from harness.reports import ReportedRun, RunContext
    from harness.runner import FLOW_STAGES, FlowRequest, LLMMode, RunOptions, run_flow
    from probes import auth
    from probes.core import Level, Stage
    from probes.db import trial_ahead

    if settings.database_url:
        try:
            sqlalchemy_url(settings.database_url)
        except ValueError as exc:
            raise UsageProblem(f"{url_variable} {redact_url(settings.database_url)!r} does not parse: {exc}") from None

    known = {stage.value for stage in Stage}
    for stage in stages:
        if stage not in known:
            raise UsageProblem(f"unknown stage {stage!r}; stages are: {', '.join(s.value for s in Stage)}")
    selected = frozenset(Stage(stage) for stage in stages) if stages else frozenset(Stage)

    token_error = None
    source = "flags" if (user_id or session_id) else "environment"
    if token:
        if not token_secret:
            raise UsageProblem("--token needs --token-secret (or HARNESS_TOKEN_SECRET) to verify it")
        try:
            identity = auth.identity_from_token(token, token_secret)
            user_id, session_id, source = user_id or identity.user_id, session_id or identity.session_id, "token"
        except auth.TokenInvalid as exc:
            token_error = str(exc)

    mode = LLMMode(llm_mode)
    check_reports_dir(reports_dir)
    try:
        check_provider_setting()  # DB012 may start a scratch cluster: a typo is bad input now, not a finding later
    except ProviderUnknown as exc:
        raise UsageProblem(str(exc)) from None
    # The application (and the SDKs it imports) only when its flow will be called.
    calls_flow = mode in (LLMMode.FULL, LLMMode.REPLAY) and bool(selected & set(FLOW_STAGES)) and not read_only
    load_application(target, flow=calls_flow)
    started, clock = datetime.now(UTC), time.perf_counter()
    request = FlowRequest(request_text or DEFAULT_LIVE_REQUEST, user_id, session_id)
    options = RunOptions(
        stages=selected,
        llm=mode,
        read_only=read_only,
        canary=True,
        fail_level=Level.parse(fail_level),
        token_error=token_error,
        token_given=bool(token),
        identity_source=source,
        progress=progress_watcher(output_format=output_format),
    )
    if mode is LLMMode.REPLAY:
        from harness.cassettes import CassetteError, load_meta, replaying
        from harness.replay import REPLAY_ANTHROPIC_KEY, REPLAY_OPENAI_KEY, flow_env

        path = cassette or target.config.cassette
        if path is None:
            raise UsageProblem(
                f"--llm replay needs recorded answers of this application: record one with `harness record` and "
                f"name it with --cassette (or cassette = ... in {target.config.source}); or use --llm ping/full/off"
            )
        try:
            meta = load_meta(path)
            recorded_env = flow_env(meta)
        except CassetteError as exc:
            raise UsageProblem(str(exc)) from None
        request = FlowRequest(meta.request, user_id, session_id)
        # Replayed answers stand in for the APIs: the SDKs need keys to build, none leaves the machine.
        settings = settings.with_overrides(
            anthropic_api_key=settings.anthropic_api_key or REPLAY_ANTHROPIC_KEY,
            openai_api_key=settings.openai_api_key or REPLAY_OPENAI_KEY,
            anthropic_base_url=None,
            openai_base_url=None,
        )
        from dataclasses import replace

        options = replace(options, provoke=True, flow_env=tuple(sorted(recorded_env.items())))

        def answers() -> Any:
            return replaying(path)

    else:
        if cassette is not None:
            raise UsageProblem("--cassette only goes with --llm replay")
        answers = None

    shown = redact_url(settings.database_url) if settings.database_url else f"({url_variable} not set)"

    def report_of(run: Any, interrupted: str | None = None) -> Path:
        context = RunContext(
            started_at=started,
            database_url=settings.database_url,
            target=f"{target.config.name or target.config.flow} on {shown} (llm: {llm_mode})",
            interrupted=interrupted,
        )
        return write_reports(
            "diagnose", [ReportedRun("diagnose", run, time.perf_counter() - clock)], context, reports_dir
        )

    try:
        # A scratch cluster for DB012 is started only if that check runs, and stopped here (also on a signal).
        with EmptyDatabases() as empty:
            disposable = (empty.new, empty.drop)
            # Every input is checked and the application loads: DB012's trial, which needs no target database,
            # runs while the connect attempt (begun above) waits, and is stopped here on every path.
            with trial_ahead(target, settings, disposable) if Stage.DB in selected else nullcontext():
                if answers is not None:
                    run = run_flow(
                        settings, request, target=target, options=options, answers=answers, disposable=disposable
                    )
                else:
                    run = run_flow(settings, request, target=target, options=options, disposable=disposable)
    except Interrupted as stopped:
        if stopped.partial is not None:
            folder = report_of(stopped.partial, stopped.signal_name)
            stopped.note = f"{_canary_words(stopped.partial)}; report of what finished: {folder}"
        raise

    from harness.logs import get_logger, log_report

    log_report(get_logger("harness.diagnose"), run.report, command="diagnose", llm=llm_mode)
    folder = report_of(run)
    if output_format == "json":
        click.echo((folder / "report.json").read_text(encoding="utf-8"), nl=False)
        click.echo(f"Reports: {folder}", err=True)
    else:
        _print_doctor(run, f"{target.config.name or target.config.flow} on {shown}", llm_mode)
        click.echo(f"Reports: {folder}")
    sys.exit(EXIT_FINDINGS if run.report.failures else EXIT_OK)


def _canary_words(run: Any) -> str:
    """What became of the canary rows of an interrupted run, in a few words."""
    outcome = next((o for o in reversed(run.report.outcomes) if o.check.id == "PERSIST008"), None)
    if outcome is None or not outcome.outcome.ran:
        return "no canary row was written"
    if outcome.outcome.value == "passed":
        return "canary rows removed and verified"
    return f"canary rows NOT all removed (PERSIST008: {outcome.findings[0].message})"


def _print_doctor(run: Any, target: str, llm_mode: str) -> None:
    from probes.core import Stage

    report = run.report
    click.echo(f"harness diagnose — {target} (llm: {llm_mode})")
    server = run.observations.get("db.server")
    for stage in Stage:
        outcomes = [o for o in report.outcomes if o.check.stage is stage]
        if not outcomes:
            continue
        extra = f" (PostgreSQL {server['server_version'].split()[0]})" if stage is Stage.DB and server else ""
        click.echo(f"{stage.value}{extra}")
        not_run = [o for o in outcomes if o.outcome.value in ("blocked", "skipped", "not_applicable")]
        # A check passed at many points is one line naming them; one that found something, a line per point.
        passed: dict[str, list[Any]] = {}
        for outcome in outcomes:
            if outcome not in not_run and outcome.outcome.value == "passed":
                passed.setdefault(outcome.check.id, []).append(outcome)
        shown: set[str] = set()
        for outcome in outcomes:
            if outcome in not_run:
                continue
            if outcome.outcome.value == "passed":
                if outcome.check.id in shown:
                    continue
                shown.add(outcome.check.id)
                points = [o.point for o in passed[outcome.check.id] if o.point != stage.value]
                where = f" [{', '.join(dict.fromkeys(points))}]" if points else ""
                click.echo(f"  {_MARKS['passed']} {outcome.check.id:<10} {outcome.check.title}{where}")
                continue
            where = f" [{outcome.point}]" if outcome.point != stage.value else ""
            line = f"  {_MARKS[outcome.outcome.value]} {outcome.check.id:<10} {outcome.check.title}{where}"
            if outcome.findings:
                line += f" — {outcome.findings[0].message}"
            elif outcome.reason:
                line += f" ({outcome.reason})"
            click.echo(line)
        for reason in dict.fromkeys(o.reason for o in not_run):
            group = [o for o in not_run if o.reason == reason]
            words = group[0].outcome.value.replace("_", " ")
            click.echo(f"  {_MARKS[group[0].outcome.value]} {len(group)} check(s) {words} — {reason}")
    totals = (
        ", ".join(f"{report.count(o)} {o.value.replace('_', ' ')}" for o in type(report.outcomes[0].outcome))
        if report.outcomes
        else ""
    )
    click.echo(f"\n{totals}")
    first = report.first_failure
    if first is None:
        click.echo("No stage failed.")
        return
    click.echo(f"First failing stage: {first.stage.value} — {first.id} at {first.point}: {first.message}")
    evidence = {k: v for k, v in first.evidence.items() if v is not None}
    if evidence:
        click.echo(f"  evidence: {json.dumps(evidence, default=str)[:600]}")
    click.echo(f"  fix: {first.hint}")
