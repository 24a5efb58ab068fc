"""Shims of the reference flow with one component broken: the faults a team's own code brings.

A shim is what a user writes as the ``flow`` of ``[tool.masterplan-harness]``: it builds its
engine and clients inside the call from the environment the harness sets, runs the chat
command to its end, and releases what it built. Each shim here is the reference flow's
:func:`harness.flow.entry.run` with exactly one component swapped for a broken (or differently
configured) one — the reference flow itself has no hooks. :func:`shim_target` makes the
target the runner is given: the reference flow's table, with this package named as the flow
and as application code, so the harness reports the broken component's own line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from harness.config import Retries, Settings, sqlalchemy_url
from harness.flow.chat import ChatCommands, MasterplanResult
from harness.flow.database import make_engine, make_session_factory
from harness.flow.entry import run_commands
from harness.flow.events import CollectingSink
from harness.flow.llm import LLMClients, build_clients
from harness.target import Target, reference_config

__all__ = [
    "OTHER_DATABASE_ENV",
    "QUICK_RETRIES",
    "run_in_an_outer_transaction",
    "run_on_another_database",
    "run_reading_the_key_from_another_variable",
    "run_with_a_client_that_returns_dicts",
    "run_with_a_session_that_never_commits",
    "run_with_a_swallowing_session",
    "run_with_an_audited_session",
    "run_with_quick_retries",
    "run_without_an_event_sink",
    "run_without_retries",
    "shim_target",
]

#: Waits small enough that no test is slowed by backoff.
QUICK_RETRIES = Retries(attempts=3, base_delay=0.001, max_delay=0.002, jitter=0.5, max_retry_after=1.0)
#: Where :func:`run_on_another_database` reads the database it (wrongly) writes to.
OTHER_DATABASE_ENV = "REPORTING_DATABASE_URL"

_KEEP = object()


def shim_target(flow: Callable[..., Any]) -> Target:
    """The reference flow's target with ``flow`` (a shim of this package) as its flow and as application code."""
    config = dataclasses.replace(
        reference_config(),
        flow=f"{__name__}:{flow.__name__}",
        code=(*reference_config().code, __name__),
        name=f"reference flow via {flow.__name__}",
    )
    return Target(config)


async def _run(
    request: str,
    user_id: str | None,
    session_id: str | None,
    *,
    sessions: Callable[[Any], sessionmaker[Session]] = make_session_factory,
    events: Any = _KEEP,
    retries: Retries | None = None,
    clients: Callable[[Settings], LLMClients] = build_clients,
) -> MasterplanResult:
    """:func:`harness.flow.entry.run`, with the components the shim names replaced."""
    settings = Settings.from_env()

    def commands(llm: LLMClients, engine: Any) -> ChatCommands:
        return ChatCommands(
            llm,
            sessions(engine),
            models=settings.models,
            events=CollectingSink() if events is _KEEP else events,
            retries=retries or settings.retries,
        )

    return await run_commands(settings, commands, request, user_id, session_id, clients=clients)


# -- configuration ------------------------------------------------------------------------------


async def run_without_an_event_sink(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    """The chat command built without its WebSocket manager: progress reaches no one (AUTH004)."""
    return await _run(request, user_id, session_id, events=None)


async def run_without_retries(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    """Every LLM call and unit of work tried once: a transient failure is final."""
    return await _run(request, user_id, session_id, retries=Retries(attempts=1))


async def run_with_quick_retries(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    """Three attempts per call with millisecond backoff (:data:`QUICK_RETRIES`)."""
    return await _run(request, user_id, session_id, retries=QUICK_RETRIES)


# -- llm: the team's code around the SDK ------------------------------------------------------------


def _clients_from_wrong_variable(settings: Settings) -> LLMClients:
    # The team's settings read CLAUDE_API_KEY; the deployment sets ANTHROPIC_API_KEY.
    return build_clients(settings.with_overrides(anthropic_api_key=os.environ.get("CLAUDE_API_KEY")))


async def run_reading_the_key_from_another_variable(
    request: str, user_id: str | None, session_id: str | None
) -> MasterplanResult:
    """The Anthropic client is never built (its key is read from an unset variable): the flow fails before calling."""
    return await _run(request, user_id, session_id, clients=_clients_from_wrong_variable)


class _DictMessages:
    """``messages`` of a client wrapper that hands back plain dicts instead of the SDK's objects."""

    def __init__(self, messages: Any) -> None:
        self._messages = messages

    async def create(self, **kwargs: Any) -> Any:
        message = await self._messages.create(**kwargs)
        return message.model_dump()  # "easier to log": the flow reads .content from it next

    def stream(self, **kwargs: Any) -> Any:
        return self._messages.stream(**kwargs)


class _DictClient:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.messages = _DictMessages(client.messages)

    async def close(self) -> None:
        await self._client.close()


def _dict_clients(settings: Settings) -> LLMClients:
    built = build_clients(settings)
    return LLMClients(anthropic=_DictClient(built.anthropic), openai=built.openai)


async def run_with_a_client_that_returns_dicts(
    request: str, user_id: str | None, session_id: str | None
) -> MasterplanResult:
    """The API answers, and the flow's LLM wrapper fails on what the client wrapper made of the answer (LLM102)."""
    return await _run(request, user_id, session_id, clients=_dict_clients)


# -- persist: the team's session scope ----------------------------------------------------------------


class SwallowingSession(Session):
    """The seed's suspected bug: a commit that fails is rolled back and never re-raised."""

    def commit(self) -> None:
        try:
            super().commit()
        except Exception:  # noqa: BLE001 - the bug this shim is about
            self.rollback()  # swallowed: the caller believes the save succeeded


async def run_with_a_swallowing_session(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    """Sessions whose failed commits are swallowed (PERSIST011; PERSIST013 when the flow goes on to return)."""
    return await _run(
        request,
        user_id,
        session_id,
        sessions=lambda engine: sessionmaker(bind=engine, class_=SwallowingSession, expire_on_commit=False),
    )


class NeverCommittingSession(Session):
    """A commit that only flushes: the rows reach the database and are thrown away when the session closes."""

    def commit(self) -> None:
        self.flush()


async def run_with_a_session_that_never_commits(
    request: str, user_id: str | None, session_id: str | None
) -> MasterplanResult:
    """Sessions that flush and never commit (PERSIST012)."""
    return await _run(
        request,
        user_id,
        session_id,
        sessions=lambda engine: sessionmaker(bind=engine, class_=NeverCommittingSession, expire_on_commit=False),
    )


class AuditedSession(Session):
    """Stamps who changed what before each flush, from ``session.info`` — which nobody fills in."""


@event.listens_for(AuditedSession, "before_flush")
def _stamp_actor(session: Session, flush_context: Any, instances: Any) -> None:
    actor = session.info["actor"]  # KeyError: the request handler was meant to put the actor there
    for row in session.new:
        row.audit_actor = actor


async def run_with_an_audited_session(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    """The team's audit hook raises while the first row is saved: the app's code failed saving (PERSIST101)."""
    return await _run(
        request,
        user_id,
        session_id,
        sessions=lambda engine: sessionmaker(bind=engine, class_=AuditedSession, expire_on_commit=False),
    )


async def run_in_an_outer_transaction(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    """Every session joins one outer transaction that is never committed: each "commit" only releases a savepoint."""
    engine = create_engine(sqlalchemy_url(os.environ["DATABASE_URL"]))
    connection = engine.connect()
    outer = connection.begin()
    try:
        return await _run(
            request,
            user_id,
            session_id,
            sessions=lambda _engine: sessionmaker(
                bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
            ),
        )
    finally:
        outer.rollback()
        connection.close()
        engine.dispose()


async def run_on_another_database(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    """Reads and writes go to the database in :data:`OTHER_DATABASE_ENV`, not the one ``DATABASE_URL`` names."""
    other = make_engine(os.environ[OTHER_DATABASE_ENV])
    try:
        return await _run(request, user_id, session_id, sessions=lambda _engine: make_session_factory(other))
    finally:
        other.dispose()
