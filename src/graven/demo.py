"""The locked-out-customer story, scripted on an embedded SQLite log.

A customer says she never changed her password, yet it changed yesterday and now she is locked
out. The demo records what happened (sign-ins, a look at her record, a denied attempt, the reset,
the email change, today's failed sign-ins and the lock), then investigates it the way a support
engineer would: her account's timeline, the entry that answers the question, a proof bundle
checked with the public key alone, and a full verification of the log.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule

from graven import render
from graven.core.bundle import verify_bundle
from graven.core.note import Verifier
from graven.errors import ConfigError
from graven.opening import init
from graven.private_files import make_private_dir
from graven.trail import Trail

CUSTOMER = {"type": "customer", "id": "c-1042", "name": "Ada Lovelace"}
ADA = {"type": "user", "id": "c-1042", "name": "Ada Lovelace", "ip": "203.0.113.45",
       "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15"}  # fmt: skip
DANA = {"type": "user", "id": "u-17", "name": "Dana Reyes", "ip": "198.51.100.23",
        "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/133.0", "session": "s-5f2a"}  # fmt: skip
SYSTEM = {"type": "system", "id": "lockout-policy", "name": "account lockout policy"}


def story(now: datetime) -> list[dict[str, Any]]:
    """The events of the last two days, oldest first."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = day - timedelta(days=1)

    def at(base: datetime, hh: int, mm: int, ss: int = 0) -> str:
        return (base + timedelta(hours=hh, minutes=mm, seconds=ss)).isoformat()

    web = {"route": "/login", "request_id": "req-0001"}
    events: list[dict[str, Any]] = [
        {
            "occurred_at": at(day - timedelta(days=2), 9, 12),
            "actor": ADA,
            "action": "session.login",
            "targets": [CUSTOMER],
            "source": "web",
            "context": web,
        },
        {
            "occurred_at": at(yesterday, 13, 58),
            "actor": DANA,
            "action": "session.login",
            "targets": [{"type": "staff", "id": "u-17"}],
            "source": "web",
            "context": {"route": "/admin/login", "request_id": "req-7f10"},
        },
        {
            "occurred_at": at(yesterday, 14, 2),
            "actor": DANA,
            "action": "customer.view",
            "targets": [CUSTOMER],
            "source": "web",
            "context": {"route": "/admin/customers/c-1042", "request_id": "req-7f14"},
        },
        {
            "occurred_at": at(yesterday, 14, 3),
            "actor": DANA,
            "action": "role.grant",
            "outcome": "denied",
            "targets": [{"type": "role", "id": "billing-admin"}, {"type": "staff", "id": "u-17"}],
            "reason": "permission roles.manage required",
            "source": "web",
            "context": {"route": "/admin/roles", "request_id": "req-7f15"},
        },
        {
            "occurred_at": at(yesterday, 14, 5, 31),
            "actor": DANA,
            "action": "user.password.change",
            "targets": [CUSTOMER],
            "source": "web",
            "reason": "caller said she was the customer and had lost access (ticket SUP-2231)",
            "changes": [{"field": "password", "redacted": True}],
            "context": {
                "route": "/admin/customers/c-1042/reset-password",
                "form": "admin password reset",
                "request_id": "req-7f19",
            },
        },
        {
            "occurred_at": at(yesterday, 14, 6, 2),
            "actor": DANA,
            "action": "customer.update",
            "targets": [CUSTOMER],
            "source": "web",
            "reason": "ticket SUP-2231",
            "changes": [{"field": "email", "old": "ada@example.com", "new": "ada.lovelace@mailbox.example"}],
            "context": {"route": "/admin/customers/c-1042", "form": "customer profile", "request_id": "req-7f1c"},
        },
    ]
    for attempt in range(3):
        events.append(
            {"occurred_at": at(day, 8, 30, 10 * attempt), "actor": ADA, "action": "session.login",
             "outcome": "failure", "reason": "wrong password", "targets": [CUSTOMER], "source": "web",
             "context": {"route": "/login", "request_id": f"req-90a{attempt}"}}
        )  # fmt: skip
    events.append(
        {"occurred_at": at(day, 8, 30, 31), "actor": SYSTEM, "action": "account.lock", "targets": [CUSTOMER],
         "reason": "3 failed sign-ins in 5 minutes", "source": "job",
         "changes": [{"field": "locked", "old": False, "new": True}]}
    )  # fmt: skip
    # Ada's account is event-sourced (graven.web.accounts): each entry that changed it is also the
    # next event of the stream customer:c-1042, so replaying the stream gives her account's state.
    account_events = [("PasswordChanged", {"unlocked": False}),
                      ("EmailChanged", {"email": "ada.lovelace@mailbox.example"}),
                      *(("SignInFailed", {"failed_logins": n}) for n in (1, 2, 3)), ("Locked", {})]  # fmt: skip
    for version, (entry, (name, data)) in enumerate(zip(events[4:], account_events, strict=True), start=1):
        entry["metadata"] = {"sourcing": {"stream": {"type": "customer", "id": "c-1042"}, "version": version,
                                          "event": name, "shape": 1, "data": data}}  # fmt: skip
    return events


DEMO_FILES = re.compile(r"log-\d+|trail\.db(-wal|-shm)?|signing\.key(\.checkpoint(\.lock)?)?|subject-keys\.db")


def clear_folder(directory: Path) -> None:
    """Empty ``directory`` (0700) for a new demo; refuse one that holds anything a demo did not put there."""
    if directory.exists():
        if not directory.is_dir():
            raise ConfigError(f"{directory} is a file; the demo needs a folder of its own")
        strangers = sorted(p.name for p in directory.iterdir() if not DEMO_FILES.fullmatch(p.name))
        if strangers:
            raise ConfigError(
                f"{directory} holds files that are not the demo's ({', '.join(strangers[:3])}); choose another --dir"
            )
        shutil.rmtree(directory)
    make_private_dir(directory)


def run(directory: Path, console: Console, now: datetime | None = None) -> int:
    """Record the story into a fresh log under ``directory``, investigate it, verify it; exit code."""
    now = now or datetime.now(UTC)
    clear_folder(directory)
    db, key = directory / "trail.db", directory / "signing.key"
    console.print(Rule("Graven demo: the locked-out customer"))
    console.print(
        "Ada Lovelace calls support: she never changed her password, yet it changed yesterday\n"
        "and now she is locked out. Here is what her company's application recorded.\n"
    )
    with init(db, signing_key=key) as trail:
        trail.record_many(story(now))
        investigate(trail, console)
        code = verify_and_prove(trail, console)
    exe = "graven" if shutil.which("graven") else os.path.relpath(Path(sys.argv[0]).resolve())
    console.print(
        f"\nTry it yourself:\n  {exe} --db {db} --signing-key {key} log --target customer:c-1042\n"
        f"  {exe} --db {db} --signing-key {key} verify"
    )
    return code


def investigate(trail: Trail, console: Console) -> None:
    """Print the customer's timeline and the entry that answers the question."""
    console.print(Rule("Timeline of customer c-1042 (graven log --target customer:c-1042)"))
    history = trail.history(("customer", "c-1042"))
    console.print(render.entries_table(history))
    change = next(e for e in history if e.action == "user.password.change")
    actor = change.actor
    console.print(Rule(f"The answer: entry #{change.index} (graven show {change.index})"))
    console.print(render.entry_detail(change))
    console.print(
        f"\n[bold]Who:[/] {actor['name']} ({actor['id']}), signed in to the admin console at 13:58.\n"
        f"[bold]When:[/] {change.data['occurred_at']}\n"
        f"[bold]From where:[/] {actor['ip']}, {actor['user_agent']}\n"
        f"[bold]How:[/] the {change.data['context']['form']} form ({change.data['context']['route']})\n"
        f"[bold]Why:[/] {change.data['reason']}\n"
        "A minute later the same agent changed the account's email: a classic account takeover by\n"
        "social engineering. The password itself was never stored: the entry says only that it changed.\n"
    )


def verify_and_prove(trail: Trail, console: Console) -> int:
    """Prove the decisive entry with the public key alone, then verify the whole log."""
    change = trail.query(action="user.password.change", target=("customer", "c-1042")).entries[0]
    bundle = trail.prove(change.index)
    verifier = Verifier.from_text(trail.verifier_key)
    check = verify_bundle(bundle, [verifier])
    console.print(Rule(f"Proof (graven prove {change.index}; graven verify --bundle FILE --key KEY)"))
    console.print(f"verifier key: {trail.verifier_key}")
    console.print(("[green]OK[/] " if check.ok else "[red]FAILED[/] ") + check.message, markup=True)
    console.print(Rule("graven verify"))
    report = trail.verify()
    if report.ok:
        console.print(f"[bold green]OK[/]  {report.message}")
        return 0
    console.print(f"[bold red]TAMPERED[/]  first bad index {report.first_bad_index} ({report.kind}): {report.message}")
    return 1
