"""The demo's pretend application: customers, documents, staff, roles and the rules of every attempt.

Pure: no I/O, no clock, no randomness. :func:`decide` looks at a :class:`World` and an attempt and
returns a :class:`Decision`: the action's name, its outcome (``success``; ``denied`` when a permission
is missing; ``failure`` when it is allowed but cannot be done: wrong password, locked account, bad
input), the targets, the field changes and the world afterwards. It never alters the world it is
given. A request that no form of the demo can produce (unknown operation, unknown id, missing
field) raises :class:`~graven.errors.ValidationError` instead: not an attempt, so never recorded.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graven.errors import ValidationError

LOCK_AFTER = 3  # failed sign-ins in a row before an account locks
MIN_PASSWORD = 8
MAX_CREDIT_LIMIT = 1_000_000
MAX_INPUT = 200  # characters in any field of a form
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

_ADMIN = ("customers.read", "customers.write", "customers.credentials", "billing.write", "roles.manage",
          "files.read", "files.delete")  # fmt: skip
PERMISSIONS: Mapping[str, frozenset[str]] = {
    "admin": frozenset(_ADMIN),
    "support": frozenset({"customers.read", "customers.write", "customers.credentials", "files.read"}),
    "analyst": frozenset({"customers.read", "files.read"}),
}
ROLES = tuple(PERMISSIONS)

OPERATIONS: Mapping[str, str] = {
    "login": "session.login",
    "password": "user.password.change",
    "email": "customer.update",
    "credit_limit": "customer.update",
    "grant": "role.grant",
    "revoke": "role.revoke",
    "delete_file": "file.delete",
    "view_customer": "customer.view",
    "unlock": "customer.unlock",
    "close": "customer.close",
}


@dataclass
class Customer:
    id: str
    name: str
    email: str
    credit_limit: int
    password: str
    locked: bool = False
    failed_logins: int = 0
    closed: bool = False


@dataclass
class Document:
    id: str
    name: str
    owner: str  # a customer id
    deleted: bool = False


@dataclass
class Person:
    """Someone at the keyboard: a member of staff with roles, or an anonymous visitor."""

    id: str
    name: str
    title: str
    ip: str
    user_agent: str
    roles: set[str] = field(default_factory=set)
    password: str | None = None  # None: no account (an anonymous visitor)
    locked: bool = False
    failed_logins: int = 0

    @property
    def permissions(self) -> frozenset[str]:
        granted: set[str] = set()
        for role in self.roles:
            granted |= PERMISSIONS[role]
        return frozenset(granted)

    @property
    def actor(self) -> dict[str, str]:
        kind = "user" if self.password is not None else "anonymous"
        return {"type": kind, "id": self.id, "name": self.name, "ip": self.ip, "user_agent": self.user_agent}


@dataclass
class World:
    customers: dict[str, Customer]
    documents: dict[str, Document]
    people: dict[str, Person]

    def copy(self) -> World:
        return copy.deepcopy(self)


@dataclass(frozen=True)
class Decision:
    """What an attempt comes to. ``follow_up`` is a consequence recorded after it (an account lock)."""

    action: str
    outcome: str
    message: str  # a sentence for the visitor
    world: World
    reason: str | None = None  # the missing permission or why it failed
    targets: tuple[dict[str, str], ...] = ()
    changes: tuple[tuple[str, Any, Any], ...] = ()
    actor: dict[str, str] | None = None  # who the log names (a sign-in names the account claimed)
    follow_up: Decision | None = None
    becomes: str | None = None  # a staff sign-in: the person who acts from now on at this keyboard


def initial_world() -> World:
    """The company the morning after the story: Ada's password and email changed, her account locked."""
    firefox_linux = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
    people = [
        Person("u-1", "Priya Shah", "administrator", "192.0.2.10", firefox_linux, {"admin"}, "orchid-priya-26"),
        Person("u-17", "Dana Reyes", "support agent", "198.51.100.23",
               "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/133.0", {"support"}, "dana-support-17"),
        Person("u-23", "Sam Okafor", "read-only analyst", "192.0.2.77",
               "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15", {"analyst"}, "sam-reads-23"),
        Person("anonymous", "Anonymous visitor", "guesses passwords", "203.0.113.250",
               "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"),
    ]  # fmt: skip
    customers = [
        Customer("c-1042", "Ada Lovelace", "ada.lovelace@mailbox.example", 5000, "reset-by-support",
                 locked=True, failed_logins=LOCK_AFTER),
        Customer("c-1043", "Grace Hopper", "grace@example.com", 12000, "cobol-compiler-59"),
        Customer("c-1044", "Alan Turing", "alan@example.com", 2500, "bombe-at-bletchley"),
    ]  # fmt: skip
    documents = [
        Document("d-1", "contract-c-1042.pdf", "c-1042"),
        Document("d-2", "id-scan-c-1043.png", "c-1043"),
        Document("d-3", "invoice-2026-11-c-1044.pdf", "c-1044"),
    ]
    return World(
        customers={c.id: c for c in customers},
        documents={d.id: d for d in documents},
        people={p.id: p for p in people},
    )


def _text(params: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise ValidationError(name, "is required")
        return ""
    if not isinstance(value, str):
        raise ValidationError(name, "must be text", value)
    if len(value) > MAX_INPUT:
        raise ValidationError(name, f"must be at most {MAX_INPUT} characters; it has {len(value)}", value[:40] + "…")
    return value


def _customer(world: World, params: Mapping[str, Any]) -> Customer:
    ident = _text(params, "customer")
    if ident not in world.customers:
        raise ValidationError("customer", f"must be one of {', '.join(world.customers)}", ident)
    return world.customers[ident]


def _closed(world: World, action: str, customer: Customer, targets: tuple[dict[str, str], ...]) -> Decision | None:
    """A change to a closed account fails (a closed account's stream takes no more events)."""
    return _failed(world, action, f"{customer.name}'s account is closed", targets) if customer.closed else None


def _person(world: World, name: str, ident: str) -> Person:
    if ident not in world.people:
        raise ValidationError(name, f"must be one of {', '.join(world.people)}", ident)
    return world.people[ident]


def _target(kind: str, ident: str, name: str) -> dict[str, str]:
    return {"type": kind, "id": ident, "name": name}


def decide(world: World, who: str, operation: str, params: Mapping[str, Any]) -> Decision:
    """The outcome of ``who`` attempting ``operation`` with the form's ``params``; ``world`` is untouched."""
    if operation not in OPERATIONS:
        raise ValidationError("operation", f"must be one of {', '.join(OPERATIONS)}", operation)
    person = _person(world, "persona", who)
    after = world.copy()
    if operation == "login":
        return _login(after, person, params)
    handler = _HANDLERS[operation]
    return handler(after, after.people[person.id], params)


def _refused(world: World, person: Person, action: str, permission: str, what: str,
             targets: tuple[dict[str, str], ...]) -> Decision:  # fmt: skip
    return Decision(
        action, "denied", f"Denied: {person.name} may not {what} (permission {permission} required).",
        world, reason=f"permission {permission} required", targets=targets,
    )  # fmt: skip


def _failed(world: World, action: str, reason: str, targets: tuple[dict[str, str], ...]) -> Decision:
    return Decision(action, "failure", f"Failed: {reason}.", world, reason=reason, targets=targets)


def _login(world: World, person: Person, params: Mapping[str, Any]) -> Decision:
    account = _text(params, "account")
    password = _text(params, "password", required=False)
    holder: Customer | Person
    if account in world.customers:
        holder = world.customers[account]
        target = _target("customer", holder.id, holder.name)
    elif account in world.people and world.people[account].password is not None:
        holder = world.people[account]
        target = _target("staff", holder.id, holder.name)
    else:
        accounts = [*world.customers, *(p.id for p in world.people.values() if p.password is not None)]
        raise ValidationError("account", f"must be one of {', '.join(accounts)}", account)
    # The log names the account being signed in to, seen from the browser at the keyboard.
    actor = {"type": "user", "id": holder.id, "name": holder.name, "ip": person.ip, "user_agent": person.user_agent}
    targets = (target,)
    if isinstance(holder, Customer) and holder.closed:
        reason = "the account is closed"
        return Decision("session.login", "failure", f"Failed: {holder.name}'s account is closed.", world,
                        reason=reason, targets=targets, actor=actor)  # fmt: skip
    if holder.locked:
        reason = f"account locked after {LOCK_AFTER} failed sign-ins"
        return Decision("session.login", "failure", f"Failed: {holder.name}'s {reason}.", world,
                        reason=reason, targets=targets, actor=actor)  # fmt: skip
    if password != holder.password:
        holder.failed_logins += 1
        follow_up = None
        if holder.failed_logins >= LOCK_AFTER:
            holder.locked = True
            follow_up = Decision(
                "account.lock", "success", f"{holder.name}'s account is now locked.", world,
                reason=f"{LOCK_AFTER} failed sign-ins in a row", targets=targets, changes=(("locked", False, True),),
                actor={"type": "system", "id": "lockout-policy", "name": "account lockout policy"},
            )  # fmt: skip
        message = f"Failed: wrong password for {holder.name} ({holder.failed_logins} in a row)."
        if follow_up is not None:
            message = message[:-1] + f"; {holder.name}'s account is now locked (the lockout policy did it)."
        return Decision("session.login", "failure", message, world, reason="wrong password", targets=targets,
                        actor=actor, follow_up=follow_up)  # fmt: skip
    holder.failed_logins = 0
    if isinstance(holder, Person):
        message = f"{holder.name} signed in: {holder.name} is now at the keyboard, and acts next."
        return Decision("session.login", "success", message, world, targets=targets, actor=actor, becomes=holder.id)
    message = (f"{holder.name} signed in to the customer's own account; customers have no back-office rights, "
               f"so the actions here are still {person.name}'s.")  # fmt: skip
    return Decision("session.login", "success", message, world, targets=targets, actor=actor)


def _password(world: World, person: Person, params: Mapping[str, Any]) -> Decision:
    customer = _customer(world, params)
    new = _text(params, "new_password", required=False)
    targets = (_target("customer", customer.id, customer.name),)
    action = OPERATIONS["password"]
    if "customers.credentials" not in person.permissions:
        return _refused(world, person, action, "customers.credentials", "change a customer's password", targets)
    if (closed := _closed(world, action, customer, targets)) is not None:
        return closed
    if len(new) < MIN_PASSWORD:
        return _failed(world, action, f"the new password must have at least {MIN_PASSWORD} characters; "
                       f"it has {len(new)}", targets)  # fmt: skip
    changes: list[tuple[str, Any, Any]] = [("password", customer.password, new)]
    if customer.locked:
        changes.append(("locked", True, False))
    customer.password, customer.locked, customer.failed_logins = new, False, 0
    return Decision(action, "success", f"{customer.name}'s password was changed.", world,
                    targets=targets, changes=tuple(changes))  # fmt: skip


def _email(world: World, person: Person, params: Mapping[str, Any]) -> Decision:
    customer = _customer(world, params)
    email = _text(params, "email", required=False).strip()
    targets = (_target("customer", customer.id, customer.name),)
    action = OPERATIONS["email"]
    if "customers.write" not in person.permissions:
        return _refused(world, person, action, "customers.write", "update a customer's email", targets)
    if (closed := _closed(world, action, customer, targets)) is not None:
        return closed
    if not EMAIL_RE.fullmatch(email):
        return _failed(world, action, f"{email!r} is not an email address", targets)
    if email == customer.email:
        return _failed(world, action, f"the email is already {email}", targets)
    old, customer.email = customer.email, email
    return Decision(action, "success", f"{customer.name}'s email is now {email}.", world,
                    targets=targets, changes=(("email", old, email),))  # fmt: skip


def _credit_limit(world: World, person: Person, params: Mapping[str, Any]) -> Decision:
    customer = _customer(world, params)
    given = _text(params, "credit_limit", required=False).strip()
    targets = (_target("customer", customer.id, customer.name),)
    action = OPERATIONS["credit_limit"]
    if "billing.write" not in person.permissions:
        return _refused(world, person, action, "billing.write", "change a credit limit", targets)
    if (closed := _closed(world, action, customer, targets)) is not None:
        return closed
    if not given.isdigit() or not 0 <= int(given) <= MAX_CREDIT_LIMIT:
        return _failed(world, action, f"the credit limit must be a whole number from 0 to {MAX_CREDIT_LIMIT}; "
                       f"{given!r} was given", targets)  # fmt: skip
    limit = int(given)
    if limit == customer.credit_limit:
        return _failed(world, action, f"the credit limit is already {limit}", targets)
    old, customer.credit_limit = customer.credit_limit, limit
    return Decision(action, "success", f"{customer.name}'s credit limit is now {limit}.", world,
                    targets=targets, changes=(("credit_limit", old, limit),))  # fmt: skip


def _role_change(world: World, person: Person, params: Mapping[str, Any], *, grant: bool) -> Decision:
    grantee = _person(world, "staff", _text(params, "staff"))
    role = _text(params, "role")
    if role not in PERMISSIONS:
        raise ValidationError("role", f"must be one of {', '.join(ROLES)}", role)
    if grantee.password is None:
        raise ValidationError("staff", "must be a member of staff (an anonymous visitor has no account)", grantee.id)
    targets = (_target("role", role, role), _target("staff", grantee.id, grantee.name))
    action = "role.grant" if grant else "role.revoke"
    if "roles.manage" not in person.permissions:
        verb = "grant" if grant else "revoke"
        return _refused(world, person, action, "roles.manage", f"{verb} roles", targets)
    if grant and role in grantee.roles:
        return _failed(world, action, f"{grantee.name} already has the {role} role", targets)
    if not grant and role not in grantee.roles:
        return _failed(world, action, f"{grantee.name} does not have the {role} role", targets)
    if not grant and grantee.id == person.id and role == "admin":
        return _failed(world, action, "nobody may revoke their own admin role", targets)
    old = sorted(grantee.roles)
    if grant:
        grantee.roles.add(role)
    else:
        grantee.roles.discard(role)
    verb = "now has" if grant else "no longer has"
    return Decision(action, "success", f"{grantee.name} {verb} the {role} role.", world,
                    targets=targets, changes=(("roles", old, sorted(grantee.roles)),))  # fmt: skip


def _delete_file(world: World, person: Person, params: Mapping[str, Any]) -> Decision:
    ident = _text(params, "document")
    if ident not in world.documents:
        raise ValidationError("document", f"must be one of {', '.join(world.documents)}", ident)
    doc = world.documents[ident]
    owner = world.customers[doc.owner]
    targets = (_target("file", doc.id, doc.name), _target("customer", owner.id, owner.name))
    action = OPERATIONS["delete_file"]
    if "files.delete" not in person.permissions:
        return _refused(world, person, action, "files.delete", "delete files", targets)
    if doc.deleted:
        return _failed(world, action, f"{doc.name} was already deleted", targets)
    doc.deleted = True
    return Decision(action, "success", f"{doc.name} was deleted.", world,
                    targets=targets, changes=(("status", "active", "deleted"),))  # fmt: skip


def _view_customer(world: World, person: Person, params: Mapping[str, Any]) -> Decision:
    customer = _customer(world, params)
    targets = (_target("customer", customer.id, customer.name),)
    action = OPERATIONS["view_customer"]
    if "customers.read" not in person.permissions:
        return _refused(world, person, action, "customers.read", "view customers", targets)
    state = "closed" if customer.closed else "locked" if customer.locked else "active"
    return Decision(action, "success",
                    f"{customer.name}: {customer.email}, credit limit {customer.credit_limit}, account {state}.",
                    world, targets=targets)  # fmt: skip


def _unlock(world: World, person: Person, params: Mapping[str, Any]) -> Decision:
    customer = _customer(world, params)
    targets = (_target("customer", customer.id, customer.name),)
    action = OPERATIONS["unlock"]
    if "customers.credentials" not in person.permissions:
        return _refused(world, person, action, "customers.credentials", "unlock a customer's account", targets)
    if (closed := _closed(world, action, customer, targets)) is not None:
        return closed
    if not customer.locked:
        return _failed(world, action, f"{customer.name}'s account is not locked", targets)
    customer.locked, customer.failed_logins = False, 0
    return Decision(action, "success", f"{customer.name}'s account is unlocked.", world,
                    targets=targets, changes=(("locked", True, False),))  # fmt: skip


def _close(world: World, person: Person, params: Mapping[str, Any]) -> Decision:
    customer = _customer(world, params)
    targets = (_target("customer", customer.id, customer.name),)
    action = OPERATIONS["close"]
    if "customers.write" not in person.permissions:
        return _refused(world, person, action, "customers.write", "close a customer's account", targets)
    if (closed := _closed(world, action, customer, targets)) is not None:
        return closed
    customer.closed = True
    return Decision(action, "success", f"{customer.name}'s account is closed.", world,
                    targets=targets, changes=(("status", "open", "closed"),))  # fmt: skip


_HANDLERS = {
    "password": _password,
    "email": _email,
    "credit_limit": _credit_limit,
    "grant": lambda w, p, params: _role_change(w, p, params, grant=True),
    "revoke": lambda w, p, params: _role_change(w, p, params, grant=False),
    "delete_file": _delete_file,
    "view_customer": _view_customer,
    "unlock": _unlock,
    "close": _close,
}
