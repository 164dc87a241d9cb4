"""Ways into the log from outside the Trail API: database triggers (and, later, ORM and ASGI hooks)."""
