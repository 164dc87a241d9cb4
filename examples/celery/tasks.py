import os

from celery import Celery

import graven
import graven.celery

app = Celery(
    "invoices",
    broker=os.environ.get("BROKER_URL", "redis://127.0.0.1:6379/0"),  # or amqp://guest:guest@127.0.0.1:5672//
    backend="redis://127.0.0.1:6379/0",
)
app.conf.task_default_queue = "invoices"
graven.celery.install(app)  # in the module that both the web process and the worker import
trail = graven.open("audit.db", signing_key="audit.key")


@app.task
def send_reminder(invoice_id):
    # Queued during a request: that person is the actor. By beat or a script: service:tasks.send_reminder.
    trail.record(action="invoice.remind", targets=[("invoice", invoice_id)])
