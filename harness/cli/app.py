"""The ``harness`` command group, exit codes, and the entry point that keeps tracebacks away.

Exit codes: 0 — everything as expected; 1 — findings (or a replay verdict that differs
from its cassette's expectation); 2 — bad usage or unusable input (missing path, broken
cassette, no PostgreSQL to be had); 3 — a bug in the harness itself; 130, 143, 129 — ended
by SIGINT, SIGTERM or SIGHUP, after cleaning up (:mod:`harness.interrupts`).

Library errors become :class:`click.ClickException` in the CLI layer (this package) only. Heavy imports
(SDKs, SQLAlchemy) happen inside commands so ``harness --help`` stays fast.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

__all__ = [
    "EXIT_FINDINGS",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageProblem",
    "cli",
    "config_option",
    "load_application",
    "main",
    "progress_watcher",
    "target_from",
]

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class UsageProblem(click.ClickException):
    """Bad input: one line on stderr, exit 2."""

    exit_code = EXIT_USAGE


F = TypeVar("F", bound=Callable[..., Any])


def config_option(command: F) -> F:
    """``--config FILE``: the pyproject.toml whose [tool.masterplan-harness] names the application."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="HARNESS_CONFIG",
        help="pyproject.toml naming the application under diagnosis [env HARNESS_CONFIG]. "
        "Default: the nearest one holding [tool.masterplan-harness], else the bundled reference flow.",
    )(command)


def target_from(config_file: Path | None, *, load: bool = True) -> Any:
    """The target for ``--config`` (or the working directory); its problems are bad usage (exit 2).

    ``load=False`` reads the configuration only; :func:`load_application` imports the application.
    """
    from harness.target import TargetError, load_target

    try:
        target = load_target(config_file)
    except TargetError as exc:
        raise UsageProblem(str(exc)) from None
    if load:
        load_application(target)
    return target


def prepared_template(factory: Any) -> str:
    """The template a :class:`~harness.postgres.DatabaseFactory` clones, built now (or waited for).

    The application's migrations failing to build it is the application's problem, said in one
    line with exit 2, not an internal error of ours.
    """
    from harness.target import TargetError

    try:
        return factory.prepare()
    except TargetError as exc:
        raise UsageProblem(
            f"cannot give a disposable database the application's schema: {exc} "
            "(`harness diagnose --llm off` judges the migrations: DB011, DB012)"
        ) from None


def load_application(target: Any, *, flow: bool = True) -> None:
    """Import what a run needs of the application: its models, migrations and code roots, and (``flow``)
    the flow and its points.

    A run that never calls the flow (``--llm off``, ``--read-only``, the env and db stages alone)
    skips importing it, and the SDKs it imports: a second or more of start-up. Migrations that do
    not load are DB011's finding, not bad usage.
    """
    from harness.migrations import MigrationsError
    from harness.target import TargetError

    try:
        _ = target.metadata, target.code
        if flow:
            _ = target.flow
            target.check_points()
    except TargetError as exc:
        raise UsageProblem(str(exc)) from None
    if target.config.migrations is not None:
        from probes.db import load_migrations_once

        try:
            load_migrations_once(target.config.migrations)
        except MigrationsError:
            pass  # the db stage reports it (DB011)


def progress_watcher(label: str = "", *, output_format: str = "text") -> Any:
    """What shows one run's progress (``RunOptions.progress``): a line on a terminal, unless --quiet or JSON output."""
    from harness.logs import ProgressLine

    root = click.get_current_context().find_root()
    quiet = bool((root.obj or {}).get("quiet")) or output_format != "text"
    return ProgressLine(quiet=quiet, label=label).watching


def _fail_internal(exc: BaseException) -> NoReturn:
    from harness.redaction import redact_text

    click.echo(f"harness: internal error: {type(exc).__name__}: {redact_text(str(exc))}", err=True)
    click.echo("This is a bug in the harness; rerun with HARNESS_DEBUG=1 for the traceback.", err=True)
    sys.exit(EXIT_INTERNAL)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="masterplan-harness", prog_name="harness")
@click.option(
    "--log-format",
    envvar="HARNESS_LOG_FORMAT",
    type=click.Choice(["auto", "console", "json"]),
    default="auto",
    show_default=True,
    help="Logs on stderr: auto is console on a terminal, JSON lines otherwise.",
)
@click.option(
    "--log-level",
    envvar="HARNESS_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="info tells each run's story; debug adds every check and database transaction.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress line while the flow waits for an LLM answer.")
@click.pass_context
def cli(ctx: click.Context, log_format: str, log_level: str, quiet: bool) -> None:
    """Find which stage of the discovery → masterplan flow breaks, and why.

    \b
    harness diagnose              check a real environment stage by stage; name the first failure
    harness replay                run recorded LLM answers through the flow on a disposable database
    harness record "..." --name N run the flow live and keep its LLM exchanges as a cassette
    harness cassettes list|scan   what each cassette holds; fail if a secret is left in one
    harness cassettes adopt FILE  make a cassette recorded elsewhere (pytest-recording) replayable
    harness migrate               create or upgrade the flow's tables in DATABASE_URL
    harness probes                list every check ID with its title and fix
    harness explain DB004         print one check
    harness report                re-render the newest report (md, junit, html, json)

    Exit codes: 0 as expected, 1 findings or unexpected verdicts, 2 bad usage, 3 harness bug,
    130/143/129 ended by SIGINT/SIGTERM/SIGHUP: canary rows removed, disposable PostgreSQL
    stopped, the report of what finished written.
    Reports go to reports/<UTC timestamp>-<command>/ (reports/latest is the newest).
    """
    from harness.logs import configure_logging

    configure_logging(log_level, log_format=log_format)  # type: ignore[arg-type]
    ctx.obj = {"quiet": quiet}


def main() -> None:
    """Console-script entry point: no traceback ever reaches the user unless HARNESS_DEBUG is set.

    SIGINT, SIGTERM and SIGHUP unwind the command (:mod:`harness.interrupts`): its cleanups
    run, then one line says so and the exit code is 128 + the signal's number. A reader that
    stops reading our output (``harness probes | head``) is no error: the rest of the output
    is discarded and the command ends with its own exit code.
    """
    import atexit
    import gc
    import os
    import signal

    from harness.interrupts import Interrupted, handling_signals

    # Registered first, so it runs last: the interpreter's final collection of a run's objects
    # (timelines, documents) takes seconds and frees nothing the operating system would not.
    atexit.register(gc.freeze)
    _tolerate_closed_stdout()
    with handling_signals(restore=False):
        try:
            cli.main(standalone_mode=False)
        except Interrupted as exc:
            _interrupted(exc)
        except click.exceptions.Abort:  # Ctrl-C where no handler of ours runs (a prompt, another thread)
            _interrupted(Interrupted(signal.SIGINT))
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


def _interrupted(exc: Any) -> NoReturn:
    note = f"; {exc.note}" if exc.note else ""
    sys.stdout.flush()
    click.echo(f"harness: stopped by {exc.signal_name}{note}", err=True)
    sys.exit(exc.exit_code)


class _ReaderMayLeave(io.TextIOWrapper):
    """stdout that, once its reader has gone (EPIPE), sends the rest of the output nowhere."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except BrokenPipeError:
            _discard_stdout()
            return len(text)

    def flush(self) -> None:
        try:
            super().flush()
        except BrokenPipeError:
            _discard_stdout()
            super().flush()


def _discard_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
    finally:
        os.close(devnull)


def _tolerate_closed_stdout() -> None:
    """Wrap the process's stdout so a reader leaving early is no error (click would exit 1 on EPIPE)."""
    stream = sys.stdout
    try:
        if stream is None or stream.fileno() != 1 or not isinstance(stream, io.TextIOWrapper):
            return
    except (AttributeError, OSError, ValueError):
        return  # not the real stdout (captured, replaced): leave it alone
    encoding, errors, line_buffering = stream.encoding, stream.errors, stream.line_buffering
    stream.flush()
    sys.stdout = _ReaderMayLeave(stream.detach(), encoding=encoding, errors=errors, line_buffering=line_buffering)
