"""Write feedback events and the request log off the request path.

A request only appends a tuple to an in-memory queue; one background thread inserts what
has queued every ``flush_interval`` seconds in one transaction per table. ``flush()`` writes
synchronously (shutdown, tests). When the database is unreachable the rows wait, up to
``max_pending`` of them; beyond that request-log rows are dropped (and counted) rather than
letting memory grow, while events are kept until the bound and then dropped with an error log.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

log = logging.getLogger(__name__)


class Recorder:
    """Batches inserts into ``recsys_events`` and ``recsys_request_log``."""

    def __init__(self, engine, flush_interval: float = 0.5, max_pending: int = 200_000) -> None:
        self.engine = engine
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._events: deque[dict[str, Any]] = deque()
        self._requests: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()  # one flush at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    # -- producers (request path: append only) -----------------------------------
    def log_request(self, row: dict[str, Any]) -> None:
        if len(self._requests) >= self.max_pending:
            self.dropped += 1
            return
        self._requests.append(row)

    def add_events(self, rows: list[dict[str, Any]]) -> None:
        if len(self._events) + len(rows) > self.max_pending:
            self.dropped += len(rows)
            log.error("event queue full (%d pending): dropped %d event(s)", len(self._events), len(rows))
            return
        self._events.extend(rows)

    # -- writer -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="recsys-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write what is still queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:  # the database may come back: keep the rows and retry next tick
                log.exception("could not write events / request log; retrying in %.1f s", self.flush_interval)

    def flush(self) -> int:
        """Insert everything queued now; returns the number of rows written."""
        import sqlalchemy as sa

        from pipelines.serving.tables import events, request_log

        with self._lock:
            written = 0
            for table, queue in ((events, self._events), (request_log, self._requests)):
                batch = [queue.popleft() for _ in range(len(queue))]
                if not batch:
                    continue
                try:
                    with self.engine.begin() as conn:
                        conn.execute(table.insert(), batch)
                    written += len(batch)
                except sa.exc.OperationalError:  # the database is away: keep everything, in order, for the retry
                    queue.extendleft(reversed(batch))
                    raise
                except sa.exc.DBAPIError:  # a row the database refuses must not block the others forever
                    written += self._insert_one_by_one(table, batch)
            return written

    def _insert_one_by_one(self, table, batch: list[dict[str, Any]]) -> int:
        import sqlalchemy as sa

        written = 0
        for row in batch:
            try:
                with self.engine.begin() as conn:
                    conn.execute(table.insert(), [row])
                written += 1
            except sa.exc.DBAPIError as exc:
                self.dropped += 1
                log.error("dropped a %s row the database refused: %s", table.name, exc.orig)
        return written
