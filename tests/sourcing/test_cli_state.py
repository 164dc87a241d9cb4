"""`graven state`, `graven prove --state`, `graven verify --bundle` and `graven projections status`."""

from __future__ import annotations

from pathlib import Path

import orjson

import graven as graven_lib
from graven.core.bundle import verify_bundle
from graven.core.note import Verifier
from graven.sourcing import Projection, Projector
from tests.test_cli import graven  # noqa: F401 (the in-process CLI runner fixture)

ACTOR = {"type": "user", "id": "u-17"}


def story(tmp_path: Path) -> None:
    with graven_lib.init(tmp_path / ".graven" / "trail.db", signing_key=tmp_path / ".graven" / "signing.key") as t:
        for minute, email in ((1, "a@example.com"), (5, "b@example.com")):
            t.record(action="customer.update", actor=ACTOR, targets=[{"type": "customer", "id": "c-1042"}],
                     changes=[{"field": "email", "new": email}, {"field": "password", "new": "x"}],
                     occurred_at=f"2026-12-03T14:0{minute}:00Z")  # fmt: skip


class TestStateCommand:
    def test_state_as_of(self, graven, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
        """The CLI prints each field as of the moment, redacted ones hidden."""
        story(tmp_path)
        result = graven("state", "customer:c-1042", "--as-of", "2026-12-03T14:03")
        assert 0 == result.code, result.err
        assert "email     a@example.com  (entry 0)" in result.out
        assert "password  [redacted]" in result.out
        data = orjson.loads(graven("state", "customer:c-1042", "--json").out)
        assert "b@example.com" == data["fields"]["email"]["value"]

    def test_bad_input_is_one_line_and_exit_2(self, graven, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
        """A bad moment or target is one line naming it, exit 2."""
        story(tmp_path)
        result = graven("state", "customer:c-1042", "--as-of", "soon")
        assert (2, 1) == (result.code, len(result.err.strip().splitlines()))
        assert "as_of" in result.err
        assert 2 == graven("state", "nocolon").code
        assert 2 == graven("prove", "0", "--state", "customer:c-1042").code

    def test_prove_state_and_verify_bundle(self, graven, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
        """A state bundle verifies offline; a changed state or entry does not."""
        story(tmp_path)
        bundle = tmp_path / "state.json"
        assert 0 == graven("prove", "--state", "customer:c-1042", "--as-of", "2026-12-03T14:03", "-o", str(bundle)).code
        key = graven("key").out.strip()
        result = graven("verify", "--bundle", str(bundle), "--key", key)
        assert 0 == result.code, result.err
        assert "follows from 1 entries" in result.out
        data = orjson.loads(bundle.read_bytes())
        verifier = Verifier.from_text(key)
        assert verify_bundle(data, [verifier]).ok
        forged = {**data, "state": {**data["state"], "fields": {}}}
        assert not verify_bundle(forged, [verifier]).ok
        changed = orjson.loads(bundle.read_bytes())
        changed["entries"][0]["entry"]["changes"][0]["new"] = "evil@example.com"
        assert "entries[0]" in verify_bundle(changed, [verifier]).message
        bundle.write_bytes(orjson.dumps(forged))
        assert 1 == graven("verify", "--bundle", str(bundle), "--key", key).code


class TestProjectionsStatus:
    def test_status_shows_position_and_lag(self, graven, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
        """Position and lag of each projection, read from the application database."""
        story(tmp_path)
        app = tmp_path / "app.db"
        with graven_lib.open(tmp_path / ".graven" / "trail.db", signing_key=tmp_path / ".graven" / "signing.key") as t:
            projector = Projector(t, app, [Projection("noop", lambda entry, db: None)])
            projector.run(limit=1)
            projector.close()
        result = graven("projections", "status", "--app-db", str(app))
        assert 0 == result.code, result.err
        assert "noop  position 0  lag 1" in result.out
        missing = graven("projections", "status", "--app-db", str(tmp_path / "none.db"))
        assert 2 == missing.code
        assert "no application database" in missing.err
