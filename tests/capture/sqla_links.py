"""Models for the many-to-many and AsyncSession capture tests: articles and their tags."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class LinkBase(DeclarativeBase):
    pass


article_tags = Table(
    "article_tags",
    LinkBase.metadata,
    Column("article_id", ForeignKey("articles.id"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id"), primary_key=True),
)


class Tag(LinkBase):
    __tablename__ = "tags"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    articles: Mapped[list[Article]] = relationship(secondary=article_tags, back_populates="tags")


class Article(LinkBase):
    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    tags: Mapped[list[Tag]] = relationship(secondary=article_tags, back_populates="articles", lazy="selectin")
