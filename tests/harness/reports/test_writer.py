"""Report folders, reports/latest, and reading a saved report back (or refusing to, in one line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.reports import LATEST, REPORT_FILES, ReportError, load_report, render, write_run_reports


def test_each_run_gets_a_timestamped_folder_and_latest_follows(replayed, context, tmp_path) -> None:
    """Two runs in the same second get two folders; latest is a relative symlink to the newer one."""
    first = write_run_reports("replay", replayed.values(), meta=context, out_dir=tmp_path)
    second = write_run_reports("replay", replayed.values(), meta=context, out_dir=tmp_path)
    assert first.name == "20250102T030405Z-replay" and second.name == "20250102T030405Z-replay-2"
    assert sorted(p.name for p in second.iterdir()) == sorted(REPORT_FILES.values())
    latest = tmp_path / LATEST
    assert latest.is_symlink() and latest.readlink() == Path(second.name)
    assert load_report(latest) == load_report(second / "report.json")


def test_saved_report_re_renders_identically(replayed, context, tmp_path) -> None:
    """Every file in a report folder is what rendering the loaded report.json gives."""
    folder = write_run_reports("replay", replayed.values(), meta=context, out_dir=tmp_path)
    report = load_report(folder)
    for fmt, name in REPORT_FILES.items():
        assert render(report, fmt) == (folder / name).read_text(), fmt


def test_latest_is_a_text_file_where_symlinks_fail(replayed, context, tmp_path, monkeypatch) -> None:
    """Without symlinks (Windows, some mounts) latest names the folder in a text file, and loads the same."""

    def no_symlinks(self, *args, **kwargs):  # this filesystem has symlinks; simulate one that has none
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(Path, "symlink_to", no_symlinks)
    folder = write_run_reports("replay", replayed.values(), meta=context, out_dir=tmp_path)
    latest = tmp_path / LATEST
    assert not latest.is_symlink() and latest.read_text().strip() == folder.name
    assert load_report(latest).meta.command == "replay"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no report at"),
        ("{not json", "not a harness run report: not JSON"),
        ('{"cassettes": []}', 'it has no "kind": "masterplan-harness/run-report"'),
        (
            '{"kind": "masterplan-harness/run-report", "schema_version": 99}',
            "schema version 99; this harness reads version 2",
        ),
        (  # version 1 had no not_applicable outcome and no spent cost: read as 2 it would be misread
            '{"kind": "masterplan-harness/run-report", "schema_version": 1}',
            "schema version 1; this harness reads version 2",
        ),
        (
            '{"kind": "masterplan-harness/run-report", "schema_version": 2}',
            "not a valid run report: meta: Field required",
        ),
    ],
)
def test_bad_report_paths_are_refused_in_one_line(tmp_path, content, expected) -> None:
    """Missing, non-JSON, non-report, other-version and invalid files raise ReportError with one clear line."""
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ReportError) as caught:
        load_report(path)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and str(path) in message


def test_report_json_is_plain_json_with_versioned_kind(replayed, context, tmp_path) -> None:
    """report.json parses as JSON and leads with kind and schema_version."""
    folder = write_run_reports("replay", replayed.values(), meta=context, out_dir=tmp_path)
    data = json.loads((folder / "report.json").read_text())
    assert list(data)[:2] == ["kind", "schema_version"]
