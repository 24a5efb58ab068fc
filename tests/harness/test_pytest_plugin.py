"""The pytest plugin as a third-party suite uses it: record a flow cassette once, then replay it offline."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cassettes import load_meta, scan_cassette
from tests.support import content
from tests.support.scenarios import healthy_script
from tests.support.wire_server import EmbeddingReply, WireScript, WireServer

pytest_plugins = ["pytester"]

KIND = "clinic_booking"

THIRD_PARTY_TESTS = """
import socket

import pytest
import sqlalchemy as sa

from harness.config import sqlalchemy_url
from harness.pytest_plugin import NetworkBlocked

REQUEST = {request!r}


@pytest.mark.flow_cassette("clinic.yaml")
def test_plan_is_saved(flow_runner, flow_database_url):
    run = flow_runner.run(REQUEST)
    assert run.report.verdict == "pass", run.report.first_failure
    assert run.report.verdict == flow_runner.expected
    engine = sa.create_engine(sqlalchemy_url(flow_database_url))
    try:
        with engine.connect() as connection:
            tasks = connection.execute(sa.text("select count(*) from masterplan_tasks")).scalar_one()
    finally:
        engine.dispose()
    assert tasks >= 100


@pytest.mark.flow_cassette("clinic.yaml")
def test_changed_prompt_is_a_mismatch(flow_runner):
    run = flow_runner.run(REQUEST.replace("physiotherapy", "dental"))
    first = run.report.first_failure
    assert (first.id, first.point) == ("LLM012", "discovery")
    assert "messages[0].content" in first.evidence["mismatch"]


def test_network_is_blocked(block_network):
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("api.anthropic.com", 443), timeout=1)


@pytest.mark.flow_cassette("never-recorded.yaml")
def test_missing_cassette(flow_runner):
    flow_runner.run()
"""


@pytest.fixture(autouse=True)
def inner_sessions_share_the_cluster(monkeypatch: pytest.MonkeyPatch, cluster_for_subprocesses: str) -> None:
    """The pytest sessions run here attach to this session's cluster instead of starting their own."""
    monkeypatch.setenv("HARNESS_TEST_DATABASE_URL", cluster_for_subprocesses)


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[WireServer]]:
    """Stand-in APIs serving one healthy flow, reachable through the environment as a recording needs."""
    script = WireScript(anthropic=healthy_script(KIND).anthropic)
    with (
        WireServer(script) as anthropic,
        WireServer(WireScript(openai=[EmbeddingReply()])) as openai,
    ):
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-plugin-000000000000")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-test-plugin-00000000000")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic.base_url)
        monkeypatch.setenv("OPENAI_BASE_URL", openai.base_url + "/v1")
        yield [anthropic, openai]


@pytest.mark.slow
def test_a_third_party_suite_records_once_then_replays_offline(
    pytester: pytest.Pytester, stand_ins: list[WireServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--record-mode=once records the cassette live into a disposable database; the default mode replays it."""
    pytester.makepyfile(test_third_party=THIRD_PARTY_TESTS.format(request=content.request_for(KIND)))
    cassette = pytester.path / "cassettes" / "clinic.yaml"

    recorded = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--record-mode=once", "-k", "plan_is_saved")
    recorded.assert_outcomes(passed=1)
    assert load_meta(cassette).expect == "pass" and scan_cassette(cassette) == []
    assert [len(server.requests) for server in stand_ins] == [len(healthy_script(KIND).anthropic), 1]

    for name in ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name)

    replayed = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    replayed.assert_outcomes(passed=3, failed=1)
    replayed.stdout.fnmatch_lines(["*never-recorded.yaml: no such file (record it with --record-mode=once)*"])
    assert "Traceback" not in replayed.stdout.str()
    assert [len(server.requests) for server in stand_ins] == [
        len(healthy_script(KIND).anthropic),
        1,
    ]  # replay reached no API


def test_plugin_registers_its_option_marker_and_fixtures(pytester: pytest.Pytester) -> None:
    """--record-mode, the flow_cassette marker and the fixtures are there without any conftest."""
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--record-mode*"])
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["*flow_cassette(path)*"])
    result = pytester.runpytest("--fixtures")
    for name in ("flow_runner", "flow_database_url", "block_network", "llm_faults", "flow_record_mode"):
        result.stdout.fnmatch_lines([f"{name}*"])


ATLAS = Path(__file__).resolve().parents[1] / "examples" / "atlas"

ATLAS_SUITE = """
import pytest
import sqlalchemy as sa


@pytest.mark.flow_cassette("atlas.yaml")
def test_atlas_plan_is_saved(flow_runner, flow_target, flow_database_url):
    run = flow_runner.run()
    assert flow_target.config.name == "atlas"
    assert run.report.verdict == flow_runner.expected == "pass", run.report.first_failure
    engine = sa.create_engine(flow_database_url.replace("+psycopg", "+psycopg2"))
    try:
        with engine.connect() as connection:  # atlas's tables, in its own schema, reached through its search_path
            tasks = connection.execute(sa.text("select count(*) from planning.masterplan_tasks")).scalar_one()
    finally:
        engine.dispose()
    assert tasks > 100
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["--harness-config", "ini"])
def test_a_suite_for_another_application_names_it_by_its_config(pytester: pytest.Pytester, how: str) -> None:
    """--harness-config (or the masterplan_harness_config ini value) makes flow_target, the databases and flow_runner atlas's."""
    pytester.makepyfile(test_atlas=ATLAS_SUITE)
    (pytester.path / "cassettes").mkdir()
    shutil.copy(ATLAS / "cassettes" / "healthy.yaml", pytester.path / "cassettes" / "atlas.yaml")
    config = ATLAS / "pyproject.toml"
    if how == "ini":
        pytester.makeini(f"[pytest]\nmasterplan_harness_config = {config}\n")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    else:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--harness-config={config}")
    result.assert_outcomes(passed=1)


def test_a_bad_harness_config_fails_the_suite_in_one_line(pytester: pytest.Pytester) -> None:
    """A config that cannot be used fails the tests that need the target with one line naming it, no traceback."""
    pytester.makepyfile(test_x="def test_x(flow_target):\n    pass\n")
    missing = pytester.path / "nowhere" / "pyproject.toml"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--harness-config={missing}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{missing}: no such file*"])
    assert "Traceback" not in result.stdout.str()
