"""The outbox of tracked changes (a table in the application's database) and the admin's view of the log.

:class:`OutboxEvent` rows are written in the transaction of the change they describe and deleted
only after their event is durably in the trail. :class:`AuditEntry` has no table: it gives the
log a place (and view permissions) in the admin; entries are read from the trail itself.
"""

from __future__ import annotations

from django.db import models


class OutboxEvent(models.Model):
    """One recorded change waiting to go into the trail; its event is final JSON with a fixed id."""

    seq: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    event_id: models.CharField[str, str] = models.CharField(max_length=200, unique=True)
    event: models.TextField[str, str] = models.TextField()
    created_at: models.FloatField[float, float] = models.FloatField()

    class Meta:
        db_table = "graven_outbox"
        verbose_name = "outbox event"

    def __str__(self) -> str:
        return str(self.event_id)


class AuditEntry(models.Model):
    """An entry of the audit trail, as the admin shows it (read-only; no table of its own)."""

    index: models.BigIntegerField[int, int] = models.BigIntegerField(primary_key=True)

    class Meta:
        managed = False
        db_table = "graven_no_table"
        verbose_name = "audit trail entry"
        verbose_name_plural = "audit trail"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"entry {self.index}"
