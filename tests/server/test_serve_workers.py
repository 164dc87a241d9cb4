"""`graven serve --workers N`: the workers end when their supervisor is killed, and free the port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from graven.server.supervision import SUPERVISOR_ENV, supervisor_from_environment

EXE = Path(sys.executable).with_name("graven")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``pid``, read from /proc/*/stat."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[0] != "Z"


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            return False  # someone still accepts connections there
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a restarted server binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_workers_exit_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """kill -9 of the supervisor: both workers are gone within seconds and the port can be bound again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
    subprocess.run([EXE, "init"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)
    port = free_port()
    with open(tmp_path / "serve.log", "wb") as log:
        supervisor = subprocess.Popen([EXE, "serve", "--workers", "2", "--port", str(port)], cwd=tmp_path, env=env,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2:
            assert supervisor.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, f"two workers did not start: {workers}"
            time.sleep(0.2)
            workers = children_of(supervisor.pid)
        while True:  # the workers serve (the app, and so the watchdog, is set up in each)
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the server did not answer"
            time.sleep(0.2)
        time.sleep(1)  # let the second worker finish its start-up too
        workers = children_of(supervisor.pid)
        assert len(workers) >= 2

        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait(10)
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in workers) or not port_is_free(port):
            assert time.monotonic() < deadline, (
                f"still alive: {[p for p in workers if alive(p)]}; port free: {port_is_free(port)}"
            )
            time.sleep(0.2)
    finally:
        for pid in [supervisor.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            supervisor.wait(10)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_the_watchdog_ends_a_worker_whose_parent_died(tmp_path: Path) -> None:
    """A process whose supervisor died before the kernel could be asked (the race PDEATHSIG leaves)
    is ended by the watchdog: here the supervisor's pid is one that is not its parent at all."""
    script = (
        "import os, signal, sys, time\n"
        "from graven.server.supervision import follow_supervisor\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
        "follow_supervisor(os.getppid() + 10_000_000)\n"  # never this process's parent
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert 7 == done.returncode, done.stderr
    assert time.monotonic() - started < 10
    assert "supervisor" in done.stderr


def test_only_workers_follow_a_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor itself (its own pid in the variable) and a single-process server watch nothing."""
    monkeypatch.setenv(SUPERVISOR_ENV, str(os.getpid()))
    assert supervisor_from_environment() is None
    monkeypatch.delenv(SUPERVISOR_ENV)
    assert supervisor_from_environment() is None
    monkeypatch.setenv(SUPERVISOR_ENV, str(os.getppid()))
    assert os.getppid() == supervisor_from_environment()
