"""The read-only "Audit trail" admin: search and filter the log, open an entry with its diff and a Verified mark.

Entries are read from the trail itself, never from a table the application could edit: the admin
offers no add, change or delete view, and refuses them to every user, superusers included. Each
search and each opened entry is itself recorded (``audit.search``, ``audit.view``: who looked).
The *Verified* mark is earned per page view: the entry's inclusion proof is checked against the
signed checkpoint with the log's key (:func:`graven.web.proof.check_entry`).
"""

from __future__ import annotations

from typing import Any

import orjson
from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from graven.django import conf
from graven.django.models import AuditEntry
from graven.errors import GravenError, NotFoundError
from graven.web.proof import check_entry

PAGE = 50
FILTERS = ("q", "actor", "action", "target", "outcome", "source")
OUTCOMES = ("success", "denied", "failure")


class AuditTrailAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Search, filters and one entry per page; nothing can be changed from here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user: Any = request.user
        return bool(user.is_active and user.is_staff and user.has_perm("graven.view_auditentry"))

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("", wrap(self.changelist_view), name=f"{name}_changelist"),
            path("<int:index>/", wrap(self.entry_view), name=f"{name}_entry"),
            path("<int:index>/change/", wrap(self.change_redirect), name=f"{name}_change"),
            path("<int:index>/bundle/", wrap(self.bundle_view), name=f"{name}_bundle"),
        ]

    def _context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "title": title, "opts": self.opts, "has_view_permission": True}

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, str] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise Http404
        wanted = {k: request.GET.get(k, "").strip() for k in FILTERS}
        query: dict[str, Any] = {
            "text" if k == "q" else k: v for k, v in wanted.items() if v and (k != "outcome" or v in OUTCOMES)
        }
        before = request.GET.get("before", "")
        if before.isdigit():
            query["before"] = int(before)
        trail = conf.trail()
        error = None
        try:
            page = trail.query(**query, newest_first=True, limit=PAGE)
            entries, cursor = page.entries, page.next_cursor
        except GravenError as exc:
            entries, cursor, error = [], None, str(exc)
        trail.record(action="audit.search", outcome="failure" if error else "success",
                     metadata={"filters": {k: v for k, v in wanted.items() if v}})  # fmt: skip
        base = {k: v for k, v in wanted.items() if v}

        def link(**change: str) -> str:
            params = {**base, **change}
            return "?" + "&".join(f"{k}={v}" for k, v in params.items() if v) if any(params.values()) else "?"

        context = {
            **self._context(request, "Audit trail"),
            "entries": [_row(e) for e in entries],
            "wanted": wanted,
            "error": error,
            "next_link": link(before=str(cursor)) if cursor is not None else None,
            "outcome_links": [("All", link(outcome=""), not wanted["outcome"])]
            + [(o.capitalize(), link(outcome=o), wanted["outcome"] == o) for o in OUTCOMES],
            "size": trail.size,
        }
        return TemplateResponse(request, "graven_django/entry_list.html", context)

    def entry_view(self, request: HttpRequest, index: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise Http404
        trail = conf.trail()
        try:
            entry = trail.get(index)
        except NotFoundError:
            raise Http404(f"no entry {index}") from None
        check = check_entry(trail, index)
        trail.record(action="audit.view", metadata={"index": index, "verified": check.ok})
        row = _row(entry)
        context = {
            **self._context(request, f"Entry {index}: {entry.action}"),
            "entry": row,
            "check": check,
            "stored": orjson.dumps(entry.to_json(), option=orjson.OPT_INDENT_2).decode(),
            "bundle_url": reverse("admin:graven_auditentry_bundle", args=[index]),
        }
        return TemplateResponse(request, "graven_django/entry.html", context)

    def change_redirect(self, request: HttpRequest, index: int) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:graven_auditentry_entry", args=[index]))

    def bundle_view(self, request: HttpRequest, index: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise Http404
        trail = conf.trail()
        try:
            bundle = trail.prove(index)
        except NotFoundError:
            raise Http404(f"no entry {index}") from None
        trail.record(action="audit.prove", metadata={"index": index})
        response = HttpResponse(orjson.dumps(bundle, option=orjson.OPT_INDENT_2), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="entry-{index}-bundle.json"'
        return response


def _row(entry: Any) -> dict[str, Any]:
    data = entry.data
    changes = []
    for change in data.get("changes") or []:
        changes.append({
            "field": change.get("field"),
            "redacted": bool(change.get("redacted")),
            "old": _shown(change["old"]) if "old" in change else "",
            "new": _shown(change["new"]) if "new" in change else "",
        })  # fmt: skip
    actor = data.get("actor") or {}
    return {
        "index": entry.index,
        "occurred_at": data.get("occurred_at", ""),
        "action": data.get("action", ""),
        "outcome": data.get("outcome", ""),
        "actor": actor,
        "actor_text": actor.get("name") or actor.get("id") or actor.get("type", ""),
        "targets": ", ".join(f"{t.get('type')}:{t.get('id')}" for t in data.get("targets") or []),
        "reason": data.get("reason", ""),
        "source": data.get("source", ""),
        "context": data.get("context") or {},
        "changes": changes,
    }


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


admin.site.register(AuditEntry, AuditTrailAdmin)
