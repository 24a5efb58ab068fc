"""`harness diagnose` as a subprocess against real disposable databases and stand-in APIs."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from harness.cassettes import load_meta
from harness.config import sqlalchemy_url
from tests.support.scenarios import healthy_script
from tests.support.wire_server import EmbeddingReply, ErrorReply, MessageReply, WireScript, WireServer

from .test_cli import ROOT, harness

KEYS = {"ANTHROPIC_API_KEY": "sk-ant-diag-7c1e2f3a4b5d6e7f", "OPENAI_API_KEY": "sk-proj-diag-1a2b3c4d5e6f7a8b"}
IDS = ("--user-id", "user-9", "--session-id", "sid-9")


def _run_of(stdout: str) -> dict:
    """The diagnosis in `--format json` output: the one run of the versioned report (report.json)."""
    (run,) = json.loads(stdout)["runs"]
    return run


def _diagnose(database_url: str, *args: str, extra_env: dict | None = None):
    env = {"DATABASE_URL": database_url, **KEYS, **(extra_env or {})}
    result = harness("diagnose", "--format", "json", *args, env=env, timeout=60)
    assert "Traceback" not in result.stdout + result.stderr
    return result, (_run_of(result.stdout) if result.stdout.strip().startswith("{") else None)


def _count(database_url: str, sql: str) -> int:
    with psycopg.connect(sqlalchemy_url(database_url).replace("+psycopg", ""), connect_timeout=2) as connection:
        return connection.execute(sql).fetchone()[0]


def _canaries(database_url: str) -> int:
    return _count(
        database_url,
        "SELECT (SELECT count(*) FROM discovery_documents) + (SELECT count(*) FROM masterplans)"
        " + (SELECT count(*) FROM masterplan_tasks)",
    )


@pytest.mark.slow
def test_healthy_environment_passes_every_stage_and_leaves_no_rows(flow_database_url: str) -> None:
    """With recorded answers on a migrated database, every stage passes, exit 0, and the canary rows are gone."""
    result, report = _diagnose(flow_database_url, *IDS)
    assert result.returncode == 0, result.stdout[-3000:]
    assert report["verdict"] == "pass"
    ran = {check["id"] for check in report["checks"] if check["outcome"] == "passed"}
    assert {"DB006", "DB011", "PERSIST001", "PERSIST004", "PERSIST008", "PERSIST009"} <= ran
    # The outside design's checks: a provoked failed save reached the caller, nothing flushed was left
    # uncommitted, every generated document was found saved, and no app code failed around the calls.
    assert {"PERSIST011", "PERSIST012", "PERSIST013", "LLM101", "PARSE101", "PERSIST101"} <= ran
    # diagnose starts a scratch cluster of its own only for DB012: the migrations built the models there.
    db012 = next(check for check in report["checks"] if check["id"] == "DB012")
    assert db012["outcome"] == "passed", db012
    assert report["canary"]["rows_deleted"] > 100 and report["canary"]["session_id"].startswith("harness-canary-")
    assert _canaries(flow_database_url) == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "cassette", ["masterplan-dependency-cycle", "masterplan-max-tokens", "discovery-missing-fields"]
)
def test_failing_runs_still_remove_their_canary_rows(flow_database_url: str, cassette: str) -> None:
    """A run that fails at parse or llm after writing rows still deletes them, and says so."""
    path = ROOT / "cassettes" / f"{cassette}.yaml"
    result, report = _diagnose(flow_database_url, *IDS, "--cassette", str(path))
    assert result.returncode == 1
    assert report["verdict"] == load_meta(path).expect  # the cassette replays as recorded (mode and limits too)
    cleanup = next(c for c in report["checks"] if c["id"] == "PERSIST008")
    assert cleanup["outcome"] == "passed"
    assert _canaries(flow_database_url) == 0


@pytest.mark.slow
def test_missing_column_is_named_with_its_table(postgres_cluster, flow_database_url: str) -> None:
    """A schema lacking one column of the models: diagnose names the table and column, exit 1."""
    postgres_cluster.run_sql(
        "ALTER TABLE masterplans DROP COLUMN total_milestones", make_url(flow_database_url).database
    )
    result, report = _diagnose(flow_database_url, *IDS, "--stage", "env", "--stage", "db")
    assert result.returncode == 1
    assert report["first_failure"]["id"] == "DB006"
    (column,) = report["first_failure"]["evidence"]["columns"]
    assert (column["table"], column["column"], column["problem"]) == (
        "public.masterplans",
        "total_milestones",
        "missing",
    )
    text = harness("diagnose", "--stage", "db", env={"DATABASE_URL": flow_database_url, **KEYS})
    assert "DB006" in text.stdout and "public.masterplans.total_milestones missing" in text.stdout


def test_server_that_never_answers_gets_a_verdict_not_a_hang() -> None:
    """A listener that accepts TCP and never answers is DB001 (timeout); the run ends long before psycopg's 130 s default."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        result, report = _diagnose(f"postgresql://app:pw-never-shown@127.0.0.1:{port}/app", *IDS, "--llm", "off")
    assert result.returncode == 1
    assert report["first_failure"]["id"] == "DB001"
    assert report["first_failure"]["evidence"]["error_type"] == "ConnectionTimeout"


def test_wrong_password_is_db002_and_the_password_appears_nowhere(flow_database_url: str, tmp_path: Path) -> None:
    """Wrong password: DB002, and neither the password nor a key shows in output, debug logs or any report file."""
    url = make_url(flow_database_url).set(password="Wr0ng-Pa55word-xyz").render_as_string(hide_password=False)
    result, report = _diagnose(
        url, *IDS, "--llm", "off", extra_env={"HARNESS_REPORTS_DIR": str(tmp_path), "HARNESS_LOG_LEVEL": "debug"}
    )
    assert result.returncode == 1 and report["first_failure"]["id"] == "DB002"
    written = [path.read_text() for path in tmp_path.rglob("*") if path.is_file()]
    assert len(written) >= 4, "diagnose writes report.json, report.md, junit.xml and report.html"
    for output in (result.stdout, result.stderr, *written):
        assert "Wr0ng-Pa55word-xyz" not in output
        assert KEYS["ANTHROPIC_API_KEY"] not in output and KEYS["OPENAI_API_KEY"] not in output
    text = harness("diagnose", "--llm", "off", *IDS, env={"DATABASE_URL": url, **KEYS})
    assert "Wr0ng-Pa55word-xyz" not in text.stdout + text.stderr and "***" in text.stdout


def test_database_without_tables_is_db004_and_column_checks_stay_undecided(postgres_cluster) -> None:
    """An empty database fails DB004; column and privilege checks are blocked by it, not passed."""
    name = postgres_cluster.create_database()
    try:
        result, report = _diagnose(postgres_cluster.url(name), *IDS, "--stage", "db")
    finally:
        postgres_cluster.drop_database(name)
    outcomes = {c["id"]: (c["outcome"], c["reason"]) for c in report["checks"] if c["stage"] == "db"}
    assert outcomes["DB004"][0] == "failed"
    assert outcomes["DB006"] == ("blocked", "by DB004") and outcomes["DB008"] == ("blocked", "by DB004")


def test_one_missing_setting_does_not_hide_the_others_verdicts() -> None:
    """With only DATABASE_URL missing, the keys' checks pass: settings are judged one by one (the flow, blocked, calls nothing)."""
    result = harness("diagnose", "--llm", "full", "--format", "json", *IDS, env={"DATABASE_URL": "", **KEYS})
    report = _run_of(result.stdout)
    outcomes = {(c["id"], c["point"]): c["outcome"] for c in report["checks"] if c["stage"] == "env"}
    assert outcomes[("ENV001", "database-url")] == "failed" and outcomes[("ENV002", "anthropic-key")] == "passed"
    assert outcomes[("ENV006", "anthropic-key")] == "passed" and outcomes[("ENV006", "openai-key")] == "passed"
    assert outcomes[("ENV004", "database-url")] == "not_applicable"


def test_read_only_writes_nothing_and_says_what_it_skipped(flow_database_url: str) -> None:
    """--read-only runs the pre-flight stages and reports the flow's checks as skipped, with why."""
    result, report = _diagnose(flow_database_url, *IDS, "--read-only")
    assert result.returncode == 0
    flow_stages = ("llm", "parse", "persist")
    skipped = [c for c in report["checks"] if c["outcome"] == "skipped" and c["stage"] in flow_stages]
    assert skipped and all("--read-only" in c["reason"] for c in skipped)
    assert _canaries(flow_database_url) == 0


def test_missing_identity_fails_at_auth_with_the_consequence(flow_database_url: str) -> None:
    """Without a user id and session id, auth fails and the flow is blocked, not run."""
    result, report = _diagnose(flow_database_url)
    assert result.returncode == 1
    assert report["verdict"] == "auth:AUTH001"
    assert "ValueError" in report["first_failure"]["message"]


def test_token_identity_is_verified(flow_database_url: str) -> None:
    """A token signed with another secret is AUTH003; the token and secret never show."""
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlLW5vdC12YWxpZA"
    result, report = _diagnose(flow_database_url, "--llm", "off", "--token", token, "--token-secret", "topsecret-42")
    assert report["first_failure"]["id"] == "AUTH003"
    assert "topsecret-42" not in result.stdout + result.stderr


def test_ping_proves_key_and_model_against_the_api(flow_database_url: str) -> None:
    """--llm ping makes one minimal call; a rejected key is LLM003 at the ping point."""
    with WireServer(
        WireScript(anthropic=[MessageReply("p", stop_reason="max_tokens")], openai=[EmbeddingReply()])
    ) as ok:
        env = {"ANTHROPIC_BASE_URL": ok.base_url, "OPENAI_BASE_URL": ok.base_url + "/v1"}
        result, report = _diagnose(flow_database_url, *IDS, "--llm", "ping", extra_env=env)
    assert result.returncode == 0, report["first_failure"]
    (ping,) = [call for call in report["llm"]["calls"] if call["point"] == "ping"]
    assert ping["stop_reason"] == "max_tokens"
    with WireServer(WireScript(anthropic=[ErrorReply.for_status(401)])) as bad:
        result, report = _diagnose(
            flow_database_url, *IDS, "--llm", "ping", extra_env={"ANTHROPIC_BASE_URL": bad.base_url}
        )
    assert result.returncode == 1 and report["verdict"] == "llm:LLM003"
    assert report["first_failure"]["point"] == "ping"


@pytest.mark.slow
def test_full_mode_runs_the_flow_live_and_cleans_up(flow_database_url: str) -> None:
    """--llm full runs discovery and masterplan against the API and removes what it saved."""
    script = healthy_script("clinic_booking").anthropic
    with (
        WireServer(WireScript(anthropic=script)) as anthropic_api,
        WireServer(WireScript(openai=[EmbeddingReply()])) as openai_api,
    ):
        env = {"ANTHROPIC_BASE_URL": anthropic_api.base_url, "OPENAI_BASE_URL": openai_api.base_url + "/v1"}
        result, report = _diagnose(flow_database_url, *IDS, "--llm", "full", extra_env=env)
    assert result.returncode == 0, report["first_failure"]
    calls = report["llm"]["calls"]  # as the wire showed them, named by what they answered
    assert [c["point"] for c in calls if c["kind"] != "embeddings"][:3] == [
        "discovery",
        "masterplan.skeleton",
        "masterplan.batch-1",
    ]
    assert all(c["streamed"] for c in calls if c["kind"] in ("skeleton", "batch"))
    assert all(c["status"] == 200 and c["caller"].startswith("harness/flow/") for c in calls)
    totals = report["llm"]["totals"]
    assert totals["spent_usd"] == totals["cost_usd"] > 0  # live calls: what they cost was spent
    assert _canaries(flow_database_url) == 0


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {"DATABASE_URL": "mysql://a:b@h/d"}, "does not parse"),
        (("--env-file", "/nonexistent/prod.env"), {}, "no such env file"),
        (("--stage", "network"), {}, "unknown stage 'network'"),
        (("--token", "x.y.z"), {}, "--token needs --token-secret"),
        (("--cassette", "/nonexistent.yaml"), {}, "no such file"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args, env, message) -> None:
    """Unparseable DATABASE_URL, missing env file, unknown stage: one clear line, exit 2."""
    result = harness("diagnose", *args, env={"DATABASE_URL": "postgresql://a:b@127.0.0.1:1/d", **env})
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_env_file_wins_over_the_environment(tmp_path: Path) -> None:
    """Settings from --env-file override the process environment (here: a closed port beats a bad scheme)."""
    env_file = tmp_path / "prod.env"
    env_file.write_text("DATABASE_URL=postgresql://app:file-pass-123@127.0.0.1:1/app\n")
    result = harness(
        "diagnose",
        "--env-file",
        str(env_file),
        "--llm",
        "off",
        "--stage",
        "db",
        "--format",
        "json",
        env={"DATABASE_URL": "mysql://ignored/db", **KEYS},
    )
    report = _run_of(result.stdout)
    assert report["first_failure"]["id"] == "DB001" and "file-pass-123" not in result.stdout


@pytest.mark.slow
def test_db012_is_skipped_saying_why_when_no_scratch_postgresql_can_start(flow_database_url: str) -> None:
    """With every disposable provider ruled out, DB012 is skipped with the providers' reasons, never passed."""
    result, report = _diagnose(flow_database_url, *IDS, "--stage", "db", extra_env={"HARNESS_PG_PROVIDER": "docker"})
    db012 = next(check for check in report["checks"] if check["id"] == "DB012")
    assert db012["outcome"] == "skipped" and db012["reason"].startswith("no disposable PostgreSQL")
    assert "docker" in db012["reason"]


def _events(stderr: str) -> list[str]:
    """The names of the run's log events (``--log-format json``: one JSON object a line, as they happened)."""
    names = []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            names.append(event["event"])
    return names


@pytest.mark.slow
def test_on_a_silent_listener_db012s_trial_runs_while_the_connect_waits_with_the_same_verdict(
    silent_listener: int,
) -> None:
    """DB012's trial is begun before the connect attempt is awaited, and DB012 takes it: DB001 fails, DB012 passes.

    The order is the run's own (its debug events, written as they happen), not a clock's.
    """
    env = {"DATABASE_URL": f"postgresql://u:p@127.0.0.1:{silent_listener}/x", **KEYS}
    result = harness(
        "--log-level", "debug", "--log-format", "json", "diagnose", "--llm", "off", "--format", "json",
        env=env, timeout=60,
    )  # fmt: skip

    assert result.returncode == 1, result.stderr[-2000:]
    names = _events(result.stderr)
    assert "trial_begun_ahead" in names, "DB012's trial was not begun ahead"
    assert names.index("trial_begun_ahead") < names.index("connect_ahead_awaited")
    assert "trial_taken_ahead" in names, "DB012 ran a trial of its own after the connect verdict"
    checks = {check["id"]: check for check in _run_of(result.stdout)["checks"]}
    assert checks["DB001"]["outcome"] == "failed"
    assert checks["DB001"]["findings"][0]["evidence"]["error_type"] == "ConnectionTimeout"
    assert checks["DB012"]["outcome"] == "passed" and checks["DB012"]["findings"] == []
