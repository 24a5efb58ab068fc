"""A failure provoked inside the application's own unit of work, to see whether it reaches the caller.

A session scope that swallows exceptions (logs, rolls back, returns as if all went well)
looks healthy on every run where nothing fails. :func:`failing_writes` makes every
write to one table fail for the duration of a block — every write, not only the first, so
an application that retries still ends up failing — with :class:`ProvokedFailure`, a
``DBAPIError`` like the database's own refusals: handlers written for database errors
treat it as one, and no retry policy counts it as transient.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase

__all__ = ["ProvokedFailure", "failing_writes"]


class _Refusal(Exception):
    """The stand-in for a driver error inside :class:`ProvokedFailure`."""


class ProvokedFailure(DBAPIError):
    """A write the harness made fail on purpose (a diagnosis, not a real database error)."""

    def __init__(self, table: str, statement: str | None = None) -> None:
        super().__init__(statement, None, _Refusal(f"write to {table} refused by masterplan-harness (provoked failure)"))
        self.table = table


@contextmanager
def failing_writes(table: str) -> Iterator[None]:
    """Every INSERT, UPDATE or DELETE on ``table`` (a ``Table.fullname``) fails inside the block."""

    def refuse(conn: Any, clauseelement: Any, multiparams: Any, params: Any, execution_options: Any) -> None:
        if isinstance(clauseelement, UpdateBase) and getattr(clauseelement.table, "fullname", None) == table:
            raise ProvokedFailure(table, str(clauseelement)[:200])

    event.listen(Engine, "before_execute", refuse)
    try:
        yield
    finally:
        event.remove(Engine, "before_execute", refuse)
