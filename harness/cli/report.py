"""``harness report``: re-render a saved run report; and the reports plumbing every command shares.

Commands that run the flow take :func:`reports_dir_option` and call :func:`write_reports`
once at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from harness.cli.app import UsageProblem, cli

__all__ = ["check_reports_dir", "reports_dir_option", "write_reports"]

F = TypeVar("F", bound=Callable[..., Any])


def reports_dir_option(command: F) -> F:
    """``--reports-dir``: where the run's report folder goes (env HARNESS_REPORTS_DIR; the option wins)."""
    return click.option(
        "--reports-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=lambda: Path(os.environ.get("HARNESS_REPORTS_DIR") or "reports"),
        show_default="reports",
        help="Folder for report folders; reports/latest points at the newest.",
    )(command)


def check_reports_dir(reports_dir: Path) -> None:
    """Before any work: the reports folder can be made and written to, else bad input (exit 2) — not a lost run."""
    import tempfile

    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=reports_dir, prefix=".harness-write-check-"):
            pass
    except OSError as exc:
        raise UsageProblem(f"cannot write reports to {reports_dir}: {exc.strerror or exc}") from None


def write_reports(command: str, runs: Iterable[Any], context: Any, reports_dir: Path) -> Path:
    """Write the run's reports (a signal meanwhile waits until they are written); an unwritable folder is exit 2."""
    from harness.interrupts import cleanup
    from harness.reports import ReportError, write_run_reports

    try:
        with cleanup():
            return write_run_reports(command, runs, meta=context, out_dir=reports_dir)
    except (OSError, ReportError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageProblem(f"cannot write reports to {reports_dir}: {reason}") from None


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path("reports/latest"))
@click.option(
    "-f",
    "--format",
    "output_format",
    type=click.Choice(["json", "md", "junit", "html"]),
    default="md",
    show_default=True,
    help="json is the saved data (schema-checked); md, junit and html are rendered from it.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout."
)
def report(path: Path, output_format: str, output: Path | None) -> None:
    """Re-render a saved run report (report.json, its folder, or reports/latest).

    \b
    Example:
      harness report                                  # reports/latest as Markdown
      harness report reports/latest --format junit > junit.xml
      harness report reports/20250101T120000Z-replay -f html -o report.html

    Exits 2 when PATH is missing, is not a run report, or has another schema version.
    """
    from harness.reports import ReportError, load_report, render

    try:
        text = render(load_report(path), output_format)
    except ReportError as exc:
        raise UsageProblem(str(exc)) from None
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageProblem(f"cannot write {output}: {exc.strerror or exc}") from None
