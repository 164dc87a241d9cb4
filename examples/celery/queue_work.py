from tasks import send_reminder, trail

with trail.context(actor={"type": "user", "id": "u-1", "name": "Dana"}, request_id="req-42"):
    asked = send_reminder.delay("in-1")  # as a view does, in the request's context
scheduled = send_reminder.delay("in-2")  # as a scheduled job does, on nobody's behalf
for result in (asked, scheduled):
    result.get(timeout=60)  # wait until the worker has run both
