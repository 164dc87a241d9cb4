"""The demo company's customer accounts, event-sourced: an account's state is the replay of its stream.

Each account is the aggregate stream ``customer:<id>`` of the demo log (see :mod:`graven.sourcing`).
The entry that records a state-changing attempt is itself the stream's next event, so one attempt
stays one entry: its ``metadata.sourcing`` names the event and its data. Events and their data:

==================  ==========================================  ==============================
event               data                                        recorded by
==================  ==========================================  ==============================
Opened              name, email, credit_limit                   ``customer.create``
EmailChanged        email                                       ``customer.update``
CreditLimitChanged  credit_limit                                ``customer.update``
PasswordChanged     unlocked (a reset also unlocks)             ``user.password.change``
SignInFailed        failed_logins (in a row)                    ``session.login`` (failure)
SignedIn            (none: failures in a row start again at 0)  ``session.login`` (success)
Locked              (none)                                      ``account.lock``
Unlocked            (none)                                      ``customer.unlock``
Closed              (none)                                      ``customer.close``
==================  ==========================================  ==============================

The password is never part of an event: the entry records its change as redacted, and the demo
keeps the secret itself in its credential store (:class:`graven.web.pretend.Customer.password`).
The accounts the demo company had before its log began are :data:`OPENED`; a replay starts there.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from graven.errors import ValidationError

STREAM_TYPE = "customer"


@dataclass(frozen=True)
class Account:
    """What replaying a customer's stream gives (everything but the password, which no event holds)."""

    id: str
    name: str
    email: str
    credit_limit: int
    password_changes: int = 0
    failed_logins: int = 0
    locked: bool = False
    closed: bool = False

    def shown(self) -> dict[str, str]:
        """The state as the "how it works" page lists it."""
        return {
            "email": self.email, "credit_limit": str(self.credit_limit),
            "password": f"changed {self.password_changes}x (never stored)" if self.password_changes else "as opened",
            "failed_logins": str(self.failed_logins), "locked": str(self.locked).lower(),
            "closed": str(self.closed).lower(),
        }  # fmt: skip


# The accounts as they were before the demo log's first entry (Ada's original email).
OPENED: Mapping[str, Account] = {
    "c-1042": Account("c-1042", "Ada Lovelace", "ada@example.com", 5000),
    "c-1043": Account("c-1043", "Grace Hopper", "grace@example.com", 12000),
    "c-1044": Account("c-1044", "Alan Turing", "alan@example.com", 2500),
}


def apply(account: Account | None, event: str, data: Mapping[str, Any], ident: str = "") -> Account:
    """The account ``ident`` after one event. An event that cannot follow (no account yet, or one
    after Closed) is a :class:`ValidationError` naming it: a stream that says so is not replayable."""
    if event == "Opened":
        if account is not None:
            raise ValidationError("event", "Opened must be an account's first event", event)
        return Account(ident, data["name"], data["email"], data["credit_limit"])
    if account is None:
        raise ValidationError("event", "must follow the account's Opened event", event)
    if account.closed:
        raise ValidationError("event", f"must not follow Closed (account {account.id})", event)
    if event == "EmailChanged":
        return replace(account, email=data["email"])
    if event == "CreditLimitChanged":
        return replace(account, credit_limit=data["credit_limit"])
    if event == "PasswordChanged":
        unlocked = bool(data.get("unlocked"))
        return replace(account, password_changes=account.password_changes + 1, locked=account.locked and not unlocked,
                       failed_logins=0 if unlocked else account.failed_logins)  # fmt: skip
    if event == "SignInFailed":
        return replace(account, failed_logins=data["failed_logins"])
    if event == "SignedIn":
        return replace(account, failed_logins=0)
    if event == "Locked":
        return replace(account, locked=True)
    if event == "Unlocked":
        return replace(account, locked=False, failed_logins=0)
    if event == "Closed":
        return replace(account, closed=True)
    raise ValidationError("event", "must be an account event (Opened, EmailChanged, ...)", event)


def replay(start: Account | None, events: Iterable[tuple[str, Mapping[str, Any]]], ident: str = "") -> list[Account]:
    """The state after each event, oldest first, from ``start`` (None: the stream opens account ``ident``)."""
    states = []
    state = start
    for event, data in events:
        state = apply(state, event, data, ident)
        states.append(state)
    return states


def event_for(action: str, outcome: str, before: Account, after: Account) -> tuple[str, dict[str, Any]] | None:
    """The event an attempt recorded as ``action``/``outcome`` amounts to on an account that went
    from ``before`` to ``after``, or None when it changed nothing (a refusal, a look, a sign-in
    into a locked account)."""
    if action == "session.login":
        if outcome == "failure" and after.failed_logins > before.failed_logins:
            return "SignInFailed", {"failed_logins": after.failed_logins}
        if outcome == "success" and before.failed_logins:
            return "SignedIn", {}
        return None
    if outcome != "success":
        return None
    if action == "user.password.change":
        return "PasswordChanged", {"unlocked": before.locked and not after.locked}
    if action == "customer.update" and after.email != before.email:
        return "EmailChanged", {"email": after.email}
    if action == "customer.update" and after.credit_limit != before.credit_limit:
        return "CreditLimitChanged", {"credit_limit": after.credit_limit}
    simple = {"account.lock": "Locked", "customer.unlock": "Unlocked", "customer.close": "Closed"}
    return (simple[action], {}) if action in simple else None


def marker(customer: str, version: int, event: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``metadata.sourcing`` object that makes an entry the ``version``-th event of the account."""
    return {"stream": {"type": STREAM_TYPE, "id": customer}, "version": version, "event": event, "shape": 1,
            "data": dict(data)}  # fmt: skip
