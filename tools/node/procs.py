"""Long-running processes of a cluster, recorded by their real PID (so another process, such as
`python -m tools.node down`, can stop them later) and stopped by process group."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import time
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the parent (pytest) dies without tearing
    # down, the kernel kills the process too.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), which tells a
    recorded PID from a reused one; None if there is no such process (or only its zombie)."""
    try:
        os.waitpid(pid, os.WNOHANG)  # reaps it if it is our exited child
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


class Processes:
    """`die_with_parent`: for a fixture's processes; a node brought up from the shell outlives
    the command that started it."""

    def __init__(self, logs: Path, die_with_parent: bool = True) -> None:
        self.logs = logs
        self.die_with_parent = die_with_parent
        self.procs: dict[str, tuple[int, int | None]] = {}  # name -> (pid, start time)
        self._popen: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        log = open(self.logs / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        finally:
            log.close()
        self._popen[name] = proc
        self.procs[name] = (proc.pid, start_time(proc.pid))
        return proc.pid

    def to_json(self) -> dict:
        return {name: list(entry) for name, entry in self.procs.items()}

    @classmethod
    def from_json(cls, logs: Path, data: dict) -> Processes:
        procs = cls(logs, die_with_parent=False)
        procs.procs = {name: (entry[0], entry[1]) for name, entry in data.items()}
        return procs

    def alive(self, name: str) -> bool:
        pid, started = self.procs[name]
        proc = self._popen.get(name)
        if proc is not None:
            return proc.poll() is None
        return started is not None and start_time(pid) == started

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = (self.logs / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        for name in self.procs:
            if not self.alive(name):
                raise RuntimeError(
                    f"{name} exited during startup; its log "
                    f"({self.logs / (name + '.log')}) ends:\n{self.log_tail(name)}"
                )

    def stop(self, name: str, timeout: float = 15) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout` (kube-apiserver may outlive
        SIGTERM by a minute), then SIGKILL whatever is left in the group."""
        pid, _ = self.procs[name]
        if self.alive(name):
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.alive(name) and time.monotonic() < deadline:
                time.sleep(0.1)
                self._reap(name)
            _signal_group(pid, signal.SIGKILL)
        _signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (self.alive(name) or _group_alive(pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
            self._reap(name)
        if self.alive(name) or _group_alive(pid):
            raise RuntimeError(f"{name} (pid {pid}) still running after SIGKILL")

    def _reap(self, name: str) -> None:
        proc = self._popen.get(name)
        if proc is not None:
            proc.poll()

    def stop_all(self) -> None:
        """Newest first; every process is tried even if one fails to stop."""
        errors = []
        for name in reversed(list(self.procs)):
            try:
                self.stop(name)
            except RuntimeError as err:
                errors.append(str(err))
        self.procs.clear()
        self._popen.clear()
        if errors:
            raise RuntimeError("; ".join(errors))


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dump(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
