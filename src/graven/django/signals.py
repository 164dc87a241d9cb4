"""Sign-ins, sign-outs, failed sign-ins and password changes and resets, recorded from Django's signals.

- ``user_logged_in`` -> ``session.login`` (success), ``user_logged_out`` -> ``session.logout``.
- ``user_login_failed`` -> ``session.login`` (failure). MUST NOT store what was typed unless it
  names a known user: an unknown name (perhaps a password typed in the wrong field) is kept only
  as a keyed fingerprint (``metadata.username_fingerprint``), so equal attempts can be grouped.
- A saved change of the user's password -> ``user.password.change``, or ``user.password.reset``
  when made by ``PasswordResetConfirmView``; the change is ``{field: password, redacted: true}``,
  never the password or its hash. It goes through the outbox with the save (one entry: when the
  user model is tracked too, its update entry takes this action instead of ``user.update``).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_save, pre_save

from graven.django import conf, tracking
from graven.django.middleware import actor_of_user, current_view_class

_OLD_HASH = "_graven_old_hash"


def _target(user: Any) -> dict[str, Any]:
    return {"type": "user", "id": str(user.pk)}


def on_logged_in(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    conf.trail().record(action="session.login", actor=actor_of_user(user), targets=[_target(user)], outcome="success")


def on_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    targets = [_target(user)] if user is not None else []
    conf.trail().record(action="session.logout", actor=actor_of_user(user), targets=targets, outcome="success")


def fingerprint(name: str) -> str:
    """A keyed fingerprint of a typed user name: the trail's fingerprint key, else one derived from SECRET_KEY."""
    policy = conf.trail().redaction
    if policy is not None and policy.fingerprint_key is not None:
        found = policy.fingerprint(name)
        assert found is not None
        return found
    key = hashlib.sha256(b"graven.django.username\x00" + str(django_settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, name.encode(), hashlib.sha256).hexdigest()[:16]


def on_login_failed(sender: Any, credentials: Any = None, request: Any = None, **kwargs: Any) -> None:
    model = get_user_model()
    field = str(model.USERNAME_FIELD)
    typed = (credentials or {}).get(field)
    if typed is None:
        typed = (credentials or {}).get("username")
    known = None
    if isinstance(typed, str) and typed:
        known = model._default_manager.filter(**{field: typed}).first()
    event: dict[str, Any] = {"action": "session.login", "outcome": "failure", "reason": "invalid credentials"}
    if known is not None:
        event["actor"] = actor_of_user(known)
        event["targets"] = [_target(known)]
    else:
        event["actor"] = {"type": "anonymous"}
        event["targets"] = [{"type": "user", "id": "unknown"}]
        if isinstance(typed, str) and typed:
            event["metadata"] = {"username_fingerprint": fingerprint(typed)}
    conf.trail().record(event)


def password_verb() -> str:
    from django.contrib.auth.views import PasswordResetConfirmView

    view = current_view_class()
    return "password.reset" if view is not None and issubclass(view, PasswordResetConfirmView) else "password.change"


def on_user_pre_save(sender: Any, instance: Any, raw: bool = False, using: str | None = None, **kwargs: Any) -> None:
    if raw or instance._state.adding or instance.pk is None or tracking.tracked(sender) is not None:
        return
    stored = (
        sender._base_manager.using(using or DEFAULT_DB_ALIAS)
        .filter(pk=instance.pk)
        .values_list("password", flat=True)
        .first()
    )
    instance.__dict__[_OLD_HASH] = stored


def on_user_post_save(sender: Any, instance: Any, created: bool = False, raw: bool = False,
                      using: str | None = None, **kwargs: Any) -> None:  # fmt: skip
    old = instance.__dict__.pop(_OLD_HASH, None)
    if raw or created or old is None or old == instance.password or tracking.tracked(sender) is not None:
        return
    event = {
        "action": f"user.{password_verb()}",
        "targets": [_target(instance)],
        "changes": [{"field": "password", "redacted": True}],
    }
    tracking.stage_plain(using or DEFAULT_DB_ALIAS, event)


def connect() -> None:
    user_logged_in.connect(on_logged_in, dispatch_uid="graven.django.logged_in")
    user_logged_out.connect(on_logged_out, dispatch_uid="graven.django.logged_out")
    user_login_failed.connect(on_login_failed, dispatch_uid="graven.django.login_failed")
    model = get_user_model()
    tracking.update_verbs[model] = lambda changes: (
        password_verb() if any(c.get("field") == "password" for c in changes) else None
    )
    tracking.atomic_saves(model)
    pre_save.connect(on_user_pre_save, sender=model, dispatch_uid="graven.django.user_pre_save")
    post_save.connect(on_user_post_save, sender=model, dispatch_uid="graven.django.user_post_save")
