"""The application's functions the tests name as points."""

from __future__ import annotations


def parse_plan(text: str) -> dict:
    """A module-level function other modules import by name."""
    if not text:
        raise ValueError("empty answer")
    return {"text": text}


class Client:
    """An LLM wrapper class."""

    def complete(self, prompt: str) -> str | None:
        return None if prompt == "lose it" else prompt.upper()

    async def acomplete(self, prompt: str) -> str:
        return prompt.lower()

    @staticmethod
    def version() -> str:
        return "1"
