"""Run reports: ``report.json`` (versioned schema), Markdown, JUnit XML and offline HTML.

Every command that runs the flow calls :func:`write_run_reports` once with its runs; it
writes ``reports/<UTC timestamp>-<command>/`` and points ``reports/latest`` at it.
``harness report PATH --format ...`` re-renders a saved report with :func:`load_report`
and :func:`render`.
"""

from harness.reports.build import ReportedRun, RunContext, build_run_report
from harness.reports.schema import REPORT_KIND, SCHEMA_VERSION, RunReport, json_schema
from harness.reports.writer import (
    FORMATS,
    LATEST,
    REPORT_FILES,
    ReportError,
    load_report,
    render,
    write_report_files,
    write_run_reports,
)

__all__ = [
    "FORMATS",
    "LATEST",
    "REPORT_FILES",
    "REPORT_KIND",
    "SCHEMA_VERSION",
    "ReportError",
    "ReportedRun",
    "RunContext",
    "RunReport",
    "build_run_report",
    "json_schema",
    "load_report",
    "render",
    "write_report_files",
    "write_run_reports",
]
