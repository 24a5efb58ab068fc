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

__all__ = ["ProvokedFailure", "failing_writes", "stopped_at"]


class _Refusal(Exception):
    """The stand-in for a driver error inside :class:`ProvokedFailure`."""


class ProvokedFailure(DBAPIError):
    """A write the harness made fail on purpose (a diagnosis, not a real database error)."""

    def __init__(self, table: str, statement: str | None = None) -> None:
        super().__init__(statement, None, _Refusal(f"write to {table} refused by masterplan-harness (provoked failure)"))
        self.table = table


@contextmanager
def failing_writes(table: str) -> Iterator[list[ProvokedFailure]]:
    """Every INSERT, UPDATE or DELETE on ``table`` (a ``Table.fullname``) fails inside the block.

    Yields the list of the failures raised, so the caller can see where each one ended up.
    """
    raised: list[ProvokedFailure] = []

    def refuse(conn: Any, clauseelement: Any, multiparams: Any, params: Any, execution_options: Any) -> None:
        if isinstance(clauseelement, UpdateBase) and getattr(clauseelement.table, "fullname", None) == table:
            failure = ProvokedFailure(table, str(clauseelement)[:200])
            raised.append(failure)
            raise failure

    event.listen(Engine, "before_execute", refuse)
    try:
        yield raised
    finally:
        event.remove(Engine, "before_execute", refuse)


def stopped_at(exc: BaseException, code: Any) -> Any:
    """Where an exception stopped travelling up: the outermost frame of the application's code it reached.

    An exception's traceback grows a frame for every frame it passes through on the way up, so
    the first of its frames that is the application's is where it was caught (and, for one that
    never reached the caller, swallowed). ``None`` when none of its frames is the application's.
    """
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame.f_code
        if code.owns(frame.co_filename):
            return code.location(frame.co_filename, tb.tb_lineno, frame.co_name)
        tb = tb.tb_next
    return None
