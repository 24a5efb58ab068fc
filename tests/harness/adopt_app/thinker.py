"""A small application with extended thinking, of the kind whose own pytest-recording suite holds cassettes.

Its flow asks Claude for a discovery document through the SDK's beta client (``?beta=true``),
streamed, with thinking on; takes the JSON of the answer's text block and saves it to the
reference schema's ``discovery_documents`` in one unit of work. Settings come from the
environment, as the harness's runner sets them: ``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``
(when a stand-in answers) and ``DATABASE_URL``.
"""

from __future__ import annotations

import json
import os
import uuid

import anthropic
from sqlalchemy.orm import sessionmaker

from harness.flow.database import make_engine, session_scope
from harness.flow.models import DiscoveryDocument

MODEL = "claude-sonnet-4-6"
THINKING = {"type": "enabled", "budget_tokens": 2048}
#: The URL anthropic < 1's beta client called (``/v1/messages?beta=true``), kept when the app moved to a later SDK.
BETA_QUERY = {"beta": "true"}


def ask(request: str) -> str:
    """The text of Claude's answer to ``request``, its thinking left aside."""
    client = anthropic.Anthropic(max_retries=0)
    try:
        with client.beta.messages.stream(
            model=MODEL,
            max_tokens=8192,
            thinking=THINKING,
            messages=[{"role": "user", "content": request}],
            extra_query=BETA_QUERY,
        ) as stream:
            message = stream.get_final_message()
    finally:
        client.close()
    return "".join(block.text for block in message.content if block.type == "text")


def run(request: str, user_id: str | None, session_id: str | None) -> str:
    """``/masterplan``'s first half: the discovery for ``request``, saved; returns its id."""
    discovery = json.loads(ask(request))
    engine = make_engine(os.environ["DATABASE_URL"])
    try:
        row = DiscoveryDocument(
            discovery_id=uuid.uuid4(),
            session_id=session_id or "",
            user_id=user_id or "",
            user_request=request,
            domain=discovery["domain"],
            bounded_contexts=discovery["bounded_contexts"],
            aggregates=discovery["aggregates"],
            value_objects=discovery["value_objects"],
            domain_events=discovery["domain_events"],
            services=discovery["services"],
            assumptions=discovery.get("assumptions"),
            risks=discovery.get("risks"),
            llm_model=MODEL,
        )
        with session_scope(sessionmaker(bind=engine, expire_on_commit=False)) as session:
            session.add(row)
        return str(row.discovery_id)
    finally:
        engine.dispose()
