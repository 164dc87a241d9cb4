"""Django settings of the test project: SQLite by default, plus the real PostgreSQL server as ``pg`` when reachable."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from tests.pgserver import PG_URL

BASE = Path(__file__).resolve().parent
SECRET_KEY = "graven-django-tests-" + secrets.token_hex(8)
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
STATIC_URL = "/static/"
ROOT_URLCONF = "tests.django.project_urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "graven.django",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "tests.django.app",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "graven.django.middleware.AuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [BASE / "templates"],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]  # fmt: skip
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, for tests only
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE / "unused.sqlite3")}}
_SCRATCH = Path(tempfile.mkdtemp(prefix="graven-django-tests-"))  # a log for tests that name none
GRAVEN = {
    "LOG": str(_SCRATCH / "trail.db"),
    "SIGNING_KEY": str(_SCRATCH / "signing.key"),
    "TRUSTED_PROXIES": ["10.0.0.0/8"],
}


def _pg() -> dict[str, object] | None:
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error:
        return None
    url = urlsplit(PG_URL)
    name = f"graven_dj_{secrets.token_hex(5)}"
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": url.username or "postgres",
        "PASSWORD": url.password or "",
        "HOST": url.hostname or "127.0.0.1",
        "PORT": str(url.port or 5432),
        "TEST": {"NAME": f"graven_test_{name}"},
    }


PG = _pg()
if PG is not None:
    DATABASES["pg"] = PG
