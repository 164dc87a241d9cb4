"""The Django app: settings checked by ``manage.py check``, models tracked and signals connected when ready."""

from __future__ import annotations

import contextlib
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings as django_settings
from django.core import checks

from graven.errors import ConfigError

MIDDLEWARE = "graven.django.middleware.AuditMiddleware"
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


class GravenConfig(AppConfig):
    name = "graven.django"
    label = "graven"
    verbose_name = "Graven"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from graven.django import conf, signals, tracking

        checks.register(check_settings, checks.Tags.compatibility)
        try:
            models = conf.settings().models
        except ConfigError:
            models = ()  # reported by the system check, which names the key
        with contextlib.suppress(ConfigError):  # reported by the system check, which names the field
            tracking.install_all(models)
        if apps.is_installed("django.contrib.auth"):
            signals.connect()


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``graven.E001`` a wrong ``GRAVEN`` setting; ``E002`` a tracked model or field that does not exist;
    ``W001`` the middleware missing or placed before ``AuthenticationMiddleware``."""
    from graven.django import conf, tracking

    errors: list[checks.CheckMessage] = []
    try:
        parsed = conf.parse(getattr(django_settings, "GRAVEN", None))
    except ConfigError as exc:
        return [checks.Error(str(exc), hint="See the GRAVEN keys in graven.django.conf.", id="graven.E001")]
    for options in parsed.models:
        try:
            model = apps.get_model(options.label)
        except (LookupError, ValueError):
            errors.append(checks.Error(
                f"GRAVEN['MODELS']: no installed model {options.label!r}",
                hint="Use 'app_label.ModelName' of a model in INSTALLED_APPS.", id="graven.E002",
            ))  # fmt: skip
            continue
        try:
            tracking.describe(model, options.exclude, options.include, options.redact, options.name)
        except ConfigError as exc:
            errors.append(checks.Error(str(exc), id="graven.E002"))
    for model, problem in tracking.problems():
        errors.append(checks.Error(problem, obj=model, id="graven.E002"))
    middleware = list(getattr(django_settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE not in middleware:
        errors.append(checks.Warning(
            f"{MIDDLEWARE} is not in MIDDLEWARE: entries will not name the user, IP address or route of requests, "
            "and refused requests will not be recorded.", hint=f"Add it after {AUTH_MIDDLEWARE}.", id="graven.W001",
        ))  # fmt: skip
    elif AUTH_MIDDLEWARE in middleware and middleware.index(AUTH_MIDDLEWARE) > middleware.index(MIDDLEWARE):
        errors.append(checks.Warning(
            f"{MIDDLEWARE} comes before {AUTH_MIDDLEWARE}, so it cannot see request.user.",
            hint=f"Move it after {AUTH_MIDDLEWARE}.", id="graven.W001",
        ))  # fmt: skip
    installed = list(getattr(django_settings, "INSTALLED_APPS", []))
    names = [a.split(".apps.")[0] for a in installed]
    if (
        "django.contrib.admin" in names
        and "graven.django" in names
        and (names.index("graven.django") > names.index("django.contrib.admin"))
    ):
        errors.append(checks.Warning(
            "graven.django comes after django.contrib.admin in INSTALLED_APPS, so tracked models' change pages "
            "lack the 'History (verified)' link.", hint="List graven.django before django.contrib.admin.",
            id="graven.W002",
        ))  # fmt: skip
    return errors
