"""Code that imported the parser by name: the wrapper must reach it here too."""

from __future__ import annotations

from .agent import Client, parse_plan


def handle(text: str) -> dict:
    return parse_plan(text)


def ask(prompt: str) -> str | None:
    return Client().complete(prompt)
