"""SQLAlchemy AsyncSession capture on SQLite (aiosqlite) and the real PostgreSQL server (psycopg async)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from graven.capture.sqlalchemy import track, track_async
from graven.errors import ConfigError
from graven.trail import Trail
from tests.capture.sqla_links import Article, LinkBase, Tag
from tests.pgserver import Server


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """An async database URL (and its connect arguments) holding the articles' tables and three tags."""
    if request.param == "sqlite":
        made = (f"sqlite+aiosqlite:///{tmp_path / 'app.db'}", {})
    else:
        pg: Server = request.getfixturevalue("pg")
        schema = f"async_{tmp_path.name[-20:].replace('-', '_').lower()}"
        pg.db.execute(f'CREATE SCHEMA "{schema}"')
        made = (pg.url.replace("postgresql://", "postgresql+psycopg_async://", 1),
                {"options": f"-csearch_path={schema}"})  # fmt: skip

    async def prepare() -> None:
        engine = create_async_engine(made[0], connect_args=made[1])
        async with engine.begin() as conn:
            await conn.run_sync(LinkBase.metadata.create_all)
        async with async_sessionmaker(engine)() as session:
            session.add_all([Tag(id="red"), Tag(id="blue"), Article(id=1, title="Spring")])
            await session.commit()
        await engine.dispose()

    asyncio.run(prepare())
    return made


def engine_of(url: tuple[str, dict[str, Any]]) -> AsyncEngine:
    return create_async_engine(url[0], connect_args=url[1])


def entries(trail: Trail) -> list[tuple[str, str, str | None, list[dict[str, Any]]]]:
    return [(e.action, e.targets[0]["id"], e.actor.get("id"), [dict(c) for c in e.changes]) for e in trail.query()]


class TestAsyncSession:
    def test_writes_recorded_once_committed(self, trail: Trail, url: tuple[str, dict[str, Any]]) -> None:
        """Creates, updates (many-to-many included) and deletes through an AsyncSession are in the trail
        once ``await session.commit()`` returns, with the task's context."""
        seen: list[int] = []

        async def run() -> None:
            engine = engine_of(url)
            maker = async_sessionmaker(engine, expire_on_commit=False)
            tracker = await track_async(trail, maker, Article)
            async with maker() as session:
                with trail.context(actor="u-5"):
                    session.add(Article(id=2, title="Summer"))
                    await session.commit()
                    seen.append(trail.size)
                    article = await session.get(Article, 1)
                    red = await session.get(Tag, "red")
                    assert article is not None
                    assert red is not None
                    article.title = "Spring!"
                    article.tags.append(red)
                    await session.commit()
                    await session.delete(await session.get(Article, 2))
                    await session.commit()
            await tracker.aclose()
            await engine.dispose()

        asyncio.run(run())
        assert [1] == seen
        assert [
            ("article.create", "2", "u-5", [{"field": "id", "new": 2}, {"field": "title", "new": "Summer"}]),
            ("article.update", "1", "u-5", [{"field": "tags", "old": [], "new": ["red"]},
                                            {"field": "title", "old": "Spring", "new": "Spring!"}]),
            ("article.delete", "2", "u-5", [{"field": "id", "old": 2}, {"field": "title", "old": "Summer"}]),
        ] == entries(trail)  # fmt: skip

    def test_rollback_records_nothing(self, trail: Trail, url: tuple[str, dict[str, Any]]) -> None:
        """A rolled-back AsyncSession transaction records none of its changes and leaves no outbox row."""

        async def run() -> int:
            engine = engine_of(url)
            tracker = await track_async(trail, engine, Article)
            async with async_sessionmaker(engine)() as session:
                session.add(Article(id=3, title="Autumn"))
                await session.flush()
                await session.rollback()
            left = await tracker.adrain()
            async with engine.connect() as conn:
                rows = (await conn.execute(select(tracker.outbox.c.event_id))).all()
            await tracker.aclose()
            await engine.dispose()
            return left + len(rows)

        assert 0 == asyncio.run(run())
        assert 0 == trail.size

    def test_action_folds_the_async_change(self, trail: Trail, url: tuple[str, dict[str, Any]]) -> None:
        """``async with trail.action(...)`` around an AsyncSession delete is one entry with the row's old values."""

        async def run() -> None:
            engine = engine_of(url)
            async with async_sessionmaker(engine)() as session:
                tracker = await track_async(trail, session, Article)
                with trail.context(actor="u-2"):
                    async with trail.action("article.delete", target=("article", 1)):
                        await session.delete(await session.get(Article, 1))
                        await session.commit()
            await tracker.aclose()
            await engine.dispose()

        asyncio.run(run())
        assert [("article.delete", "1", "u-2", [{"field": "id", "old": 1}, {"field": "title", "old": "Spring"}])] == (
            entries(trail)
        )

    def test_misuse_is_refused(self, trail: Trail, url: tuple[str, dict[str, Any]]) -> None:
        """track() outside the event loop, or background=True, on an async engine: one clear error each."""
        engine = engine_of(url)
        with pytest.raises(ConfigError, match=r"tracked with `await track_async"):
            track(trail, engine, Article)
        with pytest.raises(ConfigError, match="background=True is for sync sessions"):
            asyncio.run(track_async(trail, engine, Article, background=True))
