"""Connecting to the database under diagnosis ahead of time, while the rest of the process starts up.

``harness diagnose`` knows the database URL a moment after it starts, and needs a second or
more to import the application, the SDKs and the harness itself before the db stage runs. A
server that accepts TCP and never answers costs the whole connect timeout; started here, that
timeout runs while the imports do. The db stage's connect probe (:func:`probes.db.open_probe_connection`)
then takes the attempt's failure as its own instead of trying again; when the attempt connected,
it is closed and the probe connects as usual. This module imports nothing but the driver, so
the attempt starts a few tenths of a second after the process does.

Work begun ahead on a guess about the connection (DB012's trial run, :func:`probes.db.trial_ahead`)
asks :func:`connected_ahead`, which never waits.
"""

from __future__ import annotations

import re
import threading
from typing import Any

__all__ = ["connect_ahead", "connected_ahead", "failed_ahead"]

_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://")


class _Attempt:
    """One connection attempt in a daemon thread, and its failure once it has come."""

    def __init__(self, database_url: str, connect_timeout: int) -> None:
        import psycopg  # here, not in the thread: the attempt starts as soon as the thread does

        self.failure: BaseException | None = None
        #: The attempt connected (then closed at once).
        self.connected = False
        #: Its failure was handed to the connect probe (:func:`failed_ahead`), which takes it once.
        self.taken = False
        self._connect_timeout = connect_timeout
        self._thread = threading.Thread(
            target=self._attempt, args=(psycopg, _SCHEME.sub("postgresql://", database_url)), daemon=True
        )
        self._thread.name = "harness-connect-ahead"
        self._thread.start()

    def _attempt(self, psycopg: Any, conninfo: str) -> None:
        try:
            with psycopg.connect(
                conninfo, connect_timeout=self._connect_timeout, application_name="masterplan-harness-probe"
            ):
                self.connected = True
        except Exception as exc:  # the connect probe explains it, as it would explain its own attempt's
            self.failure = exc

    def wait(self) -> BaseException | None:
        """The attempt's failure; ``None`` when it connected or has not ended a second past its timeout."""
        self._thread.join(self._connect_timeout + 1.0)
        return None if self._thread.is_alive() else self.failure


_ATTEMPTS: dict[tuple[str, Any], _Attempt] = {}
_LOCK = threading.Lock()


def connect_ahead(database_url: str, timeouts: Any) -> None:
    """Begin connecting to ``database_url`` now (``timeouts``: the run's :class:`harness.config.Timeouts`)."""
    # The probe's own bound: libpq reads 0 as "wait forever" and psycopg's minimum is 2 s.
    attempt = _Attempt(database_url, max(2, int(timeouts.db_connect)))
    with _LOCK:
        _ATTEMPTS[(database_url, timeouts)] = attempt


def failed_ahead(database_url: str, timeouts: Any) -> BaseException | None:
    """How the attempt begun for this URL and these timeouts failed, waiting for it; ``None`` if it did not (or none was begun)."""
    with _LOCK:
        attempt = _ATTEMPTS.get((database_url, timeouts))
        if attempt is None or attempt.taken:
            return None
        attempt.taken = True  # kept, not removed: what connected_ahead answers outlives the probe's turn
    from harness.logs import get_logger

    get_logger("harness.db").debug("connect_ahead_awaited")
    return attempt.wait()


def connected_ahead(database_url: str, timeouts: Any) -> bool:
    """Whether the attempt begun for this URL and these timeouts has connected by now; never waits."""
    with _LOCK:
        attempt = _ATTEMPTS.get((database_url, timeouts))
    return attempt is not None and attempt.connected
