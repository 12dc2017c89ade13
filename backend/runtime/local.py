"""The local runtime: each session is a real process on this machine.

Every workload runs in its own process group (``start_new_session``) with its own
directory ``<state_dir>/sessions/<session_id>/``, which holds:

- ``workload.json``: pid, process group, start time (from ``/proc``, to tell our process
  from a later one with the same pid), port, user and template, written right after the
  spawn. Never the environment: credentials reach the workload only through ``env``.
- ``workload.log``: the workload's stdout and stderr. A file, not a pipe, so a workload
  outlives a backend that is ``kill -9``-ed (no SIGPIPE, no full pipe); a tail task copies
  new lines into ``SessionLogs``.

The workload's working directory is ``spec.workdir`` (normally that same directory).

Why it is built the way it is:

- ``subprocess.Popen`` plus a *pidfd* on the event loop, not ``create_subprocess_exec``:
  the same exit watch works for our children and for workloads adopted after a restart
  (which are not our children), without a thread per process; our children are reaped as
  soon as they exit, so none stays a zombie.
- ``stop`` signals the whole group (SIGTERM, grace, SIGKILL) and returns only once no
  process of the group runs, then sweeps processes that left the group but carry the
  session's environment marker (a ``setsid`` helper). See ``procs`` for why zombies that
  are not our children count as gone.
- When a session ends its directory is removed: ``workload.json`` must not survive, or
  recovery would see a workload that is not there; the log lines the TUI shows live on
  in ``SessionLogs``; a Chromium profile is kept for the session's life, not longer.
- A standby workload is claimed (``claim``) by relabelling it: its record in memory and
  ``workload.json`` get the user's session id and user name, and the credentials, when
  the template reads them from a file, are written there. Its directory keeps its name:
  the process's working directory, its ``{workdir}`` arguments and its environment
  marker all point at that path. The claim is verified by reading the record back and
  probing the workload.
- Placeholders in the command are replaced item by item, never through a shell. The raw
  ``{user}`` is refused in a command by the config (a user such as ``/`` or ``--flag``
  would become a path or an option); ``{user_slug}`` is the sanitised form.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from backend.errors import StartError
from backend.logs import SessionLogs
from backend.models import WorkloadHandle, user_slug
from backend.runtime.base import (
    CleanupReport,
    OwnedWorkload,
    PhaseCallback,
    ProbeResult,
    ResourceReport,
    RuntimeHealth,
    WorkloadLostCallback,
    WorkloadSpec,
)
from backend.runtime.checks import check, http_get_status
from backend.runtime.local_usage import GroupUsage, HostUsage
from backend.runtime.local_workload import (
    LogTail,
    Workload,
    read_log_tail,
    write_claim_file,
    write_credentials_file,
)
from backend.runtime.procs import find_marked, group_running, read_proc, signal_group
from backend.templates import Template
from backend.tunnels import Admission, TcpRelay

__all__ = ["LocalRuntime"]

log = logging.getLogger(__name__)

MARKER = "PODWARDEN_RUNTIME_DIR"
"""Environment variable every workload (and its descendants) carries: its runtime dir."""

_KILL_WAIT = 5.0
"""Seconds to wait after SIGKILL before reporting what is left."""


class LocalRuntime:
    """Runs each session's workload as a local process group; see the module docstring."""

    name = "local"

    def __init__(
        self,
        state_dir: Path,
        logs: SessionLogs,
        *,
        host: str = "127.0.0.1",
        avoid_ports: range | None = None,
        admit: Admission | None = None,
    ) -> None:
        """``avoid_ports``: never give a workload a port of this range (the tunnel
        range, so a workload cannot take the port a session's tunnel wants back).
        ``admit``: which local connections a tunnel lets through (``backend.peers``)."""
        self._admit = admit
        self._state_dir = Path(state_dir)
        self._sessions_dir = self._state_dir / "sessions"
        self._logs = logs
        self._host = host
        self._avoid = avoid_ports
        self._workloads: dict[str, Workload] = {}
        self._lost_callback: WorkloadLostCallback | None = None
        self._closed = False
        self._group_usage = GroupUsage()
        self._host_usage = HostUsage()

    # ------------------------------------------------------------------ protocol

    def describe(self) -> str:
        return "local"

    def set_workload_lost_callback(self, callback: WorkloadLostCallback) -> None:
        self._lost_callback = callback

    async def start(self, spec: WorkloadSpec, on_phase: PhaseCallback) -> WorkloadHandle:
        """Spawn the workload; return its handle at once (it is not ready yet)."""
        template = spec.template
        if not template.command:
            raise StartError(f"template {template.name!r} has no command", retryable=False)
        current = self._workloads.get(spec.session_id)
        if current is not None:
            if not current.exited.is_set():
                raise StartError(
                    f"session {spec.session_id} already has a workload (pid {current.pid})",
                    retryable=False,
                )
            # It died and nobody stopped it: clear what is left of it (stragglers in
            # its group, its watch and log tail) before a new one takes its place.
            await self.stop(current.handle(), 0.0)
        on_phase("launching")
        rundir = self._sessions_dir / spec.session_id
        workdir = Path(spec.workdir)
        self._sessions_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        rundir.mkdir(mode=0o700, parents=True, exist_ok=True)
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        port = self._pick_port()
        values = {
            "port": str(port),
            "workdir": str(workdir),
            "session_id": spec.session_id,
            "user": spec.user,
            "user_slug": user_slug(spec.user),
            "login_delay": f"{template.login_delay:g}",
        }
        argv = [_fill(item, values) for item in template.command]
        if template.credentials_file and spec.env:
            write_credentials_file(workdir, template.credentials_file, spec.env)
        env = self._environment(spec, template, values, rundir)
        log_path = rundir / "workload.log"
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            shutil.rmtree(rundir, ignore_errors=True)
            reason = e.strerror or str(e)
            raise StartError(
                f"cannot run {argv[0]!r}: {reason}; check the command of template "
                f"{template.name!r}",
                retryable=False,
            ) from None
        finally:
            os.close(log_fd)
        info = read_proc(proc.pid)  # our unreaped child: /proc/<pid> exists, even if dead
        workload = Workload(
            session_id=spec.session_id,
            user=spec.user,
            template=template.name,
            pid=proc.pid,
            pgid=proc.pid,
            start_ticks=info.start_ticks if info else 0,
            host=self._host,
            port=port,
            rundir=rundir,
            workdir=workdir,
            readiness=template.readiness,
            readiness_path=template.readiness_path,
            keepalive_path=template.keepalive_path,
            proc=proc,
        )
        workload.write_meta()
        self._workloads[spec.session_id] = workload
        workload.tail = LogTail(log_path, spec.session_id, self._logs, from_end=False)
        workload.watch(self._on_exit)
        log.info("session %s: started pid %s on port %s", spec.session_id, proc.pid, port)
        return workload.handle()

    async def wait_ready(
        self, handle: WorkloadHandle, spec: WorkloadSpec, timeout: float, on_phase: PhaseCallback
    ) -> WorkloadHandle:
        workload = self._find(handle)
        if workload is None:
            raise StartError(f"workload {handle.ref} of session {spec.session_id} is gone")
        template = spec.template
        started = time.monotonic()
        deadline = started + timeout
        phase = ""
        detail = "not checked yet"
        while True:
            if workload.exited.is_set() or workload.stopping:
                raise self._early_exit(workload)
            result = await check(
                workload.host,
                workload.port,
                template.readiness,
                template.readiness_path,
                timeout=max(0.05, min(2.0, deadline - time.monotonic())),
            )
            if result.ok:
                if workload.exited.is_set():
                    raise self._early_exit(workload)
                workload.ready = True
                return workload.handle()
            detail = result.detail
            new_phase = "login" if result.listening else "waiting for port"
            if new_phase != phase:
                phase = new_phase
                on_phase(phase)
            now = time.monotonic()
            if now >= deadline:
                raise StartError(
                    f"not ready after {timeout:g}s ({detail})",
                    log_tail=read_log_tail(workload.log_path),
                )
            # Poll fast at first (a start of a few hundred ms must not wait for a slow
            # poll), slower for workloads that take long; a refused connect costs next to
            # nothing, an HTTP request a log line in the workload, so those are rarer.
            # Wake at once if the process exits.
            elapsed = now - started
            interval = 0.01 if elapsed < 2 else 0.025 if elapsed < 10 else 0.1
            if result.listening:
                interval *= 2
            await workload.wait_exit(min(interval, max(0.0, deadline - now)))

    async def probe(self, handle: WorkloadHandle, template: Template) -> ProbeResult:
        workload = self._find(handle)
        if workload is None or not workload.running():
            code = workload.exit_code if workload is not None else None
            text = f" with code {code}" if code is not None else ""
            return ProbeResult(False, f"process {handle.ref} exited{text}", gone=True)
        info = read_proc(workload.pid)
        if info is not None and info.state in ("T", "t"):
            # Its socket still accepts connections (the kernel does that), but nothing
            # would ever answer them.
            return ProbeResult(False, f"process {handle.ref} is stopped (SIGSTOP or traced)")
        result = await check(
            workload.host, workload.port, template.readiness, template.readiness_path, 5.0
        )
        return ProbeResult(result.ok, result.detail)

    async def keepalive(self, handle: WorkloadHandle, template: Template) -> None:
        path = template.keepalive_path
        if not path:
            return
        try:
            status = await http_get_status(handle.host, handle.port, path, 10.0)
        except (OSError, ValueError) as e:
            raise StartError(f"keepalive {path} failed: {e}") from None
        if not 200 <= status < 300:
            raise StartError(f"keepalive {path} answered HTTP {status}")

    async def claim(self, handle: WorkloadHandle, spec: WorkloadSpec) -> WorkloadHandle:
        """Relabel a running standby workload as ``spec``'s session (id and user), write
        the credentials file if the template has one, and verify; the new handle.
        ``StartError`` if the workload is gone or does not answer."""
        workload = self._find(handle)
        if workload is None or not workload.running() or workload.stopping:
            raise StartError(f"standby workload {handle.ref} is gone")
        template = spec.template
        if template.credentials_file and spec.env:
            write_credentials_file(workload.workdir, template.credentials_file, spec.env)
        write_claim_file(workload.workdir, spec)
        old = workload.session_id
        workload.session_id, workload.user = spec.session_id, spec.user
        workload.write_meta()
        if self._workloads.get(old) is workload:
            del self._workloads[old]
        self._workloads[spec.session_id] = workload
        if workload.tail is not None:
            workload.tail.session_id = spec.session_id
        recorded = Workload.load(workload.rundir / "workload.json")
        if recorded is None or (recorded.session_id, recorded.user, recorded.pid) != (
            spec.session_id,
            spec.user,
            workload.pid,
        ):
            raise StartError(f"the claim of workload {handle.ref} was not recorded")
        result = await check(
            workload.host, workload.port, workload.readiness, workload.readiness_path, 2.0
        )
        if not result.ok or not workload.running():
            raise StartError(f"standby workload {handle.ref} does not answer: {result.detail}")
        return workload.handle()

    async def stop(self, handle: WorkloadHandle, grace: float) -> CleanupReport:
        """SIGTERM the group, wait ``grace``, SIGKILL; return once nothing of it runs."""
        workload = self._find(handle)
        if workload is None:
            workload = Workload.from_handle(handle, self._sessions_dir)
            workload.watch(lambda _: None)
        if workload.stop_task is None:
            workload.stopping = True
            workload.stop_task = asyncio.ensure_future(self._stop(workload, grace))
        return await asyncio.shield(workload.stop_task)

    async def list_owned(self) -> list[OwnedWorkload]:
        """Workloads recorded under ``sessions/`` (adopted when alive, their files removed
        when dead) plus marked processes without a record (spawned just before a crash).

        Dead ones are listed once, with ``alive`` False, and cleaned up; the readiness
        checks of the live ones run concurrently.
        """
        found: dict[str, Workload] = dict(self._workloads)
        if self._sessions_dir.is_dir():
            for rundir in sorted(self._sessions_dir.iterdir()):
                meta = rundir / "workload.json"
                if rundir.name in found or not meta.is_file():
                    continue
                workload = Workload.load(meta)
                if workload is None:
                    log.warning("ignoring unreadable %s", meta)
                    continue
                found[workload.session_id] = workload
        prefix = str(self._sessions_dir) + os.sep
        # A claimed standby keeps the standby's id in its environment: its pid, not that
        # id, says it is recorded already (under the claiming session's id).
        recorded = {(w.pid, w.start_ticks) for w in found.values()}
        for pid, env in find_marked(MARKER, prefix).items():
            session_id = env.get("PODWARDEN_SESSION_ID", "")
            info = read_proc(pid)
            if info is None or not info.pid == info.pgid == info.sid:
                continue  # gone, or a descendant
            if session_id in found or (pid, info.start_ticks) in recorded:
                continue  # recorded already
            workload = Workload.from_environ(pid, info.start_ticks, env, self._host)
            if workload is None:
                continue
            log.warning("session %s: found unrecorded workload pid %s", session_id, pid)
            workload.write_meta()
            found[session_id] = workload
        return list(await asyncio.gather(*(self._report(w) for w in found.values())))

    async def open_tunnel(self, handle: WorkloadHandle, host: str, port: int) -> TcpRelay:
        return await TcpRelay.open(host, port, handle.host, handle.port, admit=self._admit)

    def logs(self, session_id: str) -> list[str]:
        return self._logs.get(session_id)

    async def resources(self, handles: Mapping[str, WorkloadHandle]) -> ResourceReport:
        """Each workload's process group (CPU rate, RSS) and the host, measured with psutil
        in a worker thread (``local_usage``)."""
        groups: dict[str, int] = {}
        for session_id, handle in handles.items():
            workload = self._find(handle)
            if workload is not None and not workload.exited.is_set():
                groups[session_id] = workload.pgid

        def sample() -> ResourceReport:
            return ResourceReport(self._group_usage.sample(groups), self._host_usage.sample())

        return await asyncio.to_thread(sample)

    def health(self) -> RuntimeHealth:
        if self._closed:
            return RuntimeHealth(False, "local runtime is closed")
        live = sum(1 for w in self._workloads.values() if not w.exited.is_set())
        return RuntimeHealth(True, f"{live} local workloads", workloads=live)

    async def close(self) -> None:
        """Stop watching; the workloads keep running and are adopted on the next start."""
        self._closed = True
        for workload in list(self._workloads.values()):
            if workload.stop_task is not None and not workload.stop_task.done():
                try:
                    await workload.stop_task
                except Exception:  # reported by whoever awaited the stop
                    pass
            workload.detach()
        self._workloads.clear()

    # ------------------------------------------------------------------ internals

    def _find(self, handle: WorkloadHandle) -> Workload | None:
        session_id = handle.extra.get("session_id", "")
        workload = self._workloads.get(session_id)
        if workload is not None and str(workload.pid) == handle.ref:
            return workload
        for workload in self._workloads.values():
            if str(workload.pid) == handle.ref:
                return workload
        return None

    def _early_exit(self, workload: Workload) -> StartError:
        tail = read_log_tail(workload.log_path)
        if workload.stopping:
            return StartError("stopped before it was ready", log_tail=tail)
        return StartError(
            "the workload exited before it was ready", exit_code=workload.exit_code, log_tail=tail
        )

    def _on_exit(self, workload: Workload) -> None:
        """The workload's main process ended (and, if our child, was reaped)."""
        if workload.tail is not None:
            workload.tail.poll()
        if workload.stopping or not workload.ready or self._closed:
            return
        code = workload.exit_code
        reason = f"process {workload.pid} exited"
        if code is not None:
            reason += f" with code {code}"
        last = read_log_tail(workload.log_path, 1)
        if last:
            reason += f"; last log line: {last[-1]}"
        log.warning("session %s: %s", workload.session_id, reason)
        if self._lost_callback is not None:
            self._lost_callback(workload.session_id, reason)

    async def _stop(self, workload: Workload, grace: float) -> CleanupReport:
        started = time.monotonic()
        leftovers: list[str] = []
        if workload.owns_group():
            signal_group(workload.pgid, signal.SIGTERM)
            running = await self._wait_group(workload, grace)
            if running:
                log.info(
                    "session %s: still running after %gs grace, killing %s",
                    workload.session_id,
                    grace,
                    running,
                )
                signal_group(workload.pgid, signal.SIGKILL)
                running = await self._wait_group(workload, _KILL_WAIT)
            if running:
                leftovers.append(f"process group {workload.pgid}: pids {running} still run")
        workload.reap()
        # Processes that left the group (setsid) but carry the session's marker.
        strays = list(find_marked(MARKER, str(workload.rundir) + "\0"))
        if strays:
            for pid in strays:
                _kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + _KILL_WAIT
            while strays and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                strays = [p for p in strays if _running(p)]
            if strays:
                leftovers.append(f"processes {strays} outside the group still run")
        workload.detach()
        if self._workloads.get(workload.session_id) is workload:
            del self._workloads[workload.session_id]
        for path in {workload.rundir, workload.workdir}:
            if _is_within(path, self._sessions_dir) and path.exists():
                shutil.rmtree(path, ignore_errors=True)
                if path.exists():
                    leftovers.append(f"directory {path} could not be removed")
        duration = time.monotonic() - started
        log.info(
            "session %s: stopped in %.3fs%s",
            workload.session_id,
            duration,
            f"; leftovers: {leftovers}" if leftovers else "",
        )
        return CleanupReport(duration, tuple(leftovers))

    async def _wait_group(self, workload: Workload, timeout: float) -> list[int]:
        """Wait until no process of the group runs; the pids still running at timeout."""
        deadline = time.monotonic() + timeout
        await workload.wait_exit(timeout)  # the leader usually goes first; no polling
        delay = 0.002
        while True:
            workload.reap()
            running = group_running(workload.pgid)
            if not running or time.monotonic() >= deadline:
                return running
            await asyncio.sleep(delay)
            delay = min(0.05, delay * 2)

    async def _report(self, workload: Workload) -> OwnedWorkload:
        """Adopt a recorded workload that still runs, or clean up after one that does not."""
        alive = workload.running()
        ready = False
        if alive:
            if workload.session_id not in self._workloads:
                self._workloads[workload.session_id] = workload
                workload.tail = LogTail(
                    workload.log_path, workload.session_id, self._logs, from_end=True
                )
                workload.watch(self._on_exit)
                log.info("session %s: adopted pid %s", workload.session_id, workload.pid)
            result = await check(
                workload.host, workload.port, workload.readiness, workload.readiness_path, 1.0
            )
            ready = result.ok
            if ready:  # never downgraded here: a busy moment is not a lost workload
                workload.ready = True
        elif workload.session_id not in self._workloads:
            # Died while nobody watched: clean up now. A dead workload this runtime
            # watches is left to the pool, which stops it (and may still want its log).
            report = await self.stop(workload.handle(), 0.0)
            if report.leftovers:
                log.warning("session %s: leftovers: %s", workload.session_id, report.leftovers)
        return OwnedWorkload(
            session_id=workload.session_id,
            user=workload.user,
            template=workload.template,
            handle=workload.handle(),
            alive=alive,
            ready=ready,
        )

    def _pick_port(self) -> int:
        """A free port for a workload: the kernel's choice, outside ``avoid_ports`` and
        not one given to another live workload (it may not have bound it yet)."""
        taken = {w.port for w in self._workloads.values() if not w.exited.is_set()}
        held: list[socket.socket] = []
        try:
            for _ in range(64):
                sock = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET)
                sock.bind((self._host, 0))
                port = int(sock.getsockname()[1])
                if port in taken or (self._avoid is not None and port in self._avoid):
                    held.append(sock)  # keep it bound so the next bind gets another one
                    continue
                sock.close()
                return port
        finally:
            for sock in held:
                sock.close()
        raise StartError("no free local port for the workload", retryable=True)

    def _environment(
        self, spec: WorkloadSpec, template: Template, values: dict[str, str], rundir: Path
    ) -> dict[str, str]:
        # The backend's own PODWARDEN_* settings (the API token among them) are not the
        # workload's business.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PODWARDEN_")}
        env.update({k: _fill(v, values) for k, v in template.env.items()})
        env.update(spec.env)
        env.update(
            {
                "PODWARDEN_SESSION_ID": spec.session_id,
                "PODWARDEN_USER": spec.user,
                "PODWARDEN_TEMPLATE": template.name,
                "PODWARDEN_PORT": values["port"],
                "PODWARDEN_WORKDIR": values["workdir"],
                MARKER: str(rundir),
            }
        )
        return env


def _fill(item: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        item = item.replace("{" + key + "}", value)
    return item


def _kill(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _running(pid: int) -> bool:
    info = read_proc(pid)
    return info is not None and not info.zombie


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return path.resolve() != root.resolve()
