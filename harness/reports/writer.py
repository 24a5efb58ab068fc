"""Writing a command's reports to ``reports/<UTC timestamp>-<command>/`` and reading them back.

One folder per command run holds ``report.json`` (the data), and ``report.md``,
``junit.xml`` and ``report.html`` rendered from it. ``reports/latest`` points at the
newest folder: a relative symlink, or — where symlinks cannot be made — a text file
holding the folder's name. :func:`load_report` accepts either, a folder, or a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from harness.reports.build import ReportedRun, RunContext, build_run_report
from harness.reports.render_html import render_html
from harness.reports.render_junit import render_junit
from harness.reports.render_md import render_markdown
from harness.reports.schema import REPORT_KIND, SCHEMA_VERSION, RunReport

__all__ = [
    "FORMATS",
    "LATEST",
    "REPORT_FILES",
    "ReportError",
    "load_report",
    "render",
    "write_report_files",
    "write_run_reports",
]

#: The link (or text file) naming the newest report folder.
LATEST = "latest"


def _render_json(report: RunReport) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


#: Each format's renderer.
FORMATS: dict[str, Callable[[RunReport], str]] = {
    "json": _render_json,
    "md": render_markdown,
    "junit": render_junit,
    "html": render_html,
}
#: The file each format is written to inside a report folder.
REPORT_FILES: dict[str, str] = {"json": "report.json", "md": "report.md", "junit": "junit.xml", "html": "report.html"}


class ReportError(Exception):
    """A path that does not hold a run report this harness can read; the message is one line."""


def render(report: RunReport, fmt: str) -> str:
    """``report`` in format ``fmt`` (one of :data:`FORMATS`)."""
    return FORMATS[fmt](report)


def write_run_reports(
    command: str, runs: Iterable[ReportedRun], *, meta: RunContext, out_dir: Path = Path("reports")
) -> Path:
    """Write every report of one command run; point ``out_dir/latest`` at it; return its folder."""
    report = build_run_report(command, runs, meta=meta)
    folder = _new_folder(Path(out_dir), report.meta.started_at, command)
    write_report_files(report, folder)
    _point_latest(Path(out_dir), folder)
    return folder


def write_report_files(report: RunReport, folder: Path) -> None:
    """Write ``report`` in every format into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for fmt, name in REPORT_FILES.items():
        (folder / name).write_text(render(report, fmt), encoding="utf-8")


def load_report(path: Path) -> RunReport:
    """The report at ``path`` (a report.json, its folder, or ``latest``); :class:`ReportError` if it is not one."""
    path = Path(path)
    target = _resolve(path)
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot read {target}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ReportError(f"{target} is not a harness run report: not UTF-8 text (a binary file?)") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ReportError(f"{target} is not a harness run report: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != REPORT_KIND:
        raise ReportError(f'{target} is not a harness run report: it has no "kind": "{REPORT_KIND}"')
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReportError(
            f"{target} uses report schema version {version!r}; this harness reads version {SCHEMA_VERSION}"
        )
    try:
        return RunReport.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ReportError(f"{target} is not a valid run report: {where}: {first['msg']}") from None


def _resolve(path: Path) -> Path:
    if path.is_file() and path.name == LATEST and not path.is_symlink():
        try:
            path = path.parent / path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError, ValueError):
            raise ReportError(f"{path} does not name a report folder") from None
    if path.is_dir():
        path = path / REPORT_FILES["json"]
    if not path.exists():
        raise ReportError(f"no report at {path}")
    return path


def _new_folder(out_dir: Path, started: datetime, command: str) -> Path:
    stamp = started.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        name = f"{stamp}-{command}" + (f"-{attempt}" if attempt > 1 else "")
        try:
            (out_dir / name).mkdir()
        except FileExistsError:
            continue  # two runs in one second: the later one gets a suffix
        return out_dir / name
    raise ReportError(f"cannot make a new report folder in {out_dir}")


def _point_latest(out_dir: Path, folder: Path) -> None:
    latest = out_dir / LATEST
    staging = out_dir / f".{LATEST}.{os.getpid()}"
    try:
        staging.unlink(missing_ok=True)
        staging.symlink_to(folder.name, target_is_directory=True)
    except OSError:
        staging.write_text(folder.name + "\n", encoding="utf-8")
    if latest.is_dir() and not latest.is_symlink():
        raise ReportError(f"{latest} is a folder; remove it so it can point at the newest report")
    os.replace(staging, latest)  # atomic: readers see the old or the new target, never none
