"""Views of the test project: refusals of every kind, an edit, sign-in and the admin."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

import graven
import graven.django
from tests.django.app.models import Article


def secret(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied("needs articles.view_secret")


def hidden(request: HttpRequest, pk: int) -> HttpResponse:
    article = get_object_or_404(Article.objects.filter(title__startswith="public"), pk=pk)
    return HttpResponse(article.title)


def forbidden(request: HttpRequest) -> HttpResponse:
    return HttpResponseForbidden("no")


def unauthorized(request: HttpRequest) -> HttpResponse:
    return HttpResponse("sign in", status=401)


def action_denied(request: HttpRequest) -> HttpResponse:
    with graven.django.trail().action("report.export", target=("report", "r-1")):
        raise graven.Denied("reports.export required")


def permission_in_action(request: HttpRequest) -> HttpResponse:
    with graven.django.trail().action("report.export", target=("report", "r-2")):
        raise PermissionDenied("reports.export required")


@csrf_exempt
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    article = get_object_or_404(Article, pk=pk)
    article.title = request.POST["title"]
    article.save()
    return HttpResponse("saved")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("secret/", secret, name="secret"),
    path("hidden/<int:pk>/", hidden, name="hidden"),
    path("forbidden/", forbidden, name="forbidden"),
    path("unauthorized/", unauthorized, name="unauthorized"),
    path("action-denied/", action_denied, name="action-denied"),
    path("permission-in-action/", permission_in_action, name="permission-in-action"),
    path("articles/<int:pk>/edit/", edit, name="article-edit"),
]
