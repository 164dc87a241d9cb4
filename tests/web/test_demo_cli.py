"""``graven demo``: serves the web demo and prints its URL; ``--story`` tells the story in the terminal."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

GRAVEN = Path(sys.executable).parent / "graven"


def graven(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GRAVEN, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_demo_serves_and_prints_its_url(tmp_path: Path) -> None:
    """The URL printed answers; Ctrl+C stops it cleanly and leaves a log that verifies."""
    folder = tmp_path / "demo"
    proc = subprocess.Popen(
        [GRAVEN, "demo", "--host", "127.0.0.1", "--port", "0", "--dir", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Graven demo running at http://127.0.0.1:"), first
        url = first.split()[4]
        page = httpx.get(url + "try", timeout=15)
        assert 200 == page.status_code
        assert "Try it yourself" in page.text
        assert 200 == httpx.get(url + "console", timeout=15).status_code
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert 0 == proc.returncode, err
    assert "Graven demo stopped." in out
    log = folder / "log-1"
    verified = graven("--db", str(log / "trail.db"), "--signing-key", str(log / "signing.key"), "verify", cwd=tmp_path)
    assert 0 == verified.returncode, verified.stdout + verified.stderr


def test_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = graven("demo", "--port", str(port), "--dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert 2 == done.returncode
    assert [f"graven: --port: cannot listen on 127.0.0.1:{port}: Address already in use"] == done.stderr.splitlines()


def test_folder_of_other_files_is_never_wiped(tmp_path: Path) -> None:
    """The demo recreates its folder, so it refuses one that holds anything of someone else's."""
    (tmp_path / "notes.txt").write_text("mine")
    done = graven("demo", "--port", "0", "--dir", str(tmp_path), cwd=tmp_path)
    assert 2 == done.returncode
    assert "notes.txt" in done.stderr
    assert 1 == len(done.stderr.splitlines())
    assert (tmp_path / "notes.txt").exists()


def test_bad_port_is_refused(tmp_path: Path) -> None:
    done = graven("demo", "--port", "70000", cwd=tmp_path)
    assert 2 == done.returncode
    assert "--port" in done.stderr


def test_help_names_the_options(tmp_path: Path) -> None:
    text = graven("demo", "--help", cwd=tmp_path).stdout
    for option in ("--host", "--port", "--story", "--dir"):
        assert option in text
