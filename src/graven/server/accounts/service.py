"""Managing API keys, people and sessions: the one place the CLI and the HTTP API both call.

Every change is recorded in the log (``apikey.create``, ``apikey.revoke``, ``user.create``,
``user.disable``, ``user.password.change``, ``session.login``, ``session.logout``). A change whose
entry cannot be recorded is undone, so the accounts never hold what the log does not show. Methods
do disk I/O: call them from a worker thread in async code.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from graven.errors import NotFoundError, ValidationError
from graven.server import credentials
from graven.server.accounts import ROLES, AccountConflict, AccountStore, ApiKey, Session, User

if TYPE_CHECKING:
    from graven.trail import Trail

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
NAME_RULE = "must be 1 to 100 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
DEFAULT_SESSION_TTL = timedelta(hours=8)


@dataclass(frozen=True, slots=True)
class By:
    """Who makes a change, and how (``cli`` or ``api``): the actor and source of its entry."""

    actor: Mapping[str, Any]
    source: str = "api"


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """The outcome of checking a presented API key: ``key`` is set only when it may be used."""

    key_id: str | None
    key: ApiKey | None
    known: ApiKey | None
    reason: str


def check_name(value: Any, field: str = "name") -> str:
    """A key or user name, or ValidationError naming ``field``."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ValidationError(field, NAME_RULE, value)
    return value


def check_role(value: Any) -> str:
    if value not in ROLES:
        raise ValidationError("role", "must be one of " + ", ".join(ROLES), value)
    return str(value)


class Accounts:
    """Keys, users and sessions of one log, with everything done to them recorded in that log."""

    def __init__(
        self,
        trail: Trail,
        store: AccountStore,
        secret: bytes,
        *,
        session_ttl: timedelta = DEFAULT_SESSION_TTL,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.trail = trail
        self.store = store
        self.secret = secret
        self.session_ttl = session_ttl
        self._clock = clock or (lambda: datetime.now(UTC))

    def _now(self, later: timedelta = timedelta(0)) -> str:
        return (self._clock() + later).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _record(self, by: By, action: str, target: dict[str, str], **fields: Any) -> int:
        return self.trail.record(
            {"action": action, "actor": dict(by.actor), "targets": [target], "source": by.source, **fields}
        )

    # --- API keys ------------------------------------------------------------------------------

    def create_key(self, name: Any, role: Any, *, by: By) -> tuple[ApiKey, str]:
        """A new key (recorded as ``apikey.create``) and its text, which is never shown again."""
        name, role = check_name(name), check_role(role)
        key_id, text = credentials.new_api_key()
        key = ApiKey(key_id, name, role, credentials.keyed_hash(self.secret, "apikey", text), self._now(),
                     _actor_text(by.actor))  # fmt: skip
        try:
            self.store.insert_key(key)
        except AccountConflict:
            raise AccountConflict(
                f"an active API key is already named {name!r}; revoke it or choose another name"
            ) from None
        try:
            self._record(by, "apikey.create", {"type": "apikey", "id": key_id, "name": name}, metadata={"role": role})
        except BaseException:
            self.store.delete_key(key_id)
            raise
        return key, text

    def keys(self) -> list[ApiKey]:
        return self.store.select_keys()

    def revoke_key(self, name_or_id: str, *, by: By) -> ApiKey:
        """Revoke the active key with this id or name (recorded as ``apikey.revoke``)."""
        key = self._active_key(name_or_id)
        at = self._now()
        self._record(by, "apikey.revoke", {"type": "apikey", "id": key.id, "name": key.name},
                     metadata={"role": key.role})  # fmt: skip
        self.store.revoke_key(key.id, at)
        return ApiKey(key.id, key.name, key.role, key.key_hash, key.created_at, key.created_by, at)

    def _active_key(self, name_or_id: str) -> ApiKey:
        active = [k for k in self.store.select_keys() if k.revoked_at is None]
        for key in active:
            if key.id == name_or_id:
                return key
        for key in active:
            if key.name == name_or_id:
                return key
        raise NotFoundError(f"no active API key has the id or name {name_or_id!r} (see `graven keys list`)")

    def key_for(self, text: str) -> KeyCheck:
        """Check a presented key: the id it claims, the stored key of that id, and whether it is good."""
        key_id = credentials.api_key_id(text)
        if key_id is None:
            return KeyCheck(None, None, None, "not a Graven API key (graven_<id>_<secret>)")
        known = self.store.select_key(key_id)
        if known is None:
            return KeyCheck(key_id, None, None, f"no API key has the id {key_id}")
        if not hmac.compare_digest(known.key_hash, credentials.keyed_hash(self.secret, "apikey", text)):
            return KeyCheck(key_id, None, known, f"wrong secret for API key {key_id}")
        if known.revoked_at is not None:
            return KeyCheck(key_id, None, known, f"API key {key_id} was revoked at {known.revoked_at}")
        return KeyCheck(key_id, known, known, "ok")

    # --- people --------------------------------------------------------------------------------

    def add_user(self, name: Any, role: Any, password: Any, *, by: By) -> User:
        """A new person who signs in with ``password`` (recorded as ``user.create``)."""
        name, role = check_name(name), check_role(role)
        credentials.check_password_rules(password)
        user = User(name, role, credentials.hash_password(password), self._now(), _actor_text(by.actor))
        try:
            self.store.insert_user(user)
        except AccountConflict:
            raise AccountConflict(f"the user name {name!r} is taken (names of disabled users stay taken)") from None
        try:
            self._record(by, "user.create", {"type": "user", "id": name}, metadata={"role": role},
                         changes=[{"field": "password", "redacted": True}])  # fmt: skip
        except BaseException:
            self.store.delete_user(name)
            raise
        return user

    def users(self) -> list[User]:
        return self.store.select_users()

    def _active_user(self, name: str) -> User:
        user = self.store.select_user(name)
        if user is None or user.disabled_at is not None:
            raise NotFoundError(f"no active user is named {name!r} (see `graven users list`)")
        return user

    def disable_user(self, name: str, *, by: By) -> User:
        """Disable a user and end their sessions (recorded as ``user.disable``)."""
        user = self._active_user(name)
        at = self._now()
        self._record(by, "user.disable", {"type": "user", "id": name})
        self.store.disable_user(name, at)
        self.store.delete_sessions(user=name)
        return User(user.name, user.role, user.password_hash, user.created_at, user.created_by, at)

    def set_password(self, name: str, password: Any, *, by: By) -> None:
        """Replace a user's password and end their sessions (recorded as ``user.password.change``)."""
        self._active_user(name)
        credentials.check_password_rules(password)
        hashed = credentials.hash_password(password)
        self._record(by, "user.password.change", {"type": "user", "id": name},
                     changes=[{"field": "password", "redacted": True}])  # fmt: skip
        self.store.update_password(name, hashed)
        self.store.delete_sessions(user=name)

    # --- sessions ------------------------------------------------------------------------------

    def sign_in(self, name: Any, password: Any, *, ip: str | None, user_agent: str | None) -> tuple[User, str] | None:
        """Check a password; on success a new session token. Every attempt is a ``session.login`` entry."""
        valid_name = isinstance(name, str) and NAME.fullmatch(name) is not None
        user = self.store.select_user(name) if valid_name else None
        given = password if isinstance(password, str) else ""
        ok = credentials.check_password(given, user.password_hash if user is not None else None)
        reason = None
        if user is None:
            reason = "unknown user" if valid_name else "not a valid user name"
        elif user.disabled_at is not None:
            reason = "the user is disabled"
        elif not ok:
            reason = "wrong password"
        actor: dict[str, Any] = {"type": "user", "id": name} if valid_name else {"type": "anonymous"}
        actor.update({k: v for k, v in (("ip", ip), ("user_agent", user_agent)) if v})
        event: dict[str, Any] = {"action": "session.login", "actor": actor, "source": "web",
                                 "targets": [{"type": "user", "id": name if valid_name else "unknown"}]}  # fmt: skip
        if reason is not None or user is None:
            self.trail.record({**event, "outcome": "failure", "reason": reason})
            return None
        token = credentials.new_token()
        self.store.delete_sessions(expired_before=self._now())
        self.store.insert_session(Session(self._token_hash(token), user.name, self._now(),
                                          self._now(self.session_ttl), ip))  # fmt: skip
        self.trail.record(event)
        return user, token

    def session_user(self, token: str) -> tuple[Session, User] | None:
        """The live session a cookie token names and its (active) user, or None."""
        session = self.store.select_session(self._token_hash(token))
        if session is None or session.expires_at <= self._now():
            return None
        user = self.store.select_user(session.user)
        if user is None or user.disabled_at is not None:
            return None
        return session, user

    def sign_out(self, token: str, *, by: By) -> None:
        """End a session (recorded as ``session.logout``)."""
        session = self.store.select_session(self._token_hash(token))
        if session is None:
            return
        self._record(by, "session.logout", {"type": "user", "id": session.user})
        self.store.delete_session(session.token_hash)

    def csrf_token(self, token: str) -> str:
        """The synchronizer token bound to one session (derived from its cookie token)."""
        return credentials.keyed_hash(self.secret, "csrf", token)

    def _token_hash(self, token: str) -> str:
        return credentials.keyed_hash(self.secret, "session", token)


def _actor_text(actor: Mapping[str, Any]) -> str:
    return f"{actor.get('type', 'user')}:{actor.get('id', '')}".rstrip(":")


def key_json(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "role": key.role, "created_at": key.created_at,
            "created_by": key.created_by, "revoked_at": key.revoked_at}  # fmt: skip


def user_json(user: User) -> dict[str, Any]:
    return {"name": user.name, "role": user.role, "created_at": user.created_at, "created_by": user.created_by,
            "disabled_at": user.disabled_at}  # fmt: skip
