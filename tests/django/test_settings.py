"""The GRAVEN setting: every mistake named by the system check, with the key, the rule and what was given."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

from graven.django import conf
from graven.django.apps import check_settings
from graven.errors import ConfigError


def ids(messages: list[checks.CheckMessage]) -> list[str | None]:
    return [m.id for m in messages]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"LOGG": "x"}, "GRAVEN: unknown key 'LOGG'"),
        ({"TRUSTED_PROXIES": ["10.0.0.0/33"]}, "GRAVEN['TRUSTED_PROXIES']: '10.0.0.0/33' is not an IP address"),
        (
            {"TRUSTED_PROXIES": "10.0.0.1"},
            "GRAVEN['TRUSTED_PROXIES'] must be a list of non-empty strings; got '10.0.0.1'",
        ),
        ({"MODELS": ["Article"]}, "GRAVEN['MODELS']: 'Article' is not an 'app_label.ModelName' label"),
        ({"MODELS": {"testapp.Article": {"exlude": []}}}, "unknown option 'exlude'"),
        ({"RECORD_404": "yes"}, "GRAVEN['RECORD_404'] must be True or False; got 'yes'"),
        ({"LOG": 5}, "GRAVEN['LOG'] must be a non-empty string or a path; got 5"),
        ([], "GRAVEN must be a dict; got list"),
    ],
)
def test_a_wrong_setting_is_named(value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        conf.parse(value)
    assert message in str(caught.value)
    with override_settings(GRAVEN=value):
        (error,) = check_settings()
    assert "graven.E001" == error.id
    assert message in error.msg


def test_models_and_fields_that_do_not_exist() -> None:
    with override_settings(GRAVEN={"MODELS": {"testapp.Nope": {}, "testapp.Article": {"exclude": ["titel"]}}}):
        found = check_settings()
    assert ["graven.E002", "graven.E002"] == ids(found)
    assert "no installed model 'testapp.Nope'" in found[0].msg
    assert "exclude names no field 'titel'" in found[1].msg
    assert "title" in found[1].msg  # the fields it does have


def test_the_middleware_must_follow_authentication(settings: Any) -> None:
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "graven" not in m]
    assert ["graven.W001"] == ids(check_settings())
    settings.MIDDLEWARE = ["graven.django.middleware.AuditMiddleware", *settings.MIDDLEWARE]
    (warning,) = check_settings()
    assert "cannot see request.user" in warning.msg


def test_the_test_project_passes_its_checks() -> None:
    assert [] == check_settings()


def test_graven_must_come_before_the_admin_for_the_history_link(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings

    apps = [a for a in settings.INSTALLED_APPS if a != "graven.django"]
    monkeypatch.setattr(settings, "INSTALLED_APPS", [*apps, "graven.django"])  # read only, not re-populated
    (warning,) = check_settings()
    assert "graven.W002" == warning.id
