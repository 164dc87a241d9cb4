"""Ways into the log besides calling the Trail: actions (``action``), request context (``request``),
ASGI middleware (``asgi``), SQLAlchemy ORM tracking (``sqlalchemy``) and PostgreSQL triggers (``pg``)."""
