from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="OutboxEvent",
            fields=[
                ("seq", models.BigAutoField(primary_key=True, serialize=False)),
                ("event_id", models.CharField(max_length=200, unique=True)),
                ("event", models.TextField()),
                ("created_at", models.FloatField()),
            ],
            options={"db_table": "graven_outbox", "verbose_name": "outbox event"},
        ),
        migrations.CreateModel(
            name="AuditEntry",
            fields=[("index", models.BigIntegerField(primary_key=True, serialize=False))],
            options={
                "managed": False,
                "db_table": "graven_no_table",
                "verbose_name": "audit trail entry",
                "verbose_name_plural": "audit trail",
                "default_permissions": ("view",),
            },
        ),
    ]
