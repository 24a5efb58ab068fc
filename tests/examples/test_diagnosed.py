"""The harness on applications that are not its own: healthy runs give no finding, each seeded bug its own.

Each example app is diagnosed through the same seam a user's app is: its ``[tool.masterplan-harness]``
table, its own migrations building the template database, its healthy cassette replayed through
its flow with the watchers installed. A seeded bug (:mod:`tests.examples.bugs`) is applied to a copy
of the app, and the harness must name it at its stage with its check ID and the app's own
``file:line`` — with the app's ``points`` configured, and (where attribution differs) without.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cassettes import load_meta
from harness.postgres import DatabaseFactory
from harness.replay import replay_cassette
from harness.target import Target, find_config
from probes.core import Outcome
from tests.examples.bugs import APPS_DIR, BUGS, Bug, apply_bug
from tests.examples.runs import imported, load_app

pytestmark = pytest.mark.slow

#: Bugs in the migrations need a template built by the buggy migrations; the others share the healthy one.
_MIGRATION_BUGS = {name for name, bug in BUGS.items() if bug.file.startswith("migrations/")}


@pytest.fixture(scope="module")
def healthy_templates(postgres_cluster: Any) -> Iterator[dict[str, DatabaseFactory]]:
    """One database factory per app, its template built by the app's own migrations."""
    factories = {}
    for name in ("atlas", "beacon"):
        target = Target(load_app(APPS_DIR / name / "pyproject.toml").config)
        factories[name] = DatabaseFactory(postgres_cluster, prepare_template=target.build_schema)
    yield factories


def _diagnose(pyproject: Path, factory: DatabaseFactory, postgres_cluster: Any) -> Any:
    """Replay the app's healthy cassette through the app at ``pyproject``; the run's report."""
    app = load_app(pyproject)
    meta = load_meta(APPS_DIR / app.name / "cassettes" / "healthy.yaml")
    url = factory.new_database()
    try:
        with imported(app):
            return replay_cassette(
                meta,
                url,
                target=Target(app.config),
                disposable=(lambda: postgres_cluster.url(postgres_cluster.create_database()), factory.drop),
            ).run.report
    finally:
        factory.drop(url)


def _without_points(pyproject: Path) -> Path:
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(re.sub(r"\[tool\.masterplan-harness\.points\].*", "", text, flags=re.S), encoding="utf-8")
    return pyproject


def _line(root: Path, where: tuple[str, str]) -> str:
    """``file:line`` of the line holding ``where``'s text in the app at ``root``."""
    file, text = where
    for number, line in enumerate((root / file).read_text(encoding="utf-8").splitlines(), start=1):
        if text in line:
            return f"{file}:{number}"
    raise AssertionError(f"{text!r} is not in {file}")


@pytest.mark.parametrize("name", ["atlas", "beacon"])
def test_healthy_app_gives_no_finding_at_all(name: str, healthy_templates: Any, postgres_cluster: Any) -> None:
    """A healthy example app replays with zero findings: nothing failed, nothing warned, every stage judged."""
    report = _diagnose(APPS_DIR / name / "pyproject.toml", healthy_templates[name], postgres_cluster)
    assert report.findings == [], [f"{f.id} {f.message}" for f in report.findings]
    ran = {o.check.id for o in report.outcomes if o.outcome is Outcome.PASSED}
    # The checks that prove the app's rows were really saved ran and passed, not merely skipped.
    assert {"DB004", "DB006", "DB007", "DB011", "DB012", "LLM100", "PARSE003", "PERSIST001", "PERSIST002"} <= ran
    assert {"PERSIST003", "PERSIST004", "PERSIST011", "PERSIST012", "PERSIST013"} <= ran


def _expected_location(bug: Bug, root: Path, check: str) -> str | None:
    """The app's own line the finding must name: where its code failed, rolled back, committed or ended."""
    if check in ("LLM101", "PARSE101") and bug.where:
        return _line(root, bug.where)
    return None


@pytest.mark.parametrize("name", sorted(BUGS))
def test_seeded_bug_is_named_at_its_stage_with_the_apps_line(
    name: str, tmp_path: Path, healthy_templates: Any, postgres_cluster: Any
) -> None:
    """Each seeded bug is reported with its check ID at its stage, and the app's own file:line in the finding."""
    bug = BUGS[name]
    pyproject = apply_bug(name, tmp_path)
    root = pyproject.parent
    if name in _MIGRATION_BUGS:
        factory = DatabaseFactory(postgres_cluster, prepare_template=Target(find_config(pyproject)).build_schema)
    else:
        factory = healthy_templates[bug.app]
    report = _diagnose(pyproject, factory, postgres_cluster)

    findings = {f.id: f for f in report.findings}
    assert bug.check in findings, (bug.check, [f"{f.id}: {f.message}" for f in report.findings])
    finding = findings[bug.check]
    if finding.level >= report.fail_level:
        assert report.verdict == f"{finding.stage.value}:{bug.check}"
    else:  # a warning (the double commit): reported, without failing the run
        assert report.verdict == "pass"
    text = f"{finding.message} {finding.evidence}"
    location = _expected_location(bug, root, bug.check)
    if location is not None:
        assert location in text, text
    if bug.check in ("PERSIST011", "PERSIST012", "PERSIST009", "LLM102"):
        assert bug.file in text, text  # the scope that swallowed, the unit that never committed, the inner commit
    if bug.check == "PERSIST005":
        assert "get_discovery (src/atlas/services/discovery_agent.py:" in text  # the load point that returned it
    if bug.check == "DB006":
        column = re.search(r"has no column (\w+)", bug.says).group(1)  # type: ignore[union-attr]
        assert column in finding.message
    if bug.check == "DB011":
        assert "20251112_0002" in finding.message and "20251119_0003" in finding.message


@pytest.mark.parametrize("name", sorted(n for n, bug in BUGS.items() if bug.check in ("LLM102", "PERSIST005", "LLM101")))
def test_seeded_bug_is_found_without_points(
    name: str, tmp_path: Path, healthy_templates: Any, postgres_cluster: Any
) -> None:
    """With no points configured, the bug is still named at the stage its code failed in, with the app's line."""
    bug = BUGS[name]
    pyproject = _without_points(apply_bug(name, tmp_path))
    report = _diagnose(pyproject, healthy_templates[bug.app], postgres_cluster)
    expected = bug.check_without_points or bug.check
    first = report.first_failure
    assert first is not None and first.id == expected, [f"{f.id}: {f.message}" for f in report.findings]
    assert bug.where is not None
    assert _line(pyproject.parent, bug.where) in f"{first.message} {first.evidence}"
    if expected == "PARSE101":
        assert "The LLM answered (end_turn" in first.message  # the last good exchange, as evidence
