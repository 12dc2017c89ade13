"""The durable store: sessions and recent events in SQLite (WAL) in the state directory.

Writes go through one writer thread in batches, so the event loop never waits on the disk
and a warm reuse (which updates ``last_used_at``) costs a queue append, not an fsync. WAL
with ``synchronous=NORMAL`` survives a killed process (the case that matters: ``kill -9``
of the backend); a power cut may lose the last batch, which recovery tolerates because
each runtime also records its workloads where it runs them.

Credentials are never passed to the store: the session rows hold ids, names, states,
times, the tunnel port and the runtime handle only.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import StoreError
from backend.events import Event
from backend.models import Session, SessionState, WorkloadHandle

__all__ = ["Store", "StoredSession"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id   TEXT PRIMARY KEY,
    user         TEXT NOT NULL,
    template     TEXT NOT NULL,
    state        TEXT NOT NULL,
    created_at   REAL NOT NULL,
    last_used_at REAL NOT NULL,
    ready_at     REAL,
    use_count    INTEGER NOT NULL,
    tunnel_host  TEXT,
    tunnel_port  INTEGER,
    handle       TEXT,
    last_error   TEXT,
    is_primary   INTEGER NOT NULL DEFAULT 1,
    credential_names TEXT NOT NULL DEFAULT '',
    pinned       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS flags (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ts         REAL NOT NULL,
    kind       TEXT NOT NULL,
    session_id TEXT,
    user       TEXT,
    message    TEXT NOT NULL,
    data       TEXT NOT NULL
);
"""

_UPSERT = """
INSERT INTO sessions (session_id, user, template, state, created_at, last_used_at, ready_at,
                      use_count, tunnel_host, tunnel_port, handle, last_error, is_primary,
                      credential_names, pinned)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(session_id) DO UPDATE SET
    state=excluded.state, last_used_at=excluded.last_used_at, ready_at=excluded.ready_at,
    use_count=excluded.use_count, tunnel_host=excluded.tunnel_host,
    tunnel_port=excluded.tunnel_port, handle=excluded.handle, last_error=excluded.last_error,
    is_primary=excluded.is_primary, credential_names=excluded.credential_names,
    pinned=excluded.pinned
"""

_COLUMNS_ADDED = {
    "credential_names": "TEXT NOT NULL DEFAULT ''",
    "pinned": "INTEGER NOT NULL DEFAULT 0",
}
"""Columns later versions added: a store written by an older podwarden gains them."""

_KEEP_EVENTS = 2000
TOUCH_DELAY = 0.25
"""Seconds reuse touches wait before they are written together (see ``Store.touch``)."""


@dataclass(frozen=True)
class StoredSession:
    """A session row as read back at start-up."""

    session_id: str
    user: str
    template: str
    state: SessionState
    created_at: float
    last_used_at: float
    ready_at: float | None
    use_count: int
    tunnel_host: str | None
    tunnel_port: int | None
    handle: WorkloadHandle | None
    last_error: str | None
    is_primary: bool
    credential_names: tuple[str, ...] = ()
    """The names (never the values) of the credentials its workload was started with."""
    pinned: bool = False


_Op = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class _AfterCommit:
    """A callback the writer runs once the batch it arrived in is committed."""

    callback: Callable[[], object]


class Store:
    """SQLite file with one writer thread; reads at start-up happen on the caller's thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[_Op | _AfterCommit | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.failed_batches = 0
        """Write batches lost to an error (disk full, file removed) since the start."""
        self._events_written = 0
        self._touches: dict[str, tuple[float, int, str]] = {}
        self._touch_lock = threading.Lock()
        self._touch_queued = False

    def open(self) -> None:
        """Create the file and schema; start the writer thread."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # 0600 before SQLite opens it: its -wal and -shm files copy the main file's mode
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            os.chmod(self.path, 0o600)
            connection = self._connect()
            connection.executescript(_SCHEMA)
            present = {row[1] for row in connection.execute("PRAGMA table_info(sessions)")}
            for column, declaration in _COLUMNS_ADDED.items():
                if column not in present:
                    connection.execute(f"ALTER TABLE sessions ADD COLUMN {column} {declaration}")
            connection.commit()
            connection.close()
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the state store {self.path}: {e}") from e
        self._thread = threading.Thread(target=self._run, name="podwarden-store", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def _run(self) -> None:
        connection = self._connect()
        try:
            while True:
                op = self._queue.get()
                batch: list[_Op | _AfterCommit | None] = [op]
                while len(batch) < 500:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = False
                wrote = False
                committed: list[Callable[[], object]] = []
                try:
                    with connection:
                        for item in batch:
                            if item is None:
                                stop = True
                            elif isinstance(item, _AfterCommit):
                                committed.append(item.callback)
                            else:
                                item(connection)
                                wrote = True
                except sqlite3.Error as e:  # keep serving; health reports it
                    self._error = e
                    self.failed_batches += 1
                else:
                    if wrote:  # a real commit went through: the disk takes writes again
                        self._error = None
                for callback in committed:
                    callback()
                if stop:
                    return
        finally:
            connection.close()

    @property
    def healthy(self) -> bool:
        """False while writes fail (disk full, file removed); true again after the next
        write that commits."""
        return self._error is None

    @property
    def last_error(self) -> str | None:
        return str(self._error) if self._error else None

    def _submit(self, op: _Op | _AfterCommit) -> None:
        if self._thread is None:
            raise StoreError("the state store is not open")
        self._queue.put(op)

    def save(
        self,
        session: Session,
        *,
        is_primary: bool = True,
        port: int | None = None,
        credential_names: tuple[str, ...] = (),
    ) -> None:
        """Queue an upsert of the session's current values (a snapshot, taken now).

        ``port`` is the tunnel port the session holds before its tunnel opens.
        """
        tunnel = session.tunnel
        row = (
            session.session_id,
            session.user,
            session.template,
            session.state.value,
            session.created_at,
            session.last_used_at,
            session.ready_at,
            session.use_count,
            tunnel.host if tunnel else None,
            tunnel.port if tunnel else port,
            json.dumps(session.handle.to_dict()) if session.handle else None,
            session.last_error,
            1 if is_primary else 0,
            ",".join(credential_names),
            1 if session.pinned else 0,
        )

        def op(c: sqlite3.Connection) -> None:
            c.execute(_UPSERT, row)

        self._submit(op)

    def touch(self, session: Session) -> None:
        """Record a reused session's new ``last_used_at`` and ``use_count``, lazily.

        Reuse is the hot path. Touches wait in a dict for ``TOUCH_DELAY`` seconds and are
        then written as one ``executemany`` of a narrow UPDATE: one writer wake-up per
        interval instead of one upsert op per reuse (each of which woke the writer thread
        and made it compete with the event loop for the GIL). A crash loses at most that
        interval of recency, which recovery tolerates. An UPDATE of a row deleted
        meanwhile changes nothing, so ordering against ``delete`` holds; ``flush`` and
        ``close`` write pending touches first.
        """
        with self._touch_lock:
            self._touches[session.session_id] = (
                session.last_used_at,
                session.use_count,
                session.session_id,
            )
            if self._touch_queued:
                return
            self._touch_queued = True
        try:
            asyncio.get_running_loop().call_later(TOUCH_DELAY, self._submit_touches)
        except RuntimeError:  # no loop (a synchronous caller): write with the next batch
            self._submit_touches()

    def _submit_touches(self) -> None:
        if self._thread is not None:
            self._queue.put(self._write_touches)

    def _write_touches(self, c: sqlite3.Connection) -> None:
        with self._touch_lock:
            rows = list(self._touches.values())
            self._touches.clear()
            self._touch_queued = False
        if rows:
            c.executemany(
                "UPDATE sessions SET last_used_at = ?, use_count = ? WHERE session_id = ?", rows
            )

    def delete(self, session_id: str) -> None:
        """Queue the removal of a session row."""

        def op(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))

        self._submit(op)

    def add_event(self, event: Event) -> None:
        """Queue an event row; old rows beyond the last 2000 are pruned now and then.

        The session document an event carries (``data["session"]``, for live front
        ends) is not kept: the sessions table holds the session."""
        data = {k: v for k, v in event.data.items() if k != "session"}
        row = (
            event.ts,
            event.kind.value,
            event.session_id,
            event.user,
            event.message,
            json.dumps(data, default=str),
        )
        self._events_written += 1
        prune = self._events_written % 200 == 0

        def op(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO events (ts, kind, session_id, user, message, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
            if prune:
                c.execute(
                    "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?",
                    (_KEEP_EVENTS,),
                )

        self._submit(op)

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._submit_touches()

        def settle() -> None:
            if not done.done():
                done.set_result(None)

        self._submit(_AfterCommit(lambda: loop.call_soon_threadsafe(settle)))
        await done

    def load_sessions(self) -> list[StoredSession]:
        """Every session row, for recovery at start-up."""
        connection = self._connect()
        try:
            rows = connection.execute(
                "SELECT session_id, user, template, state, created_at, last_used_at, ready_at,"
                " use_count, tunnel_host, tunnel_port, handle, last_error, is_primary,"
                " credential_names, pinned"
                " FROM sessions"
            ).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"cannot read the state store {self.path}: {e}") from e
        finally:
            connection.close()
        result = []
        for row in rows:
            handle = WorkloadHandle.from_dict(json.loads(row[10])) if row[10] else None
            try:
                state = SessionState(row[3])
            except ValueError:
                state = SessionState.FAILED
            result.append(
                StoredSession(
                    row[0],
                    row[1],
                    row[2],
                    state,
                    row[4],
                    row[5],
                    row[6],
                    row[7],
                    row[8],
                    row[9],
                    handle,
                    row[11],
                    bool(row[12]),
                    tuple(n for n in (row[13] or "").split(",") if n),
                    bool(row[14]),
                )
            )
        return result

    def set_flag(self, name: str, value: str | None) -> None:
        """Queue setting (or, with None, clearing) a pool-wide flag such as the drain."""

        def op(c: sqlite3.Connection) -> None:
            if value is None:
                c.execute("DELETE FROM flags WHERE name = ?", (name,))
            else:
                c.execute(
                    "INSERT INTO flags (name, value) VALUES (?, ?)"
                    " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    (name, value),
                )

        self._submit(op)

    def load_flags(self) -> dict[str, str]:
        """Every pool-wide flag, read at start-up."""
        connection = self._connect()
        try:
            return dict(connection.execute("SELECT name, value FROM flags").fetchall())
        except sqlite3.Error as e:
            raise StoreError(f"cannot read the state store {self.path}: {e}") from e
        finally:
            connection.close()

    def recent_events(self, limit: int = 200) -> list[dict[str, Any]]:
        """The last ``limit`` stored events, oldest first."""
        connection = self._connect()
        try:
            rows = connection.execute(
                "SELECT id, ts, kind, session_id, user, message, data FROM events"
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        finally:
            connection.close()
        return [
            {
                "seq": r[0],
                "ts": r[1],
                "kind": r[2],
                "session_id": r[3],
                "user": r[4],
                "message": r[5],
                "data": json.loads(r[6]),
            }
            for r in reversed(rows)
        ]

    def close(self) -> None:
        """Commit what is queued and stop the writer thread."""
        if self._thread is not None:
            self._queue.put(self._write_touches)
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None
