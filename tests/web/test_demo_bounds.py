"""The demo's bounds: only its own host names (DNS rebinding), posts per client a minute, the log's size."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from graven.errors import ValidationError
from graven.web import Sandbox, create_web_app
from graven.web.http import PerClient, check_host_name, served_hosts
from tests.web.conftest import JSON

GRAVEN = Path(sys.executable).parent / "graven"
STORY = 10
VIEW = {"operation": "view_customer", "customer": "c-1042"}


class TestHosts:
    def test_loopback_server(self) -> None:
        hosts = served_hosts("127.0.0.1", 8000)
        for good in ("127.0.0.1:8000", "localhost:8000", "LocalHost:8000", "[::1]:8000", "localhost.:8000"):
            assert hosts.allows(good), good
        for bad in ("evil.example:8000", "127.0.0.1:8001", "127.0.0.1", "", "10.0.0.5:8000", "localhost:80",
                    "127.0.0.1:8000@evil.example", "evil.example"):  # fmt: skip
            assert not hosts.allows(bad), bad

    def test_named_address_and_port_80(self) -> None:
        hosts = served_hosts("192.0.2.10", 80)
        assert hosts.allows("192.0.2.10")
        assert hosts.allows("192.0.2.10:80")
        assert not hosts.allows("192.0.2.11:80")
        assert served_hosts("::1", 9000).allows("[::1]:9000")

    def test_every_interface(self) -> None:
        """Bound to 0.0.0.0: this machine's names, any IP address, and the --allowed-host names, with the port."""
        hosts = served_hosts("0.0.0.0", 8000, ["demo.example", "[2001:db8::1]"])  # noqa: S104
        for good in ("demo.example:8000", f"{socket.gethostname()}:8000", "192.168.1.5:8000", "[2001:db8::5]:8000"):
            assert hosts.allows(good), good
        for bad in ("rebound.evil.example:8000", "demo.example:8001", "demo.example.evil:8000", "192.168.1.5"):
            assert not hosts.allows(bad), bad

    @pytest.mark.parametrize("given", ["http://demo.example", "demo.example:8000", "a/b", "", "-x.example", "a b"])
    def test_allowed_host_must_be_a_name(self, given: str) -> None:
        with pytest.raises(ValidationError, match="--allowed-host: must be a host name or IP address"):
            check_host_name(given)


@contextmanager
def demo(tmp_path: Path, *args: str) -> Iterator[tuple[str, int]]:
    """``graven demo`` in a process of its own on a free port: (its URL, its port)."""
    proc = subprocess.Popen(
        [GRAVEN, "demo", "--port", "0", "--dir", str(tmp_path / "demo"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Graven demo running at"), first + (proc.stderr.read() if proc.stderr else "")
        url = first.split()[4]
        yield url, int(url.rstrip("/").rsplit(":", 1)[1])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_demo_refuses_other_hosts(tmp_path: Path) -> None:
    """A page of another site re-pointing its name at the demo (DNS rebinding) gets 400, and changes nothing."""
    with demo(tmp_path) as (url, port), httpx.Client(base_url=url, timeout=15) as client:
        assert 200 == client.get("/try").status_code
        assert 200 == client.get("/try", headers={"host": f"localhost:{port}"}).status_code
        page = client.get("/try", headers={"host": f"rebind.evil.example:{port}"})
        assert 400 == page.status_code
        assert page.headers["content-type"].startswith("text/html")
        assert "rebind.evil.example" in page.text
        assert "--allowed-host" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        posted = client.post("/try/attempt", data=VIEW, headers={**JSON, "host": f"rebind.evil.example:{port}"})
        assert 400 == posted.status_code
        assert 400 == client.get("/console", headers={"host": f"127.0.0.1:{port + 1}"}).status_code
        assert 'data-counter="total">0<' in client.get("/try").text


def test_demo_on_every_interface_takes_allowed_names(tmp_path: Path) -> None:
    args = ("--host", "0.0.0.0", "--allowed-host", "demo.example")  # noqa: S104
    with demo(tmp_path, *args) as (url, port), httpx.Client(base_url=url, timeout=15) as client:
        for host, status in ((f"demo.example:{port}", 200), (f"127.0.0.1:{port}", 200),
                             (f"evil.example:{port}", 400), (f"demo.example:{port + 1}", 400)):  # fmt: skip
            assert status == client.get("/try", headers={"host": host}).status_code, host


def test_allowed_host_is_checked_before_serving(tmp_path: Path) -> None:
    done = subprocess.run([GRAVEN, "demo", "--port", "0", "--allowed-host", "http://x", "--dir", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert 0 != done.returncode
    assert ["graven: --allowed-host: must be a host name or IP address, without scheme, port or path; got 'http://x'"
            ] == done.stderr.splitlines()  # fmt: skip


class TestPerClient:
    def test_sliding_window(self) -> None:
        now = [100.0]
        window = PerClient(2, 60, clock=lambda: now[0])
        assert (0, 0) == (window.take("a"), window.take("a"))
        assert 60 == window.take("a")
        assert 0 == window.take("b")  # nobody else's requests count against a
        now[0] += 30
        assert 30 == window.take("a")
        now[0] += 30.5
        assert 0 == window.take("a")

    def test_memory_is_bounded(self) -> None:
        window = PerClient(1, 60, max_clients=100)
        for n in range(1000):
            window.take(f"10.0.{n // 256}.{n % 256}")
        assert 100 == len(window._seen)


def test_posts_per_client_are_bounded(sandbox: Sandbox) -> None:
    """Past the limit a client gets 429 with Retry-After (JSON or the UI's page), and nothing is recorded."""
    app = create_web_app(demo=True, sandbox=sandbox, posts_per_minute=3)
    with TestClient(app) as client, TestClient(app, client=("192.0.2.9", 4000)) as other:
        for _ in range(2):
            assert 200 == client.post("/try/attempt", data=VIEW, headers=JSON).status_code
        assert 200 == client.post("/try/persona", data={"persona": "u-1"}, headers=JSON).status_code
        size = sandbox.trail.size
        refused = client.post("/try/attempt", data=VIEW, headers=JSON)
        assert 429 == refused.status_code
        assert int(refused.headers["retry-after"]) > 0
        assert "at most 3 a minute" in refused.json()["error"]
        page = client.post("/try/reset", data={})
        assert 429 == page.status_code
        assert "Too many requests" in page.text
        assert 'class="top"' in page.text  # the UI's own page
        assert 200 == other.post("/try/attempt", data=VIEW, headers=JSON).status_code
        assert size + 1 == sandbox.trail.size
        assert 200 == client.get("/try").status_code  # reading is not limited


def test_log_size_is_bounded_and_reset_frees_it(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "demo", max_entries=STORY + 4)
    try:
        with TestClient(create_web_app(demo=True, sandbox=box)) as client:
            page = client.get("/try").text
            assert f"keeps at most {STORY + 4} entries; it holds {STORY}" in page
            assert "log-full" not in page
            for _ in range(3):  # room for two entries is kept for an attempt that records two
                assert 200 == client.post("/try/attempt", data=VIEW, headers=JSON).status_code
            refused = client.post("/try/attempt", data=VIEW, headers=JSON)
            assert 409 == refused.status_code
            assert "the demo log is full" in refused.json()["error"]
            assert "press Reset" in refused.json()["error"]
            assert STORY + 3 == box.trail.size
            assert "The demo log is full" in client.get("/try").text
            assert 200 == client.post("/try/reset", headers=JSON).status_code
            assert 200 == client.post("/try/attempt", data=VIEW, headers=JSON).status_code
            assert STORY + 1 == box.trail.size
    finally:
        box.close()


def test_story_never_wipes_a_folder_of_other_files(tmp_path: Path) -> None:
    """``graven demo --story --dir D`` removed D whatever it held; now it refuses, like the web demo."""
    (tmp_path / "notes.txt").write_text("mine")
    done = subprocess.run([GRAVEN, "demo", "--story", "--dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert 2 == done.returncode
    assert "holds files that are not the demo's (notes.txt)" in done.stderr
    assert "mine" == (tmp_path / "notes.txt").read_text()
    again = subprocess.run([GRAVEN, "demo", "--story", "--dir", str(tmp_path / "story")], capture_output=True,
                           text=True, timeout=60, check=False)  # fmt: skip
    assert 0 == again.returncode, again.stderr
    rerun = subprocess.run([GRAVEN, "demo", "--story", "--dir", str(tmp_path / "story")], capture_output=True,
                           text=True, timeout=60, check=False)  # fmt: skip
    assert 0 == rerun.returncode, rerun.stderr


def test_forwarded_for_does_not_make_a_new_client(tmp_path: Path) -> None:
    """The limit keys on the socket's address: X-Forwarded-For (uvicorn trusts it from 127.0.0.1 by default)
    does not reset it."""
    with demo(tmp_path) as (url, _), httpx.Client(base_url=url, timeout=15) as client:
        answers = [
            client.post("/try/persona", data={"persona": "u-1"}, headers={**JSON, "x-forwarded-for": f"198.51.100.{n}"})
            for n in range(31)
        ]
    assert [200] * 30 + [429] == [a.status_code for a in answers]
    assert "from 127.0.0.1" in answers[-1].json()["error"]


def test_refusal_page_escapes_the_host(sandbox: Sandbox) -> None:
    app = create_web_app(demo=True, sandbox=sandbox, hosts=served_hosts("127.0.0.1", 8000))
    with TestClient(app) as client:
        page = client.get("/try", headers={"host": "<b>x</b>"})
    assert 400 == page.status_code
    assert "&lt;b&gt;x&lt;/b&gt;" in page.text
    assert "<b>x</b>" not in page.text
