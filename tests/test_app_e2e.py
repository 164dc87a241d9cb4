"""End to end: a FastAPI application with SQLAlchemy models, AuditMiddleware and track(), on real databases.

The application is small but complete: customers (email, password_hash, credit_limit) and their
documents; a sign-in; a profile change; an admin-only bulk credit change; a document upload that
can fail half-way and roll back; a document delete only its owner may do. Users say who they are
with ``X-User`` (``admin`` is the administrator); a real application would read a session.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import Engine, ForeignKey, Numeric, String, create_engine, select, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import graven
from graven.capture.asgi import AuditMiddleware
from graven.capture.sqlalchemy import track
from graven.core.note import Verifier
from graven.trail import Trail
from tests.pgserver import Server

# --- the application -----------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "e2e_customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    credit_limit: Mapped[Decimal] = mapped_column(Numeric(12, 2))


class Document(Base):
    __tablename__ = "e2e_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("e2e_customers.id"))
    title: Mapped[str] = mapped_column(String(200))


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(8)
    return f"pbkdf2${salt.hex()}${hashlib.pbkdf2_hmac('sha256', password.encode(), salt, 1000).hex()}"


def password_ok(stored: str, password: str) -> bool:
    _, salt, _ = stored.split("$")
    return hash_password(password, bytes.fromhex(salt)) == stored


class SignIn(BaseModel):
    email: str
    password: str


class Profile(BaseModel):
    email: str | None = None
    password: str | None = None


class Upload(BaseModel):
    titles: list[str]


def session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as s:
        yield s


def user(request: Request) -> str:
    who = request.headers.get("x-user")
    if not who:
        raise HTTPException(401, "sign in first")
    return who


Db = Annotated[Session, Depends(session)]
User = Annotated[str, Depends(user)]


def make_app(engine: Engine, trail: Trail) -> Any:
    """The application, wrapped in the audit middleware (tracking is set up by the caller)."""
    app = FastAPI()
    app.state.engine = engine

    @app.post("/login")
    def login(form: SignIn, db: Db) -> dict[str, str]:
        customer = db.scalar(select(Customer).where(Customer.email == form.email))
        if customer is None or not password_ok(customer.password_hash, form.password):
            trail.login_attempt(str(customer.id) if customer else form.email, ok=False, reason="wrong password")
            raise HTTPException(401, "wrong email or password")
        trail.login_attempt(str(customer.id), ok=True)
        return {"user": str(customer.id)}

    @app.patch("/customers/{customer_id}")
    def change_profile(customer_id: int, profile: Profile, db: Db, who: User) -> dict[str, str]:
        if who not in (str(customer_id), "admin"):
            raise HTTPException(403, "only the customer or an admin may change the profile")
        customer = db.get(Customer, customer_id)
        if customer is None:
            raise HTTPException(404, "no such customer")
        if profile.email is not None:
            customer.email = profile.email
        if profile.password is not None:
            customer.password_hash = hash_password(profile.password)
        db.commit()
        return {"email": customer.email}

    @app.post("/customers/credit")
    def raise_credit(percent: int, db: Db, who: User) -> dict[str, int]:
        if who != "admin":
            raise HTTPException(403, "admins only")
        factor = Decimal(100 + percent) / 100
        result = db.execute(
            update(Customer).where(Customer.credit_limit > 0).values(credit_limit=Customer.credit_limit * factor)
        )
        db.commit()
        return {"changed": result.rowcount}  # type: ignore[attr-defined]

    @app.post("/customers/{customer_id}/documents")
    def upload(customer_id: int, batch: Upload, db: Db, who: User) -> dict[str, int]:
        for title in batch.titles:
            db.add(Document(owner_id=customer_id, title=title))
            db.flush()
            if not title.strip():
                db.rollback()  # half the batch is written: all of it is undone
                raise HTTPException(422, "every document needs a title")
        db.commit()
        return {"uploaded": len(batch.titles)}

    @app.delete("/documents/{document_id}")
    def remove(document_id: int, db: Db, who: User) -> dict[str, str]:
        document = db.get(Document, document_id)
        if document is None:
            raise HTTPException(404, "no such document")
        if str(document.owner_id) != who:
            raise HTTPException(403, "only the owner may delete a document")
        db.delete(document)
        db.commit()
        return {"deleted": str(document_id)}

    def actor(scope: dict[str, Any]) -> str | None:
        for name, value in scope["headers"]:
            if name == b"x-user":
                return str(value.decode())
        return None

    return AuditMiddleware(app, trail, actor=actor)


# --- fixtures --------------------------------------------------------------------------------------


@dataclass
class Shop:
    engine: Engine
    trail: Trail
    client: httpx.AsyncClient

    def entries(self, action: str | None = None) -> list[graven.Entry]:
        return list(self.trail.query(action=action, limit=1000))


@pytest.fixture(params=["sqlite", "postgresql"])
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shop]:
    """The application on a SQLite file, or on the PostgreSQL server (trail in the same database)."""
    if request.param == "sqlite":
        url, trail_url = f"sqlite:///{tmp_path / 'shop.db'}", str(tmp_path / "trail.db")
    else:
        pg: Server = request.getfixturevalue("pg")
        url, trail_url = pg.url.replace("postgresql://", "postgresql+psycopg://", 1), pg.schema_url("e2e")
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    graven.init(trail_url, signing_key=tmp_path / "signing.key").close()
    trail = graven.open(
        trail_url, signing_key=tmp_path / "signing.key", subject_keys=tmp_path / "subject-keys.db",
        personal=graven.PersonalData(fields=("email",), subjects=("customer",)),
    )  # fmt: skip
    with Session(engine) as s:
        s.add_all(
            [
                Customer(id=1, email="ada@example.com", password_hash=hash_password("lovelace"), credit_limit=1000),
                Customer(id=2, email="alan@example.com", password_hash=hash_password("turing"), credit_limit=2000),
                Customer(id=3, email="grace@example.com", password_hash=hash_password("hopper"), credit_limit=0),
            ]
        )
        s.flush()
        s.add(Document(owner_id=1, title="Contract"))
        s.commit()  # seeded before tracking: not part of the story
    tracker = track(trail, engine, Customer, Document)
    transport = httpx.ASGITransport(app=make_app(engine, trail), client=("198.51.100.23", 50000))
    client = httpx.AsyncClient(transport=transport, base_url="http://shop.test")
    try:
        yield Shop(engine, trail, client)
    finally:
        asyncio.run(client.aclose())
        tracker.close()
        trail.close()
        Base.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS graven_outbox"))
        engine.dispose()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# --- the story -------------------------------------------------------------------------------------


class TestShop:
    def test_denied_request_names_the_route(self, shop: Shop) -> None:
        """A 403 is recorded as denied, naming the route template, the actor and the client address."""
        response = run(shop.client.delete("/documents/1", headers={"x-user": "2"}))
        assert 403 == response.status_code
        (entry,) = shop.entries("http.request")
        assert ("denied", "HTTP 403 Forbidden") == (entry.outcome, entry.get("reason"))
        assert [{"type": "route", "id": "DELETE /documents/{document_id}"}] == entry.targets
        assert ("2", "198.51.100.23") == (entry.actor["id"], entry.actor["ip"])
        assert [] == shop.entries("document.delete")
        assert shop.trail.verify().ok

    def test_wrong_password(self, shop: Shop) -> None:
        """A sign-in with a wrong password is one failed session.login for that customer: its 401 is not
        recorded a second time as a denied http.request (one attempt, one entry)."""
        bad = run(shop.client.post("/login", json={"email": "ada@example.com", "password": "babbage"}))
        good = run(shop.client.post("/login", json={"email": "ada@example.com", "password": "lovelace"}))
        assert (401, 200) == (bad.status_code, good.status_code)
        failed, succeeded = shop.entries("session.login")
        assert ("failure", "wrong password", [{"type": "user", "id": "1"}]) == (
            failed.outcome,
            failed.get("reason"),
            failed.targets,
        )
        assert "198.51.100.23" == failed.actor["ip"]
        assert bad.headers["x-request-id"] == failed.get("context")["request_id"]
        assert "success" == succeeded.outcome
        assert [] == [e.outcome for e in shop.entries("http.request")]
        assert "babbage" not in str([e.data for e in shop.entries()])

    def test_email_and_password_change(self, shop: Shop) -> None:
        """The email change shows old and new; the password hash is recorded as changed, never its value."""
        response = run(
            shop.client.patch(
                "/customers/1", json={"email": "ada@example.org", "password": "analytical"}, headers={"x-user": "1"}
            )
        )
        assert 200 == response.status_code
        (entry,) = shop.entries("customer.update")
        assert [
            {"field": "email", "old": "ada@example.com", "new": "ada@example.org"},
            {"field": "password_hash", "redacted": True},
        ] == entry.data["changes"]
        assert [{"type": "customer", "id": "1"}] == entry.targets
        assert ("1", "web", response.headers["x-request-id"]) == (
            entry.actor["id"],
            entry.get("source"),
            entry.get("context")["request_id"],
        )
        assert "pbkdf2" not in str(entry.data)
        assert shop.trail.verify().ok

    def test_bulk_credit_change(self, shop: Shop) -> None:
        """An admin's bulk UPDATE is one entry per changed customer with old and new limits; a clerk is denied."""
        refused = run(shop.client.post("/customers/credit?percent=10", headers={"x-user": "2"}))
        done = run(shop.client.post("/customers/credit?percent=10", headers={"x-user": "admin"}))
        assert (403, 200, {"changed": 2}) == (refused.status_code, done.status_code, done.json())
        changed = sorted(shop.entries("customer.update"), key=lambda e: e.targets[0]["id"])
        assert [
            ("1", [{"field": "credit_limit", "old": 1000, "new": 1100}]),
            ("2", [{"field": "credit_limit", "old": 2000, "new": 2200}]),
        ] == [(e.targets[0]["id"], e.data["changes"]) for e in changed]
        assert {"admin"} == {e.actor["id"] for e in changed}
        assert 1 == len({e.get("context")["transaction"] for e in changed})
        assert [("2", "POST /customers/credit")] == [
            (e.actor["id"], e.targets[0]["id"]) for e in shop.entries("http.request")
        ]

    def test_rolled_back_upload_records_nothing(self, shop: Shop) -> None:
        """An upload that fails half-way is rolled back: none of its documents appears in the trail or the table."""
        failed = run(
            shop.client.post("/customers/1/documents", json={"titles": ["Invoice", " "]}, headers={"x-user": "1"})
        )
        done = run(shop.client.post("/customers/1/documents", json={"titles": ["Receipt"]}, headers={"x-user": "1"}))
        assert (422, 200) == (failed.status_code, done.status_code)
        with Session(shop.engine) as s:
            assert ["Contract", "Receipt"] == sorted(s.scalars(select(Document.title)))
        (created,) = shop.entries("document.create")
        assert [("owner_id", 1), ("title", "Receipt")] == [
            (c["field"], c["new"]) for c in created.data["changes"] if c["field"] != "id"
        ]
        assert done.headers["x-request-id"] == created.get("context")["request_id"]
        assert [] == shop.entries("http.request")  # a 422 is neither a denial nor a recorded change

    def test_concurrent_requests_keep_their_actors(self, shop: Shop) -> None:
        """Concurrent requests from different users: every entry carries its own request's actor and request id."""

        async def change(n: int, k: int) -> httpx.Response:
            who = "admin" if n == 3 else str(n)
            return await shop.client.patch(
                f"/customers/{n}",
                json={"email": f"user{n}.{k}@example.com"},
                headers={"x-user": who, "x-request-id": f"req-{n}-{k}"},
            )

        async def main() -> list[httpx.Response]:
            return await asyncio.gather(*(change(n, k) for k in range(5) for n in (1, 2, 3)))

        responses = run(main())
        assert {200} == {r.status_code for r in responses}
        updates = shop.entries("customer.update")
        assert 15 == len(updates)
        for entry in updates:
            (email,) = [c["new"] for c in entry.data["changes"] if c["field"] == "email"]
            n, k = email.removeprefix("user").removesuffix("@example.com").split(".")
            assert entry.targets == [{"type": "customer", "id": n}]
            assert ("admin" if n == "3" else n) == entry.actor["id"]
            assert f"req-{n}-{k}" == entry.get("context")["request_id"]
        assert shop.trail.verify().ok

    def test_whole_story_verifies(self, shop: Shop) -> None:
        """Everything above in one run, then the whole log verifies and each change is provable."""
        for call in (
            shop.client.delete("/documents/1", headers={"x-user": "2"}),
            shop.client.post("/login", json={"email": "ada@example.com", "password": "nope"}),
            shop.client.patch("/customers/1", json={"password": "x"}, headers={"x-user": "1"}),
            shop.client.post("/customers/credit?percent=5", headers={"x-user": "admin"}),
            shop.client.post("/customers/2/documents", json={"titles": [""]}, headers={"x-user": "2"}),
            shop.client.delete("/documents/1", headers={"x-user": "1"}),
        ):
            run(call)
        actions = [e.action for e in shop.entries()]
        assert [
            "http.request", "session.login", "customer.update",
            "customer.update", "customer.update", "document.delete",
        ] == actions  # fmt: skip
        report = shop.trail.verify()
        assert report.ok, report.message
        deleted = shop.entries("document.delete")[0]
        key = Verifier.from_text(shop.trail.verifier_key)
        assert graven.verify_bundle(shop.trail.prove(deleted.index), [key]).ok

    def test_forgotten_customer_stays_verifiable(self, shop: Shop) -> None:
        """Customer 1's emails are sealed under her key; once she is forgotten they read as erased,
        the other customers' stay readable, the forgetting is an entry, and the log still verifies."""
        for n in (1, 2):
            response = run(
                shop.client.patch(f"/customers/{n}", json={"email": f"new{n}@example.net"}, headers={"x-user": str(n)})
            )
            assert 200 == response.status_code
        ada, alan = sorted(shop.entries("customer.update"), key=lambda e: e.targets[0]["id"])
        assert {"field": "email", "old": "ada@example.com", "new": "new1@example.net"} == ada.changes[0]
        stored = shop.trail.store.entry(ada.index)
        assert stored is not None
        assert b"ada@example.com" not in stored  # sealed as stored
        assert b"new1@example.net" not in stored

        with shop.trail.context(actor="dpo", reason="erasure request 7"):
            forgot = shop.trail.forget("customer:1")
        ada_now = shop.trail.get(ada.index)
        assert {"field": "email", "old": "[erased]", "new": "[erased]", "erased": True} == ada_now.changes[0]
        assert "new2@example.net" == shop.trail.get(alan.index).changes[0]["new"]
        entry = shop.trail.get(forgot)
        assert ("subject.forget", "dpo", [{"type": "customer", "id": "1"}]) == (
            entry.action,
            entry.actor["id"],
            entry.targets,
        )
        assert shop.trail.store.entry(ada.index) == stored
        report = shop.trail.verify()
        assert report.ok, report.message
        key = Verifier.from_text(shop.trail.verifier_key)
        assert graven.verify_bundle(shop.trail.prove(ada.index), [key]).ok
