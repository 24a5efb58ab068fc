"""Cassettes as a team's own pytest-recording suite makes them: plain vcrpy, no harness metadata.

They are recorded here, never copied from anywhere: the real ``anthropic`` SDK talks to the
stand-in server (:mod:`tests.support.wire_server`) while vcrpy records with pytest-recording's
usual configuration — vcrpy's default matchers, bodies kept as they came (gzip as ``!!binary``),
only the auth headers filtered (or nothing, for a leaky suite). The answers have the shapes of
real Anthropic recordings: the beta client's ``?beta=true`` URL, extended-thinking streams with
signature deltas and pings, padded ``data:`` lines, compressed JSON bodies, cookies, request and
organization ids. :func:`as_older_vcrpy` rewrites one in the httpx format vcrpy wrote before 6.0.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import yaml

from tests.support.wire_server import MessageReply, WireScript, WireServer

__all__ = [
    "BETA_QUERY",
    "FOREIGN_ANTHROPIC_KEY",
    "MODEL",
    "THINKING",
    "as_older_vcrpy",
    "discovery_reply",
    "record_beta_call",
    "recording_like_a_team",
]

#: The key the team's suite recorded with (a fake of the real key's shape).
FOREIGN_ANTHROPIC_KEY = "sk-ant-api03-TEAMsuiteKEY0000foreign1234"
MODEL = "claude-sonnet-4-6"
THINKING = {"type": "enabled", "budget_tokens": 2048}
#: The query anthropic < 1's beta client put on its URLs (``/v1/messages?beta=true``); later ones send none.
BETA_QUERY = {"beta": "true"}
#: pytest-recording's documented ``vcr_config`` for an API client's suite.
PYTEST_RECORDING_FILTERS = ("authorization", "x-api-key")


@contextmanager
def recording_like_a_team(path: Path, *, filter_headers: tuple[str, ...] = PYTEST_RECORDING_FILTERS) -> Iterator[Any]:
    """Record every HTTP call of the block into ``path`` as a pytest-recording suite does (no harness involved)."""
    import vcr

    recorder = vcr.VCR(record_mode="once", filter_headers=list(filter_headers))
    with recorder.use_cassette(str(path)) as cassette:
        yield cassette


def discovery_reply(
    text: str, *, thinking: str = "The user wants a domain model; list the contexts first."
) -> MessageReply:
    """A thinking model's answer holding ``text``, its stream written with padded data lines."""
    return MessageReply(text, thinking=thinking, padded=True, chunk_chars=300)


def record_beta_call(
    path: Path,
    reply: MessageReply,
    *,
    prompt: str,
    stream: bool,
    filter_headers: tuple[str, ...] = PYTEST_RECORDING_FILTERS,
) -> None:
    """One beta Messages call with thinking, as a team's test of its own client records it (gzip when not streamed)."""
    with WireServer(WireScript(anthropic=[reply]), compress=True) as server:
        client = anthropic.Anthropic(api_key=FOREIGN_ANTHROPIC_KEY, base_url=server.base_url, max_retries=0)
        try:
            with recording_like_a_team(path, filter_headers=filter_headers):
                arguments: dict[str, Any] = {
                    "model": MODEL,
                    "max_tokens": 8192,
                    "thinking": THINKING,
                    "messages": [{"role": "user", "content": prompt}],
                    "extra_query": BETA_QUERY,
                }
                if stream:
                    with client.beta.messages.stream(**arguments) as answer:
                        answer.get_final_message()
                else:
                    client.beta.messages.create(**arguments)
        finally:
            client.close()


def as_older_vcrpy(source: Path, target: Path) -> None:
    """``source`` rewritten in the httpx format vcrpy wrote before 6.0: ``status_code``, ``headers``, ``content``."""
    data = yaml.safe_load(source.read_text())
    for interaction in data["interactions"]:
        response: Mapping[str, Any] = interaction["response"]
        body = response["body"]["string"]
        interaction["response"] = {
            "status_code": response["status"]["code"],
            "http_version": "HTTP/1.1",
            "headers": response["headers"],
            # That format kept the decoded text and the content-encoding header both.
            "content": body if isinstance(body, str) else _decoded(body),
        }
    target.write_text(yaml.safe_dump(data, sort_keys=False))


def _decoded(body: bytes) -> str:
    import gzip

    return (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode("utf-8")
