"""Models for the SQLAlchemy capture tests, importable so that spawned processes can use them."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Numeric, String, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import graven
from graven.capture.sqlalchemy import track


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200), default="")
    credit_limit: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal(0))
    updated_at: Mapped[int] = mapped_column(default=0)


class Reseller(Customer):
    """Joined-table inheritance: tracking Customer tracks resellers too."""

    __tablename__ = "resellers"

    id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    discount: Mapped[int] = mapped_column(default=0)


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    title: Mapped[str] = mapped_column(String(200))
    scan_token: Mapped[str | None] = mapped_column(String(200), default=None)


def commit_then_crash(app_url: str, trail_url: str, key: str, emails: list[str]) -> None:
    """Commit customers with tracking on, then die before the tracker can record them (a crash)."""
    engine = create_engine(app_url)
    trail = graven.open(trail_url, signing_key=key)
    maker = sessionmaker(engine)

    def die(session: Session) -> Any:
        os._exit(3)  # the commit is durable; nothing after it runs

    event.listen(maker, "after_commit", die)  # registered first, so it runs before the tracker's
    track(trail, maker, Customer, exclude=("updated_at",))
    with maker() as session:
        session.add_all([Customer(email=e) for e in emails])
        session.commit()
    os._exit(0)  # not reached
