"""A real browser (Debian's chromium) signs in to the Django admin and sees an entry's Verified mark."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect, sync_playwright

import graven.django
from tests.django.app.models import Article
from tests.web.conftest import CHROMIUM_ARGS, chromium_path

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_admin_entry_page_shows_verified(log: Path, django_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    executable = chromium_path()
    User.objects.create_superuser("root", "root@example.org", "admin-pass-1")
    article = Article.objects.create(title="draft")
    article.title = "published"
    article.save()
    (update,) = graven.django.trail().query(action="article.update").entries
    # Playwright's sync API runs an event loop in this thread; the ORM calls above are done.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{django_server}/admin/login/?next=/admin/graven/auditentry/")
            page.fill("#id_username", "root")
            page.fill("#id_password", "admin-pass-1")
            page.click("input[type=submit]")
            expect(page.locator("#result_list")).to_contain_text("article.update")
            page.click(f"a[href='/admin/graven/auditentry/{update.index}/']")
            expect(page.locator(".graven-verified")).to_have_text("✔ Verified")
            expect(page.locator(".graven-diff")).to_contain_text("published")
            page.goto(f"{django_server}/admin/testapp/article/{article.pk}/change/")
            page.click("text=History (verified)")
            expect(page.locator("#result_list")).to_contain_text("article.create")
        finally:
            browser.close()
