"""Many-to-many (``secondary=``) changes of tracked models, on a real SQLite file and the real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from graven.capture.sqlalchemy import track
from graven.errors import ConfigError
from graven.trail import Trail
from tests.capture.sqla_links import Article, LinkBase, Tag
from tests.pgserver import Server


@pytest.fixture(params=["sqlite", "postgresql"])
def maker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Articles and tags in a SQLite file or a fresh schema on the PostgreSQL server, with three tags."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    else:
        pg: Server = request.getfixturevalue("pg")
        schema = f"links_{tmp_path.name[-20:].replace('-', '_').lower()}"
        pg.db.execute(f'CREATE SCHEMA "{schema}"')
        url = pg.url.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    LinkBase.metadata.create_all(engine)
    made = sessionmaker(engine)
    with made() as session:
        session.add_all([Tag(id="red"), Tag(id="green"), Tag(id="blue"), Article(id=1, title="Spring")])
        session.commit()
    yield made
    engine.dispose()


def changes(trail: Trail) -> list[tuple[str, list[dict[str, Any]]]]:
    return [(e.action, [dict(c) for c in e.changes]) for e in trail.query()]


class TestManyToMany:
    def test_add_remove_clear(self, trail: Trail, maker: sessionmaker[Session]) -> None:
        """Adding, removing and clearing an article's tags are updates naming the tags before and after."""
        tracker = track(trail, maker, Article)
        with trail.context(actor="u-1"), maker() as session:
            article, red, blue = session.get(Article, 1), session.get(Tag, "red"), session.get(Tag, "blue")
            assert article is not None
            assert red is not None
            assert blue is not None
            article.tags += [red, blue]
            session.commit()
            article.tags.remove(red)
            session.commit()
            article.tags.clear()
            session.commit()
        tracker.close()
        assert [
            ("article.update", [{"field": "tags", "old": [], "new": ["blue", "red"]}]),
            ("article.update", [{"field": "tags", "old": ["blue", "red"], "new": ["blue"]}]),
            ("article.update", [{"field": "tags", "old": ["blue"], "new": []}]),
        ] == changes(trail)

    def test_create_and_delete_name_their_tags(self, trail: Trail, maker: sessionmaker[Session]) -> None:
        """A new article lists its tags with its columns; a deleted one lists the tags it had."""
        tracker = track(trail, maker, Article)
        with trail.context(actor="u-1"), maker() as session:
            green = session.get(Tag, "green")
            assert green is not None
            session.add(Article(id=2, title="Summer", tags=[green]))
            session.commit()
            session.delete(session.get(Article, 2))
            session.commit()
        tracker.close()
        assert [
            ("article.create", [{"field": "id", "new": 2}, {"field": "tags", "new": ["green"]},
                                {"field": "title", "new": "Summer"}]),
            ("article.delete", [{"field": "id", "old": 2}, {"field": "tags", "old": ["green"]},
                                {"field": "title", "old": "Summer"}]),
        ] == changes(trail)  # fmt: skip

    def test_tracked_from_the_other_side(self, trail: Trail, maker: sessionmaker[Session]) -> None:
        """Tagging through the tag's own collection is recorded on the tracked tag."""
        tracker = track(trail, maker, Tag)
        with trail.context(actor="u-1"), maker() as session:
            red, article = session.get(Tag, "red"), session.get(Article, 1)
            assert red is not None
            assert article is not None
            red.articles.append(article)
            session.commit()
        tracker.close()
        assert [("tag.update", [{"field": "articles", "old": [], "new": ["1"]}])] == changes(trail)

    def test_excluded_collection(self, trail: Trail, maker: sessionmaker[Session]) -> None:
        """An excluded collection is not recorded, and a change of it alone makes no entry."""
        tracker = track(trail, maker, Article, exclude=("tags",))
        with trail.context(actor="u-1"), maker() as session:
            red, article = session.get(Tag, "red"), session.get(Article, 1)
            assert red is not None
            assert article is not None
            article.tags.append(red)
            session.commit()
        tracker.close()
        assert 0 == trail.size
        with maker() as session:
            assert 1 == session.execute(text("SELECT count(*) FROM article_tags")).scalar_one()

    def test_unknown_exclude_is_refused(self, trail: Trail, maker: sessionmaker[Session]) -> None:
        """exclude= names a column or a many-to-many collection; anything else is refused with the choices."""
        with pytest.raises(ConfigError, match=r"exclude: no tracked model has a column .labels.*tags"):
            track(trail, maker, Article, exclude=("labels",))
