"""Bounded retries: real SDK errors from the stand-in API, real PostgreSQL errors; sleeps are recorded, not slept."""

from __future__ import annotations

import asyncio

import anthropic
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from harness.config import Retries, sqlalchemy_url
from harness.flow.llm import build_clients, create_message
from harness.flow.retry import Attempt, backoff_delay, is_transient_db_error, retry_async
from harness.sdk import error_class
from tests.support.wire_server import ErrorReply, MessageReply, WireScript

POLICY = Retries(attempts=3, base_delay=2.0, max_delay=5.0, jitter=0.5, max_retry_after=10.0)

#: What the installed SDK raises for a 529: early anthropic 0.x (0.30) has no OverloadedError, only InternalServerError.
OVERLOADED = (error_class(anthropic, "OverloadedError") or anthropic.InternalServerError).__name__


def _call_with_retries(settings, policy: Retries = POLICY) -> tuple[list[Attempt], list[float], object]:
    """One real create_message call through the retry loop; returns the attempts, the sleeps asked for, the outcome."""
    attempts: list[Attempt] = []
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:  # recorded instead of slept: no test waits
        sleeps.append(seconds)

    async def run() -> object:
        clients = build_clients(settings)
        try:
            return await retry_async(
                lambda: create_message(clients, model="claude-sonnet-4-6", system="s", prompt="p", max_tokens=100),
                point="discovery",
                stage="llm",
                policy=policy,
                observe=attempts.append,
                sleep=sleep,
            )
        except Exception as exc:
            return exc
        finally:
            await clients.anthropic.close()
            await clients.openai.close()

    return attempts, sleeps, asyncio.run(run())


def test_backoff_grows_exponentially_within_its_jitter_and_cap() -> None:
    """Waits double per attempt, are cut by at most the jitter fraction, and never exceed max_delay."""
    assert [backoff_delay(POLICY, n, rand=lambda: 0.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 5.0, 5.0]
    assert [backoff_delay(POLICY, n, rand=lambda: 1.0) for n in (1, 2)] == [1.0, 2.0]


def test_overloaded_then_rate_limited_then_answered_takes_three_attempts(stand_in_apis) -> None:
    """529 backs off, 429 waits exactly its retry-after, the third attempt answers; usage only on the answer."""
    settings = stand_in_apis(
        WireScript(
            anthropic=[
                ErrorReply.for_status(529),
                ErrorReply.for_status(429, headers={"retry-after": "3"}),
                MessageReply("{}", input_tokens=11, output_tokens=7),
            ]
        )
    )
    attempts, sleeps, answer = _call_with_retries(settings)
    assert [(a.number, a.outcome, a.error_type) for a in attempts] == [
        (1, "retry", OVERLOADED),
        (2, "retry", "RateLimitError"),
        (3, "ok", None),
    ]
    assert 1.0 <= sleeps[0] <= 2.0 and sleeps[1] == 3.0
    assert [a.wait_s for a in attempts[:2]] == sleeps and attempts[1].retry_after_s == 3.0
    assert (attempts[2].input_tokens, attempts[2].output_tokens) == (11, 7) and answer.output_tokens == 7


def test_retry_after_longer_than_the_budget_fails_at_once(stand_in_apis) -> None:
    """A 429 asking for 30 s, beyond max_retry_after, is not waited for: one attempt, given up, retry-after kept."""
    settings = stand_in_apis(WireScript(anthropic=[ErrorReply.for_status(429, headers={"retry-after": "30"})]))
    attempts, sleeps, outcome = _call_with_retries(settings)
    assert type(outcome).__name__ == "RateLimitError"
    assert [(a.outcome, a.retry_after_s) for a in attempts] == [("gave_up", 30.0)] and sleeps == []


def test_permanent_errors_are_not_retried(stand_in_apis) -> None:
    """A rejected key (401) fails on the first attempt."""
    attempts, sleeps, outcome = _call_with_retries(stand_in_apis(WireScript(anthropic=[ErrorReply.for_status(401)])))
    assert type(outcome).__name__ == "AuthenticationError" and len(attempts) == 1 and sleeps == []


def test_attempts_are_bounded(stand_in_apis) -> None:
    """Three server errors in a row: three attempts, two waits, the last error raised."""
    settings = stand_in_apis(WireScript(anthropic=[ErrorReply.for_status(500)] * 3))
    attempts, sleeps, outcome = _call_with_retries(settings)
    assert type(outcome).__name__ == "InternalServerError"
    assert [a.outcome for a in attempts] == ["retry", "retry", "gave_up"] and len(sleeps) == 2


@pytest.mark.slow
def test_database_errors_are_classified_from_real_failures(flow_database_url, postgres_cluster) -> None:
    """A refused connection and a serialization failure are transient; a missing database and bad SQL are not."""

    def error_of(url: str, sql: str = "SELECT 1") -> DBAPIError:
        engine = create_engine(sqlalchemy_url(url), connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as connection:
                connection.execute(text(sql))
        except DBAPIError as exc:
            return exc
        finally:
            engine.dispose()
        raise AssertionError("no error")

    refused = error_of("postgresql://nobody:x@127.0.0.1:1/none")
    serialization = error_of(
        flow_database_url,
        "DO $$ BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = 'serialization_failure'; END $$",
    )
    missing = error_of(flow_database_url.rsplit("/", 1)[0] + "/no_such_database_here")
    bad_sql = error_of(flow_database_url, "SELECT * FROM no_such_table")
    assert is_transient_db_error(refused) and is_transient_db_error(serialization)
    assert not is_transient_db_error(missing) and not is_transient_db_error(bad_sql)
