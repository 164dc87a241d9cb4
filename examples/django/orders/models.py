"""Orders (tracked through GRAVEN["MODELS"]) and customers (tracked with the decorator)."""

from typing import Any

from django.db import models

import graven.django


@graven.django.track(redact=["iban"])
class Customer(models.Model):
    name: Any = models.CharField(max_length=100)
    iban: Any = models.CharField(max_length=34, blank=True, default="")

    def __str__(self) -> str:
        return str(self.name)


class Product(models.Model):
    name: Any = models.CharField(max_length=100)

    def __str__(self) -> str:
        return str(self.name)


class Order(models.Model):
    customer: Any = models.ForeignKey(Customer, on_delete=models.PROTECT)
    status: Any = models.CharField(max_length=20, default="open")
    total: Any = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    products: Any = models.ManyToManyField(Product, blank=True)

    def __str__(self) -> str:
        return f"order {self.pk}"
