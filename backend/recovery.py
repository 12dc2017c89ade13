"""Start-up reconciliation of the store with what the runtime really runs.

After a crash (``kill -9`` of the backend) the workloads keep running on their own. At the
next start every workload the runtime owns is matched with the store:

- known to the store and alive: re-adopted with the same id, user and (when still free)
  tunnel port; one that was still starting finishes its start;
- an unclaimed standby: re-adopted as a standby, up to its template's ``standby`` count
  (so a restart does not throw warm workloads away and start them again);
- alive but unknown to the store (the backend died between spawning and writing): adopted
  from what the workload records about itself, or stopped (``unknown_workloads``);
- known to the store as ending (terminating, failed): stopped;
- more than the pool's capacity: the least recently used are stopped;
- in the store as live but gone from the runtime: marked vanished and kept for people to
  read.

Nothing keeps running that the pool does not know about.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.events import EventKind
from backend.models import STANDBY_USER, Session, SessionState
from backend.pool import SessionPool
from backend.runtime.base import OwnedWorkload
from backend.store import StoredSession

__all__ = ["RecoveryReport", "recover"]


@dataclass
class RecoveryReport:
    """What recovery did, by session id."""

    adopted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    """Stored on a target that did not answer: kept, unreachable, until it returns."""


async def recover(pool: SessionPool, *, adopt_unknown: bool = True) -> RecoveryReport:
    """Reconcile store and runtime; call once before the pool takes requests."""
    report = RecoveryReport()
    stored = {s.session_id: s for s in (pool.store.load_sessions() if pool.store else [])}
    reachable = getattr(pool.runtime, "list_reachable", None)
    unlisted: set[str] = set()
    if reachable is not None:  # several targets: a lost one must not stop the start
        owned, unlisted = await reachable()
    else:
        owned = await pool.runtime.list_owned()
    for workload in [w for w in owned if pool.is_replaced(w.handle)]:
        pool.remove_replaced(workload.handle)  # replaced elsewhere during an outage
    owned = [w for w in owned if not pool.is_replaced(w.handle)]
    owned_ids = {w.session_id for w in owned}
    max_sessions = pool.settings.pool.max_sessions

    def recency(w: OwnedWorkload) -> float:
        row = stored.get(w.session_id)
        return row.last_used_at if row else 0.0

    keep: list[tuple[OwnedWorkload, StoredSession | None]] = []
    users: dict[str, int] = {}
    standbys: dict[str, int] = {}
    # Users' sessions first, most recently used first; standbys take what room is left.
    for workload in sorted(owned, key=lambda w: (w.user != STANDBY_USER, recency(w)), reverse=True):
        row = stored.get(workload.session_id)
        why = _reason_to_stop(pool, workload, row, adopt_unknown)
        if why is None and len(keep) >= max_sessions:
            why = "over capacity after restart (least recently used)"
        per_user = pool.settings.pool.max_sessions_per_user
        if workload.user == STANDBY_USER:
            if why is None:
                wanted = pool.settings.templates[workload.template].standby
                if standbys.get(workload.template, 0) >= wanted:
                    why = f"more standbys than {workload.template}'s standby = {wanted}"
                else:
                    standbys[workload.template] = standbys.get(workload.template, 0) + 1
        elif why is None and per_user is not None and users.get(workload.user, 0) >= per_user:
            why = "over the per-user limit after restart"
        if why is not None:
            await _stop(pool, workload, why)
            report.stopped.append(workload.session_id)
            continue
        users[workload.user] = users.get(workload.user, 0) + 1
        keep.append((workload, row))

    # Sessions that remember a tunnel port claim it before any other takes a free one.
    keep.sort(key=lambda pair: pair[1] is None or pair[1].tunnel_port is None)
    adopted: list[tuple[Session, int | None]] = []
    for workload, row in keep:
        session = _session_from(workload, row)
        port = row.tunnel_port if row else None
        pool.adopt(
            session,
            primary=row.is_primary if row else True,
            port=port,
            credential_names=row.credential_names if row else (),
        )
        pool.apply_policy(session)
        pool.bus.publish_session(
            EventKind.ADOPTED,
            f"{'standby ' if session.standby else ''}{session.session_id} re-adopted after "
            f"restart ({session.state.value})",
            session,
        )
        report.adopted.append(session.session_id)
        adopted.append((session, port))
    pool.finish_adoption()
    for session, port in adopted:
        await pool.activate_adopted(session, port)

    for session_id, row in stored.items():
        if session_id in owned_ids:
            continue
        target = row.handle.extra.get("target") if row.handle is not None else None
        if target in unlisted and row.state.is_live and row.state is not SessionState.STARTING:
            _adopt_unreachable(pool, row, str(target))
            report.unreachable.append(session_id)
            continue
        if target in unlisted and row.state is SessionState.TERMINATING:
            pool.adopt_pending_stop(
                _session_from_row(row, SessionState.TERMINATING), "deleted during an outage"
            )
            report.unreachable.append(session_id)
            continue
        if row.state.is_live:
            gone = _session_from_row(row)
            pool.mark_vanished(gone, "its workload vanished while podwarden was not running")
            pool.bus.publish_session(
                EventKind.VANISHED,
                f"{session_id}: workload vanished while podwarden was down",
                gone,
            )
            report.vanished.append(session_id)
        if pool.store is not None:
            pool.store.delete(session_id)
    return report


def _reason_to_stop(
    pool: SessionPool, workload: OwnedWorkload, row: StoredSession | None, adopt_unknown: bool
) -> str | None:
    if not workload.alive:
        return "workload found dead after restart"
    if workload.template not in pool.settings.templates:
        return f"template {workload.template!r} is no longer configured"
    if row is None:
        return None if adopt_unknown else "unknown to the store (unknown_workloads = delete)"
    if row.state in (SessionState.TERMINATING, SessionState.TERMINATED, SessionState.FAILED):
        return f"it was {row.state.value} before the restart"
    return None


async def _stop(pool: SessionPool, workload: OwnedWorkload, why: str) -> None:
    await pool.stopper.stop(
        workload.handle,
        session_id=workload.session_id,
        user=workload.user,
        why=f"stopped at recovery: {why}",
        verified_kind=EventKind.ORPHAN_REMOVED,
    )
    if pool.store is not None:
        pool.store.delete(workload.session_id)


def _adopt_unreachable(pool: SessionPool, row: StoredSession, target: str) -> None:
    """Keep a stored session of a lost target as it was, unreachable, holding its slot and
    tunnel port: when the target returns it is ready again (``target_back``)."""
    session = _session_from_row(row, SessionState.UNREACHABLE)
    session.phase = f"unreachable: target {target} is lost"
    session.last_error = f"target {target} did not answer at start-up"
    pool.adopt(
        session, primary=row.is_primary, port=row.tunnel_port, credential_names=row.credential_names
    )
    remember = getattr(pool.runtime, "remember", None)
    if remember is not None and row.handle is not None:
        remember(row.handle, row.session_id, row.user)
    pool.bus.publish(
        EventKind.UNREACHABLE,
        f"{row.session_id} kept as unreachable after restart: target {target} is lost",
        session_id=row.session_id,
        user=row.user,
        target=target,
    )


def _session_from_row(row: StoredSession, state: SessionState | None = None) -> Session:
    """A session rebuilt from its row (a new object: its state is its first state)."""
    live = row.state if row.state.is_live else SessionState.READY
    if live is SessionState.UNREACHABLE:  # listed now, so its target answers again
        live = SessionState.READY
    return Session(
        session_id=row.session_id,
        user=row.user,
        template=row.template,
        state=state or live,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        use_count=row.use_count,
        ready_at=row.ready_at,
        handle=row.handle,
        last_error=row.last_error,
        pinned=row.pinned,
    )


def _session_from(workload: OwnedWorkload, row: StoredSession | None) -> Session:
    """The session as it comes back: ready if its workload is, else still starting."""
    state = SessionState.READY if workload.ready else SessionState.STARTING
    if row is not None:
        session = _session_from_row(row, state)
        session.last_error = None
    else:
        session = Session(workload.session_id, workload.user, workload.template, state=state)
    session.handle = workload.handle
    session.phase = "ready" if workload.ready else "resuming start"
    return session
