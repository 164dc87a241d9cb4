"""A log per tenant: independent logs in one database (SQLite and the real PostgreSQL server), and
the real HTTP server keeping each log's API keys to that log, whatever a key holder tries."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import graven
from graven.errors import ConfigError, StoreError, ValidationError
from graven.rotation import rotate_key
from graven.store import open_store
from graven.store.logs import select_log
from graven.testing.store_contract import make_event

EXE = Path(sys.executable).with_name("graven")


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One database (a SQLite path, or a PostgreSQL schema URL) to hold several logs."""
    if request.param == "sqlite":
        return str(tmp_path / "trail.db")
    url: str = request.getfixturevalue("pg").schema_url("ten")
    return url


def url_with_log(url: str, log: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}log={log}"


class TestLibrary:
    def test_each_log_has_its_own_tree_origin_checkpoints_and_key(self, database: str, tmp_path: Path) -> None:
        """Two tenants and the database's own log: entries, origins, keys and checkpoints never mix."""
        key = tmp_path / "keys" / "signing.key"
        with graven.open(database, signing_key=key) as own:
            own.record(make_event(1))
        with graven.open(database, signing_key=key, log="tenant-a") as a:
            a.record_many(make_event(n) for n in range(10, 15))
        with graven.open(url_with_log(database, "tenant-b"), signing_key=key) as b:
            b.record(make_event(99, action="file.delete"))
        with (
            graven.open(database, signing_key=key) as own,
            graven.open(database, signing_key=key, log="tenant-a", create=False) as a,
            graven.open(database, signing_key=key, log="tenant-b", create=False) as b,
        ):
            assert (1, 5, 1) == (own.size, a.size, b.size)
            assert len({own.origin, a.origin, b.origin}) == 3
            assert a.origin.endswith("/tenant-a")
            assert len({own.verifier_key, a.verifier_key, b.verifier_key}) == 3
            assert ["evt-00000099"] == [e.data["id"] for e in b.query(limit=10)]
            assert all(e.data["id"].startswith("evt-0000001") for e in a.query(limit=10))
            assert a.verify().ok
            assert b.verify().ok
            bundle = a.prove(0)
            assert graven.verify_bundle(bundle, [graven.keys.load_verifier(a.verifier_key)]).ok
            assert not graven.verify_bundle(bundle, [graven.keys.load_verifier(b.verifier_key)]).ok
        assert key.with_name("signing.tenant-a.key").exists()
        assert key.with_name("signing.tenant-b.key.checkpoint").exists()

    def test_a_tenant_rotates_its_key_alone(self, database: str, tmp_path: Path) -> None:
        """Rotating tenant-a's key leaves tenant-b's key and log untouched."""
        key = tmp_path / "signing.key"
        for log in ("tenant-a", "tenant-b"):
            with graven.open(database, signing_key=key, log=log) as trail:
                trail.record(make_event(1))
        b_key = key.with_name("signing.tenant-b.key").read_bytes()
        rotation = rotate_key(database, signing_key=key, log="tenant-a", overlap=1)
        assert key.with_name("signing.tenant-a.key.history").exists()
        assert not key.with_name("signing.tenant-b.key.history").exists()
        assert b_key == key.with_name("signing.tenant-b.key").read_bytes()
        with graven.open(database, signing_key=key, log="tenant-a") as a:
            assert rotation.new_key == a.verifier_key
            assert a.verify().ok

    def test_a_tenant_is_exported_and_forgotten_alone(self, database: str, tmp_path: Path) -> None:
        """A tenant's personal data keys are its own: forgetting a subject in one log leaves the same
        subject's values in another log readable."""
        key = tmp_path / "signing.key"
        personal = graven.PersonalData(("email",), ("customer",))
        event = make_event(3, targets=[{"type": "customer", "id": "c-1"}])
        for log in ("tenant-a", "tenant-b"):
            with graven.open(database, signing_key=key, log=log, personal=personal) as trail:
                trail.record(event)
        with graven.open(database, signing_key=key, log="tenant-a", personal=personal) as a:
            a.forget("customer:c-1", reason="erasure request", actor={"type": "user", "id": "dpo"})
            assert a.get(0).data["changes"][0]["new"] != event["changes"][0]["new"]
        with graven.open(database, signing_key=key, log="tenant-b", personal=personal) as b:
            assert event["changes"][0]["new"] == b.get(0).data["changes"][0]["new"]
        assert key.with_name("subject-keys.tenant-a.db").exists()
        assert key.with_name("subject-keys.tenant-b.db").exists()

    @pytest.mark.parametrize(
        ("log", "says"),
        [
            ("Tenant", "lowercase"),
            ("-a", "starting with"),
            ("a" * 41, "1 to 40"),
            ("a/b", "lowercase"),
            ("", "1 to 40"),
        ],
    )
    def test_bad_log_names_are_refused_naming_the_field(
        self, database: str, tmp_path: Path, log: str, says: str
    ) -> None:
        """A bad name is refused before anything is created, naming ``log``."""
        with pytest.raises(ValidationError, match=f"log: .*{says}"):
            graven.open(database, signing_key=tmp_path / "k", log=log)
        assert not (tmp_path / "k").exists()

    def test_url_and_argument_must_agree(self, database: str) -> None:
        """``?log=a`` with ``log="b"`` is refused; given twice in the URL too."""
        with pytest.raises(ValidationError, match="selects"):
            select_log(url_with_log(database, "a"), "b")
        with pytest.raises(ValidationError, match="once"):
            select_log(url_with_log(url_with_log(database, "a"), "a"), None)
        assert select_log(url_with_log(database, "a"), "a") == select_log(database, "a")

    def test_the_cli_selects_a_log(self, database: str, tmp_path: Path) -> None:
        """``--log`` (or ``GRAVEN_LOG``) selects the log for every command; a bad name is one line, exit 2."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
        env |= {"GRAVEN_DB": database, "GRAVEN_SIGNING_KEY": str(tmp_path / "signing.key")}

        def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([EXE, *args], env={**env, **extra}, capture_output=True, text=True, timeout=120,
                                  check=False)  # fmt: skip

        assert 0 == run("--log", "tenant-a", "init").returncode
        assert 0 == run("--log", "tenant-a", "record", "--action", "user.login", "--actor", "u-1").returncode
        assert 0 == run("init", GRAVEN_LOG="tenant-b").returncode
        assert 0 == run("record", "--action", "user.login", "--actor", "u-1", GRAVEN_LOG="tenant-b").returncode
        listed = run("log", "--json", "--log", "tenant-a")
        assert 1 == len(listed.stdout.splitlines())
        bad = run("--log", "A B", "log")
        assert (2, 1) == (bad.returncode, len(bad.stderr.strip().splitlines()))
        assert bad.stderr.startswith("graven: log: must be")
        store = open_store(select_log(database, "tenant-b")[0])
        try:
            assert 1 == store.size()
        finally:
            store.close()


# --- the real server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def two_tenants(database: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`graven serve --logs tenant-a,tenant-b` on a real port; keys per log and role (from the CLI)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
    env |= {"GRAVEN_DB": database, "GRAVEN_SIGNING_KEY": str(tmp_path / "signing.key")}
    keys: dict[str, str] = {}
    for log in ("tenant-a", "tenant-b"):
        subprocess.run([EXE, "--log", log, "init"], env=env, check=True, capture_output=True, timeout=120)
        for role in ("writer", "reader", "admin"):
            made = subprocess.run([EXE, "--log", log, "keys", "create", "--name", f"{log}-{role}", "--role", role],
                                  env=env, check=True, capture_output=True, text=True, timeout=120)  # fmt: skip
            keys[f"{log}/{role}"] = made.stdout.strip()
    port = free_port()
    with open(tmp_path / "serve.log", "wb") as log_file:
        server = subprocess.Popen([EXE, "serve", "--logs", "tenant-a,tenant-b", "--port", str(port),
                                   "--auth-failures", "100"], env=env,
                                  stdout=log_file, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not start"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/logs/tenant-b/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield base, keys
    finally:
        server.terminate()
        server.wait(30)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class TestServer:
    def test_a_key_for_one_log_never_reads_or_writes_another(self, two_tenants: tuple[str, dict[str, str]]) -> None:
        """Every read and write route of tenant-b refuses tenant-a's keys (401, as unknown keys);
        tenant-a's data never shows in tenant-b's answers; the refusals are recorded in tenant-b."""
        base, keys = two_tenants
        secret = {"action": "doc.read", "actor": {"type": "user", "id": "u-1"}, "reason": "tenant-a secret"}
        with httpx.Client(base_url=base, timeout=30) as http:
            posted = http.post("/logs/tenant-a/api/v1/events", json=secret, headers=bearer(keys["tenant-a/writer"]))
            assert 201 == posted.status_code, posted.text
            mine = http.get("/logs/tenant-a/api/v1/entries", headers=bearer(keys["tenant-a/reader"]))
            assert "tenant-a secret" in mine.text
            for role in ("writer", "reader", "admin"):
                key = bearer(keys[f"tenant-a/{role}"])
                for method, path in (
                    ("GET", "/entries"), ("GET", "/entries/0"), ("GET", "/checkpoint"), ("GET", "/export"),
                    ("GET", "/history?target=user:u-1"), ("GET", "/consistency?old=0&new=1"), ("POST", "/events"),
                    ("POST", "/verifications"), ("GET", "/keys"),
                ):  # fmt: skip
                    answer = http.request(method, f"/logs/tenant-b/api/v1{path}", headers=key, json=secret)
                    assert 401 == answer.status_code, (role, path, answer.text)
                    assert "tenant-a secret" not in answer.text
                    assert "unauthorized" == answer.json()["error"]
            theirs = http.get("/logs/tenant-b/api/v1/entries?limit=1000", headers=bearer(keys["tenant-b/reader"]))
            assert 200 == theirs.status_code
            assert "tenant-a secret" not in theirs.text
            denied = [e for e in theirs.json()["entries"] if e["outcome"] == "denied"]
            assert len(denied) >= 27  # each refused attempt above is an entry of tenant-b's own log

    def test_paths_outside_a_log_and_tricks_find_nothing(self, two_tenants: tuple[str, dict[str, str]]) -> None:
        """The root, unknown or differently spelled log names, dot segments and encoded slashes never
        reach a log with a foreign key, and the 404 names no log; no web page is served under a log."""
        base, keys = two_tenants
        key = bearer(keys["tenant-a/admin"])
        with httpx.Client(base_url=base, timeout=30) as http:
            event = {"action": "doc.read", "actor": {"type": "user", "id": "u-2"}, "reason": "tenant-b secret"}
            http.post("/logs/tenant-b/api/v1/events", headers=bearer(keys["tenant-b/writer"]), json=event)
            for path in (
                "/api/v1/entries", "/logs/api/v1/entries", "/logs/TENANT-B/api/v1/entries",
                "/logs/tenant-c/api/v1/entries", "/logs/tenant-a/../tenant-b/api/v1/entries",
                "/logs/tenant-a/%2e%2e/tenant-b/api/v1/entries", "/logs/tenant-a%2f..%2ftenant-b/api/v1/entries",
                "/logs//tenant-b/api/v1/entries", "/logs/tenant-b%00/api/v1/entries",
            ):  # fmt: skip
                request = http.build_request("GET", path, headers=key)
                request.url = request.url.copy_with(raw_path=path.encode())
                answer = http.send(request)
                assert answer.status_code in (401, 404), (path, answer.status_code)
                assert "tenant-b secret" not in answer.text
                assert "tenant-b" not in answer.text or answer.status_code == 401
            for page in ("/logs/tenant-a/", "/logs/tenant-a/console", "/logs/tenant-a/entries"):
                answer = http.get(page, follow_redirects=False)  # no web UI under a prefix: API only
                assert (404, "application/json") == (answer.status_code, answer.headers["content-type"])


class TestDatabaseRoles:
    def test_a_tenants_writer_role_cannot_read_another_tenant(
        self, tmp_path: Path, request: pytest.FixtureRequest
    ) -> None:
        """`graven --log tenant-a pg grant ROLE --writer` grants on tenant-a's schema only: the role
        writes tenant-a, and PostgreSQL does not let it see tenant-b's schema at all."""
        pg = request.getfixturevalue("pg")
        base = pg.schema_url("roles")
        key = tmp_path / "signing.key"
        for log in ("tenant-a", "tenant-b"):
            with graven.open(base, signing_key=key, log=log) as trail:
                trail.record(make_event(1, reason=f"{log} secret"))
        role = pg.login_role("tenant_writer")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
        command = [EXE, "--db", base, "--log", "tenant-a", "--signing-key", str(key), "pg", "grant", role, "--writer"]
        granted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert 0 == granted.returncode, granted.stderr
        assert "_log_tenant_a" in granted.stdout
        as_role = base.replace("postgres@", f"{role}@", 1)
        with graven.open(as_role, signing_key=key, log="tenant-a", create=False) as a:
            assert 1 == a.record(make_event(2))
        with pytest.raises((StoreError, ConfigError), match=r"permission denied|no log in schema"):
            graven.open(as_role, signing_key=key, log="tenant-b", create=False).close()
