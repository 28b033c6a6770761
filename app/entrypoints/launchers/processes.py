"""The dev stack's children: each runs in its own process group with its log under
`logs/`, and is stopped with SIGTERM, then SIGKILL after a grace period, so Ctrl-C leaves
nothing behind. Every readiness wait has a deadline and reports its failure in one line
with a fix."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVICE_USER = "pgserver"  # the unprivileged user pgserver also uses when started as root
STOP_GRACE_S = 8.0


class StackError(RuntimeError):
    """A service could not start. The message is one line: what failed and how to fix it."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def running_as_root() -> bool:
    return os.geteuid() == 0


def service_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root; as root we run it as SERVICE_USER."""
    if not running_as_root():
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return pwd.getpwnam(SERVICE_USER)


def open_path_for(path: Path) -> None:
    """Let the service user traverse to `path` (o+x on each parent), as pgserver does."""
    for parent in [path, *path.parents]:
        with contextlib.suppress(PermissionError):
            mode = parent.stat().st_mode
            parent.chmod(mode | 0o005)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    fix: str,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(
                f"{what} exited with {process.returncode}: {_last_line(log_path)}; {fix}"
            )
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise StackError(f"{what} not ready within {timeout_s:.0f} s: {_last_line(log_path)}; {fix}")


def _last_line(log_path: Path | None) -> str:
    if log_path is None or not log_path.exists():
        return "no log"
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "empty log"


class ProcessGroup:
    """The running children by name, their log files, and the user services run as."""

    def __init__(self, log_dir: Path, *, log_to_console: bool) -> None:
        self.log_dir = log_dir
        self.log_to_console = log_to_console
        self.user = service_user()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        as_service_user: bool = False,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        log_file = self.log_path(name).open("ab")
        self._logs.append(log_file)
        user = self.user if as_service_user else None
        process = subprocess.Popen(
            argv,
            stdout=None if self.log_to_console else log_file,
            stderr=subprocess.STDOUT if not self.log_to_console else None,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd or REPO_ROOT,
            start_new_session=True,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
        self.processes[name] = process
        return process

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def wait_ready(
        self,
        name: str,
        check: Callable[[], bool],
        *,
        timeout_s: float,
        what: str,
        fix: str | None = None,
    ) -> None:
        """Wait for the child `name` to pass `check`; the fix defaults to its log's path."""
        wait_until(
            check,
            timeout_s=timeout_s,
            what=what,
            fix=fix or f"see {self.log_path(name)}",
            process=self.processes[name],
            log_path=self.log_path(name),
        )

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_GRACE_S)

    def kill(self, name: str) -> None:
        """SIGKILL a service's whole process group, as a crash would (drills use this)."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_GRACE_S)

    def stop_all(self) -> None:
        # Reverse start order: the apps first, the databases they use last.
        for name in reversed(list(self.processes)):
            self.stop(name)
        for log_file in self._logs:
            log_file.close()
        self._logs.clear()
