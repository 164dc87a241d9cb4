"""Ways into the log besides calling the Trail: context and actions (``context``, ``action``),
ASGI middleware (``asgi``), SQLAlchemy ORM tracking (``sqlalchemy``) and PostgreSQL triggers (``pg``)."""
