"""Ways into the log besides calling the Trail: request context (``request``), WSGI (``wsgi``),
ASGI middleware (``asgi``), SQLAlchemy ORM tracking (``sqlalchemy``) and PostgreSQL triggers (``pg``)."""
