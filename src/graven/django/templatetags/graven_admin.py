"""``{% graven_history_link original %}``: the "History (verified)" link of a tracked model's change page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from graven.django import tracking

register = template.Library()


@register.simple_tag
def graven_history_link(obj: Any) -> str:
    if obj is None or getattr(obj, "pk", None) is None:
        return ""
    found = tracking.tracked(type(obj))
    if found is None:
        return ""
    try:
        url = reverse("admin:graven_auditentry_changelist")
    except NoReverseMatch:
        return ""
    query = urlencode({"target": f"{found.rows.noun}:{obj.pk}"})
    return format_html('<li><a href="{}?{}" class="historylink graven-history">History (verified)</a></li>', url, query)
