"""`--config`: every command runs someone else's application, named by its own pyproject.toml (the example app atlas)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest

from harness.cassettes import load_meta
from tests.examples.runs import script_for, serving

from .test_cli import ROOT, harness

ATLAS = ROOT / "tests" / "examples" / "atlas"
CONFIG = ATLAS / "pyproject.toml"
CASSETTE = ATLAS / "cassettes" / "healthy.yaml"
KEYS = {"ANTHROPIC_API_KEY": "sk-ant-config-5e4d3c2b1a098765", "OPENAI_API_KEY": "sk-proj-config-0a1b2c3d4e5f6789"}
#: Where the reference flow would look: a closed port, so a run that reads it instead of atlas's variable fails.
ELSEWHERE = "postgresql://app:pw@127.0.0.1:1/app"


def _report(folder: Path) -> dict:
    return json.loads((folder / "latest" / "report.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "cwd"),
    [
        (("--config", str(CONFIG), str(ATLAS / "cassettes")), ROOT),
        (("cassettes",), ATLAS),  # no --config: the nearest pyproject.toml holding the table, from here upward
    ],
    ids=["--config", "found-from-cwd"],
)
def test_replay_runs_the_named_application_and_its_cassettes(tmp_path: Path, args: tuple, cwd: Path) -> None:
    """The app's cassette replays through atlas's own code (its lines in the report), on a database its migrations built."""
    result = harness("replay", *args, "--reports-dir", str(tmp_path), cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✔ atlas-healthy" in result.stdout and "1 as expected, 0 not" in result.stdout
    (run,) = _report(tmp_path)["runs"]
    assert run["verdict"] == "pass"
    callers = {call["caller"].partition(":")[0] for call in run["llm"]["calls"]}
    assert callers == {"src/atlas/llm.py"}  # the app's own wrapper made the calls, not the reference flow
    assert {row["table"] for row in run["saved"]} >= {"masterplans", "masterplan_tasks", "discovery_documents"}


@pytest.mark.slow
def test_migrate_then_diagnose_use_the_applications_own_database_variable(postgres_cluster) -> None:
    """`migrate --config` builds atlas's schema from its URL variable; `diagnose --config` then passes and removes its rows."""
    name = postgres_cluster.create_database()
    url = postgres_cluster.info.libpq_dsn(name)
    try:
        env = {"ATLAS_DATABASE_URL": url, "DATABASE_URL": ELSEWHERE, **KEYS}
        migrated = harness("migrate", "--config", str(CONFIG), env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert "is at revision heads" in migrated.stdout and "pw@" not in migrated.stdout
        args = ("--config", str(CONFIG), "--cassette", str(CASSETTE), "--user-id", "u-1", "--session-id", "s-1")
        result = harness("diagnose", *args, "--format", "json", env=env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        data = json.loads(result.stdout)  # the versioned report, as report.json holds it
        assert data["meta"]["target"]["description"].startswith("atlas ")
        (report,) = data["runs"]
        assert report["verdict"] == "pass"
        passed = {check["id"] for check in report["checks"] if check["outcome"] == "passed"}
        assert {"DB004", "DB006", "DB007", "DB011", "PERSIST001", "PERSIST003", "PERSIST008", "PERSIST011"} <= passed
        assert report["canary"]["rows_deleted"] > 100
        with psycopg.connect(url) as connection:  # the app's tables live in its own schema, found by search_path
            left = connection.execute("SELECT count(*) FROM masterplans").fetchone()[0]
        assert left == 0
    finally:
        postgres_cluster.drop_database(name)


@pytest.mark.slow
def test_record_with_config_makes_a_cassette_that_replays_against_the_same_app(tmp_path: Path) -> None:
    """`record --config` runs atlas live against stand-in APIs; the cassette it writes replays to its own verdict."""
    scripted = script_for("atlas")
    with serving(scripted.script) as apis:
        recorded = harness(
            "record",
            scripted.request,
            "--name",
            "atlas-recorded",
            "--out",
            str(tmp_path),
            "--disposable-db",
            "--config",
            str(CONFIG),
            "--anthropic-base-url",
            apis.anthropic.base_url,
            env={**KEYS, "ATLAS_DATABASE_URL": ""},
        )
        assert apis.unused() == {}
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert "Wrote" in recorded.stdout and "expect pass" in recorded.stdout
    path = tmp_path / "atlas-recorded.yaml"
    assert load_meta(path).expect == "pass" and KEYS["ANTHROPIC_API_KEY"] not in path.read_text()
    replayed = harness("replay", "--config", str(CONFIG), str(path))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "1 as expected, 0 not" in replayed.stdout


_BAD_CONFIGS = {
    "missing": (None, "no such file"),
    "no-table": ('[project]\nname = "x"\n', "has no [tool.masterplan-harness] table"),
    "unknown-key": ('[tool.masterplan-harness]\nflow = "app:run"\nflwo = "typo"\n', "unknown key(s): flwo"),
    "flow-not-importable": (
        '[tool.masterplan-harness]\nflow = "no_such_app_4f1e.entry:run"\n',
        "importing no_such_app_4f1e.entry failed",
    ),
}
_COMMANDS = {
    "diagnose": ("diagnose",),
    "replay": ("replay",),
    "record": ("record", "A shop", "--name", "x", "--disposable-db"),
    "migrate": ("migrate",),
}


@pytest.mark.parametrize(
    ("command", "problem"),
    [*(("replay", problem) for problem in _BAD_CONFIGS), *((command, "unknown-key") for command in _COMMANDS)],
)
def test_a_bad_config_is_one_line_naming_the_file_and_exit_2(tmp_path: Path, command: str, problem: str) -> None:
    """A missing file, no table, an unknown key or a flow that will not import: one line naming the file, exit 2."""
    text, expected = _BAD_CONFIGS[problem]
    config = tmp_path / "pyproject.toml"
    if text is not None:
        config.write_text(text)
    # Usable cassettes: replay checks its input before it imports the application, so the flow's import is reached.
    (tmp_path / "cassettes").mkdir()
    shutil.copy(ROOT / "cassettes" / "healthy-task-manager.yaml", tmp_path / "cassettes")
    env = {**KEYS, "DATABASE_URL": ELSEWHERE}
    result = harness(*_COMMANDS[command], "--config", str(config), env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr and str(config) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stdout + result.stderr


def test_harness_config_in_the_environment_names_the_application(tmp_path: Path) -> None:
    """HARNESS_CONFIG stands in for --config (the same one-line refusal proves it was read)."""
    missing = tmp_path / "elsewhere" / "pyproject.toml"
    result = harness("replay", env={"HARNESS_CONFIG": str(missing)}, cwd=tmp_path)
    assert result.returncode == 2 and f"{missing}: no such file" in result.stderr
