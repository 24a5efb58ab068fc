"""No secret leaks: diagnose, record and replay (subprocesses) with known fake secrets everywhere they could come from.

Secrets are planted in the environment (API keys, a token secret), in the database URL's
password, in a response header and in response bodies. Every byte the commands leave
behind — console output, debug JSON logs, report files, the cassette — is searched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.integration.test_cli import harness
from tests.support import content
from tests.support.wire_server import EmbeddingReply, ErrorReply, MessageReply, WireScript, WireServer

ANTHROPIC_KEY = "sk-ant-api03-FAULTSUITEanthropic0001zz"
OPENAI_KEY = "sk-proj-FAULTSUITEopenai0002zzzzzz"
DB_PASSWORD = "pw-FAULTSUITE-db-0003-zz"
TOKEN_SECRET = "FAULTSUITE-token-secret-0004"
BODY_SECRET = "sk-proj-FAULTSUITEinTHEbody0005zz"
SECRETS = (ANTHROPIC_KEY, OPENAI_KEY, DB_PASSWORD, TOKEN_SECRET, BODY_SECRET)
ROLE = "harness_secret_role"
KIND = "task_manager"


@pytest.fixture
def secret_database_url(postgres_cluster, flow_database_url) -> Iterator[str]:
    """The test database reached as a role whose password is a known fake secret."""
    postgres_cluster.run_sql(f"DROP ROLE IF EXISTS {ROLE}")
    postgres_cluster.run_sql(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{DB_PASSWORD}'")
    try:
        yield make_url(flow_database_url).set(username=ROLE, password=DB_PASSWORD).render_as_string(False)
    finally:
        postgres_cluster.run_sql(f"DROP ROLE IF EXISTS {ROLE}")


def _env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "OPENAI_API_KEY": OPENAI_KEY,
        "DATABASE_URL": database_url,
        "HARNESS_TOKEN_SECRET": TOKEN_SECRET,
        "HARNESS_LOG_LEVEL": "debug",
        "HARNESS_LOG_FORMAT": "json",
        "HARNESS_REPORTS_DIR": str(tmp_path / "reports"),
    }


def _assert_no_secret(*texts: str, files: Path) -> int:
    """No planted secret in any text or any file under ``files``; returns how many files were searched."""
    searched = [p for p in files.rglob("*") if p.is_file()]
    for secret in SECRETS:
        for text in texts:
            assert secret not in text, f"{secret} in console output"
        for path in searched:
            assert secret not in path.read_text(errors="replace"), f"{secret} in {path}"
    return len(searched)


def _plan_script() -> WireScript:
    """A discovery whose body carries a secret, then a plan cut at max_tokens (a failing, row-writing run)."""
    discovery = content.discovery_for(KIND)
    discovery["assumptions"] = [*discovery.get("assumptions", []), f"Staging uses the key {BODY_SECRET}."]
    plan = content.render_reply(content.masterplan_for(KIND))
    return WireScript(
        anthropic=[
            MessageReply(content.render_reply(discovery)),
            MessageReply(content.truncate_text(plan, 0.3), stop_reason="max_tokens"),
        ],
        openai=[
            ErrorReply(401, "invalid_request_error", f"Incorrect API key provided: {OPENAI_KEY}."),
            EmbeddingReply(),
        ],
    )


@pytest.mark.slow
def test_diagnose_with_failing_database_and_debug_logs_leaks_nothing(secret_database_url: str, tmp_path: Path) -> None:
    """diagnose against the secret-password URL, passing and failing, keeps every secret out of output and reports."""
    env = _env(tmp_path, secret_database_url)
    ids = ("--user-id", "user-9", "--session-id", "sid-9")
    healthy = harness("diagnose", "--format", "json", *ids, env=env, timeout=120)
    assert json.loads(healthy.stdout)["verdict"] == "pass", healthy.stdout[-2000:]
    wrong_db = secret_database_url.rsplit("/", 1)[0] + "/no_such_database"
    missing = harness("diagnose", *ids, env={**env, "DATABASE_URL": wrong_db}, timeout=60)
    assert missing.returncode == 1 and "DB003" in missing.stdout
    token = harness("diagnose", "--token", "not.a.token", env=env, timeout=60)
    assert "AUTH003" in token.stdout
    outputs = [r.stdout + r.stderr for r in (healthy, missing, token)]
    assert any('"level"' in r.stderr for r in (healthy, missing, token)), "debug JSON log lines expected"
    _assert_no_secret(*outputs, files=tmp_path)


@pytest.mark.slow
def test_record_then_replay_with_secrets_in_headers_and_bodies_leaks_nothing(tmp_path: Path) -> None:
    """record (a secret in a body, a key echoed in an error) and replay of its cassette leave no secret anywhere."""
    env = _env(tmp_path, "")
    out = tmp_path / "cassettes"
    script = _plan_script()
    with (
        WireServer(WireScript(anthropic=list(script.anthropic))) as anthropic,
        WireServer(WireScript(openai=list(script.openai))) as openai,
    ):
        recorded = harness(
            "record",
            content.request_for(KIND) + f" (api key {ANTHROPIC_KEY})",
            "--name",
            "secrets",
            "--out",
            str(out),
            "--disposable-db",
            "--anthropic-base-url",
            anthropic.base_url,
            "--openai-base-url",
            openai.base_url + "/v1",
            env=env,
            timeout=180,
        )
    cassette = out / "secrets.yaml"
    assert cassette.exists(), recorded.stdout[-2000:] + recorded.stderr[-2000:]
    replayed = harness("replay", "--format", "json", str(cassette), env=env, timeout=120)
    assert "Traceback" not in replayed.stderr
    assert json.loads(replayed.stdout)
    searched = _assert_no_secret(recorded.stdout + recorded.stderr, replayed.stdout + replayed.stderr, files=tmp_path)
    assert searched >= 1
