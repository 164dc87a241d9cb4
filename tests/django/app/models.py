"""Models of the test project: an article with tags (many-to-many) and a customer with secrets."""

from __future__ import annotations

from typing import Any

from django.db import models

import graven.django


@graven.django.track
class Tag(models.Model):
    name: Any = models.CharField(max_length=50)

    def __str__(self) -> str:
        return str(self.name)


@graven.django.track(exclude=["updated_at"])
class Article(models.Model):
    title: Any = models.CharField(max_length=200)
    body: Any = models.TextField(blank=True, default="")
    views: Any = models.IntegerField(default=0)
    updated_at: Any = models.DateTimeField(auto_now=True)
    tags: Any = models.ManyToManyField(Tag, blank=True, related_name="articles")

    def __str__(self) -> str:
        return str(self.title)


@graven.django.track(redact=["iban"], name="client")
class Customer(models.Model):
    email: Any = models.EmailField()
    iban: Any = models.CharField(max_length=40, blank=True, default="")
    api_token: Any = models.CharField(max_length=64, blank=True, default="")
    credit_limit: Any = models.DecimalField(max_digits=10, decimal_places=2, default=0)

    def __str__(self) -> str:
        return str(self.email)


class Untracked(models.Model):
    name: Any = models.CharField(max_length=50)
