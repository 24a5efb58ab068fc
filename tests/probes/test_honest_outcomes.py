"""Every check either ran or says why not: nothing unchecked is shown as passed, and a stage blocks only what needs it."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from harness.config import Settings
from harness.runner import FlowRequest, LLMMode, RunOptions, run_flow
from probes import auth
from probes.core import Outcome, Stage
from probes.env import ANTHROPIC_KEY_POINT, DATABASE_URL_POINT, OPENAI_KEY_POINT

from ..integration.test_cli import harness

ANTHROPIC = "sk-ant-api03-honest-1a2b3c4d5e6f"
OPENAI = "sk-proj-honest-6f5e4d3c2b1a"
URL = "postgresql://app:secret-pw@127.0.0.1:1/app"
IDS = ("user-1", "sid-1")


def _outcomes(settings: Settings, *, llm: LLMMode = LLMMode.FULL, **options: object) -> dict[tuple[str, str], object]:
    run = run_flow(
        settings,
        FlowRequest("a to-do app", *IDS),
        options=RunOptions(llm=llm, stages=frozenset({Stage.ENV, Stage.AUTH}), **options),  # type: ignore[arg-type]
    )
    return {(o.check.id, o.point): o for o in run.report.outcomes if o.check.stage in (Stage.ENV, Stage.AUTH)}


def test_an_unset_database_url_is_the_only_url_check_decided() -> None:
    """DATABASE_URL unset: ENV001 fails; its form and placeholder checks are not applicable, never passed."""
    outcomes = _outcomes(Settings(anthropic_api_key=ANTHROPIC, openai_api_key=OPENAI))
    assert outcomes[("ENV001", DATABASE_URL_POINT)].outcome is Outcome.FAILED
    for check in ("ENV004", "ENV005"):
        outcome = outcomes[(check, DATABASE_URL_POINT)]
        assert outcome.outcome is Outcome.NOT_APPLICABLE and outcome.reason == "DATABASE_URL is not set"
    assert outcomes[("ENV002", ANTHROPIC_KEY_POINT)].outcome is Outcome.PASSED, "the keys are judged on their own"


def test_a_placeholder_key_fails_as_such_and_its_shape_is_not_applicable() -> None:
    """A placeholder key is ENV005 at that key; its shape (ENV006) is not applicable there, while the other key's passes."""
    outcomes = _outcomes(Settings(database_url=URL, anthropic_api_key="your-api-key-here", openai_api_key=OPENAI))
    assert outcomes[("ENV005", ANTHROPIC_KEY_POINT)].outcome is Outcome.FAILED
    shape = outcomes[("ENV006", ANTHROPIC_KEY_POINT)]
    assert shape.outcome is Outcome.NOT_APPLICABLE and "placeholder" in (shape.reason or "")
    assert outcomes[("ENV006", OPENAI_KEY_POINT)].outcome is Outcome.PASSED
    assert outcomes[("ENV005", DATABASE_URL_POINT)].outcome is Outcome.PASSED


def test_a_wrongly_shaped_key_is_env006_at_that_key_only() -> None:
    """Swapped keys: ENV006 fails at each key's own point, named by its variable."""
    outcomes = _outcomes(Settings(database_url=URL, anthropic_api_key=OPENAI, openai_api_key=ANTHROPIC))
    for point, variable in ((ANTHROPIC_KEY_POINT, "ANTHROPIC_API_KEY"), (OPENAI_KEY_POINT, "OPENAI_API_KEY")):
        outcome = outcomes[("ENV006", point)]
        assert outcome.outcome is Outcome.WARNED and outcome.findings[0].evidence["variable"] == variable


def test_llm_off_skips_the_key_checks_and_needs_no_key() -> None:
    """--llm off: every key check is skipped with the reason; missing keys fail nothing."""
    settings = Settings(database_url=URL)
    run = run_flow(
        settings, FlowRequest("a to-do app", *IDS), options=RunOptions(llm=LLMMode.OFF, stages=frozenset({Stage.ENV}))
    )
    keys = [o for o in run.report.outcomes if o.point in (ANTHROPIC_KEY_POINT, OPENAI_KEY_POINT)]
    assert len(keys) == 6
    assert all(o.outcome is Outcome.SKIPPED and "--llm off" in (o.reason or "") for o in keys)
    assert run.report.verdict == "pass"


def test_replayed_answers_make_the_key_checks_not_applicable() -> None:
    """--llm replay: the keys are not used, so their checks say so instead of passing on stand-in keys."""
    outcomes = _outcomes(
        Settings(database_url=URL, anthropic_api_key="sk-ant-replay-0000000000000000"), llm=LLMMode.REPLAY
    )
    keys = {key: o for key, o in outcomes.items() if key[1] in (ANTHROPIC_KEY_POINT, OPENAI_KEY_POINT)}
    assert len(keys) == 6 and all(o.outcome is Outcome.NOT_APPLICABLE for o in keys.values())
    assert all("cassette" in (o.reason or "") for o in keys.values())


def test_auth003_is_not_applicable_without_a_token() -> None:
    """No bearer token given: AUTH003 says so, and the ids are still judged."""
    outcomes = _outcomes(Settings(database_url=URL, anthropic_api_key=ANTHROPIC, openai_api_key=OPENAI))
    token = outcomes[("AUTH003", "auth")]
    assert token.outcome is Outcome.NOT_APPLICABLE and "no bearer token" in (token.reason or "")
    assert outcomes[("AUTH001", "auth")].outcome is Outcome.PASSED


def test_a_bad_token_fails_auth003_and_leaves_the_ids_it_should_carry_undecided() -> None:
    """A token that does not verify: AUTH003 fails, and the user and session ids it carries are blocked by it."""
    settings = Settings(database_url=URL, anthropic_api_key=ANTHROPIC, openai_api_key=OPENAI)
    run = run_flow(
        settings,
        FlowRequest("a to-do app", None, None),
        options=RunOptions(
            llm=LLMMode.OFF, stages=frozenset({Stage.AUTH}), token_given=True, token_error="the token has expired"
        ),
    )
    outcomes = {o.check.id: o for o in run.report.outcomes if o.check.stage is Stage.AUTH and o.point == "auth"}
    assert outcomes["AUTH003"].outcome is Outcome.FAILED
    assert outcomes["AUTH001"].outcome is Outcome.BLOCKED and outcomes["AUTH001"].reason == "by AUTH003"


def _hs256(claims: dict[str, str], secret: str) -> str:
    """An HS256 JWT, built the way any JWT library builds one."""
    import base64
    import hashlib
    import hmac
    import json

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + part(json.dumps(claims).encode())
    return head + "." + part(hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest())


def test_a_good_token_passes_auth003() -> None:
    """A token that verifies: AUTH003 passed (it was checked), and the ids it carries passed."""
    identity = auth.identity_from_token(_hs256({"sub": "user-7", "sid": "sid-7"}, "s3cret"), "s3cret")
    run = run_flow(
        Settings(database_url=URL),
        FlowRequest("a to-do app", identity.user_id, identity.session_id),
        options=RunOptions(llm=LLMMode.OFF, stages=frozenset({Stage.AUTH}), token_given=True),
    )
    outcomes = {o.check.id: o.outcome for o in run.report.outcomes if o.point == "auth"}
    assert outcomes["AUTH003"] is Outcome.PASSED and outcomes["AUTH001"] is Outcome.PASSED


def test_llm_ping_needs_the_keys_not_the_database() -> None:
    """--llm ping with DATABASE_URL unset still makes its call (here to a closed port: LLM010), not blocked by ENV001."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: a refused connection, at once
    settings = Settings(anthropic_api_key=ANTHROPIC, anthropic_base_url=f"http://127.0.0.1:{port}")
    run = run_flow(settings, FlowRequest("a to-do app", *IDS), options=RunOptions(llm=LLMMode.PING))
    ping = [o for o in run.report.outcomes if o.point == "ping"]
    assert ping and any(o.outcome is Outcome.FAILED for o in ping)
    assert not any("ENV001" in (o.reason or "") for o in ping)
    assert "LLM010" in {f.id for o in ping for f in o.findings}


@pytest.mark.slow
def test_a_placeholder_key_does_not_hide_a_wrong_database_password(flow_database_url: str, tmp_path: Path) -> None:
    """One env file with a placeholder key and a wrong password: both ENV005 and DB002 are reported."""
    wrong = make_url(flow_database_url).set(password="Wr0ng-pw-honest").render_as_string(hide_password=False)
    env_file = tmp_path / "prod.env"
    env_file.write_text(f"DATABASE_URL={wrong}\nANTHROPIC_API_KEY=your-api-key-here\nOPENAI_API_KEY={OPENAI}\n")
    result = harness(
        "diagnose", "--env-file", str(env_file), "--llm", "full", "--user-id", "u", "--session-id", "s",
        "--format", "json", env={"HARNESS_REPORTS_DIR": str(tmp_path / "reports")},
    )
    assert result.returncode == 1, result.stderr[-2000:]
    (run,) = json.loads(result.stdout)["runs"]
    failed = {(c["id"], c["point"]) for c in run["checks"] if c["outcome"] == "failed"}
    assert ("ENV005", ANTHROPIC_KEY_POINT) in failed and ("DB002", "db") in failed


def test_nothing_unchecked_is_shown_with_a_tick() -> None:
    """With no settings and no token, the doctor output ticks none of ENV002-ENV006 or AUTH003, and says why."""
    result = harness(
        "diagnose", "--llm", "off",
        env={"DATABASE_URL": "", "ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": "", "HARNESS_AUTH_TOKEN": ""},
    )
    assert result.returncode == 1
    for check in ("ENV002", "ENV003", "ENV004", "ENV005", "ENV006", "AUTH003"):
        assert f"✔ {check}" not in result.stdout, result.stdout
    assert "not applicable — DATABASE_URL is not set" in result.stdout
    assert "skipped — --llm off" in result.stdout
    assert "not applicable — no bearer token given" in result.stdout
