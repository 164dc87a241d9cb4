"""The demo's pretend application: who may do what, what fails, and what changes (pure rules)."""

from __future__ import annotations

import pytest

from graven.errors import ValidationError
from graven.web import pretend
from graven.web.pretend import LOCK_AFTER, World, decide, initial_world

ADMIN, SUPPORT, ANALYST, ANONYMOUS = "u-1", "u-17", "u-23", "anonymous"


@pytest.fixture
def world() -> World:
    return initial_world()


class TestPermissions:
    @pytest.mark.parametrize(
        ("who", "operation", "params"),
        [
            (ANALYST, "delete_file", {"document": "d-1"}),
            (SUPPORT, "delete_file", {"document": "d-1"}),
            (SUPPORT, "credit_limit", {"customer": "c-1043", "credit_limit": "9000"}),
            (SUPPORT, "grant", {"staff": "u-17", "role": "admin"}),
            (ANALYST, "password", {"customer": "c-1043", "new_password": "long-enough-1"}),
            (ANALYST, "email", {"customer": "c-1043", "email": "g@example.com"}),
            (ANONYMOUS, "view_customer", {"customer": "c-1042"}),
        ],
    )
    def test_missing_permission_is_denied_and_changes_nothing(
        self, world: World, who: str, operation: str, params: dict[str, str]
    ) -> None:
        """Without the permission the attempt is denied, names the permission, and the world stays."""
        before = world.copy()
        decision = decide(world, who, operation, params)
        assert "denied" == decision.outcome
        assert decision.reason is not None
        assert decision.reason.startswith("permission ")
        assert decision.reason.split()[1] in decision.message
        assert () == decision.changes
        assert before == decision.world == world

    def test_permissions_follow_roles(self, world: World) -> None:
        """A person's permissions are the union of their roles' permissions."""
        assert pretend.PERMISSIONS["analyst"] == world.people[ANALYST].permissions
        assert frozenset() == world.people[ANONYMOUS].permissions


class TestSignIn:
    def test_right_password_succeeds_and_names_the_account(self, world: World) -> None:
        """A right password signs in; the log names the account, seen from the keyboard's address."""
        decision = decide(world, ANONYMOUS, "login", {"account": "c-1043", "password": "cobol-compiler-59"})
        assert "success" == decision.outcome
        assert decision.actor is not None
        assert ("c-1043", "203.0.113.250") == (decision.actor["id"], decision.actor["ip"])
        assert ({"type": "customer", "id": "c-1043", "name": "Grace Hopper"},) == decision.targets

    def test_wrong_passwords_fail_then_lock(self, world: World) -> None:
        """Each wrong password is a failure; the third in a row also locks the account."""
        for attempt in range(1, LOCK_AFTER + 1):
            decision = decide(world, ANONYMOUS, "login", {"account": "c-1044", "password": "guess"})
            assert ("failure", "wrong password") == (decision.outcome, decision.reason)
            world = decision.world
            assert (attempt == LOCK_AFTER) == (decision.follow_up is not None)
        assert decision.follow_up is not None
        assert ("account.lock", (("locked", False, True),)) == (decision.follow_up.action, decision.follow_up.changes)
        assert world.customers["c-1044"].locked

    def test_locked_account_fails_even_with_the_right_password(self, world: World) -> None:
        """Ada's account is locked since this morning: the right password does not help."""
        decision = decide(world, ANONYMOUS, "login", {"account": "c-1042", "password": "reset-by-support"})
        assert "failure" == decision.outcome
        assert "locked" in (decision.reason or "")

    def test_staff_sign_in(self, world: World) -> None:
        """Staff accounts sign in too, as staff targets."""
        decision = decide(world, ADMIN, "login", {"account": "u-1", "password": "orchid-priya-26"})
        assert ("success", "staff") == (decision.outcome, decision.targets[0]["type"])

    def test_success_clears_the_failure_count(self, world: World) -> None:
        """Two misses, then the right password: the count starts again."""
        for _ in range(2):
            world = decide(world, ANONYMOUS, "login", {"account": "c-1043", "password": "nope"}).world
        world = decide(world, ANONYMOUS, "login", {"account": "c-1043", "password": "cobol-compiler-59"}).world
        assert 0 == world.customers["c-1043"].failed_logins


class TestChanges:
    def test_password_change_unlocks_and_is_a_secret_change(self, world: World) -> None:
        """An admin's reset changes the password (old and new kept only for redaction) and unlocks."""
        decision = decide(world, ADMIN, "password", {"customer": "c-1042", "new_password": "a-new-secret"})
        assert "success" == decision.outcome
        assert ["password", "locked"] == [c[0] for c in decision.changes]
        assert not decision.world.customers["c-1042"].locked
        assert world.customers["c-1042"].locked, "the given world is never altered"

    def test_short_password_fails(self, world: World) -> None:
        """Allowed, but a too-short password is a failure saying the limit and the length."""
        decision = decide(world, SUPPORT, "password", {"customer": "c-1043", "new_password": "short"})
        assert "failure" == decision.outcome
        assert "at least 8 characters; it has 5" in (decision.reason or "")

    def test_email_update(self, world: World) -> None:
        """Support may change an email: old and new are recorded."""
        decision = decide(world, SUPPORT, "email", {"customer": "c-1043", "email": "grace@navy.example"})
        assert (("email", "grace@example.com", "grace@navy.example"),) == decision.changes
        assert "grace@navy.example" == decision.world.customers["c-1043"].email

    @pytest.mark.parametrize("email", ["not-an-email", "", "grace@example.com"])
    def test_bad_or_same_email_fails(self, world: World, email: str) -> None:
        """An invalid or unchanged email is a failure, not a denial."""
        assert "failure" == decide(world, ADMIN, "email", {"customer": "c-1043", "email": email}).outcome

    def test_credit_limit(self, world: World) -> None:
        """Only billing may change a limit; the number must be whole and within bounds."""
        ok = decide(world, ADMIN, "credit_limit", {"customer": "c-1044", "credit_limit": "4000"})
        assert (("credit_limit", 2500, 4000),) == ok.changes
        for given in ("-5", "12.5", "lots", str(pretend.MAX_CREDIT_LIMIT + 1)):
            assert (
                "failure" == decide(world, ADMIN, "credit_limit", {"customer": "c-1044", "credit_limit": given}).outcome
            )

    def test_grant_and_revoke(self, world: World) -> None:
        """Roles change one at a time; granting what one has or revoking what one lacks fails."""
        granted = decide(world, ADMIN, "grant", {"staff": ANALYST, "role": "support"})
        assert (("roles", ["analyst"], ["analyst", "support"]),) == granted.changes
        assert "files.read" in granted.world.people[ANALYST].permissions
        again = decide(granted.world, ADMIN, "grant", {"staff": ANALYST, "role": "support"})
        assert "failure" == again.outcome
        revoked = decide(granted.world, ADMIN, "revoke", {"staff": ANALYST, "role": "support"})
        assert ["analyst"] == sorted(revoked.world.people[ANALYST].roles)
        assert "failure" == decide(world, ADMIN, "revoke", {"staff": ANALYST, "role": "admin"}).outcome

    def test_nobody_revokes_their_own_admin_role(self, world: World) -> None:
        """The last admin cannot lock everyone out of role management."""
        decision = decide(world, ADMIN, "revoke", {"staff": ADMIN, "role": "admin"})
        assert "failure" == decision.outcome

    def test_delete_file_once(self, world: World) -> None:
        """A file is deleted once; deleting it again fails. Its owner is a target too."""
        first = decide(world, ADMIN, "delete_file", {"document": "d-2"})
        assert ("success", ["file", "customer"]) == (first.outcome, [t["type"] for t in first.targets])
        assert "failure" == decide(first.world, ADMIN, "delete_file", {"document": "d-2"}).outcome

    def test_view_customer(self, world: World) -> None:
        """Viewing changes nothing and tells what the record holds."""
        decision = decide(world, ANALYST, "view_customer", {"customer": "c-1042"})
        assert ("success", ()) == (decision.outcome, decision.changes)
        assert "ada.lovelace@mailbox.example" in decision.message


class TestMalformedRequests:
    @pytest.mark.parametrize(
        ("who", "operation", "params", "field"),
        [
            (ADMIN, "launch_rockets", {}, "operation"),
            ("u-999", "view_customer", {"customer": "c-1042"}, "persona"),
            (ADMIN, "view_customer", {"customer": "c-9"}, "customer"),
            (ADMIN, "view_customer", {}, "customer"),
            (ADMIN, "grant", {"staff": ANALYST, "role": "emperor"}, "role"),
            (ADMIN, "grant", {"staff": ANONYMOUS, "role": "admin"}, "staff"),
            (ADMIN, "delete_file", {"document": "d-9"}, "document"),
            (ADMIN, "login", {"account": "anonymous", "password": "x"}, "account"),
            (ADMIN, "email", {"customer": "c-1042", "email": "x" * 201}, "email"),
        ],
    )
    def test_rejected_with_the_field_named(
        self, world: World, who: str, operation: str, params: dict[str, str], field: str
    ) -> None:
        """What no form sends is not an attempt: a ValidationError names the field."""
        with pytest.raises(ValidationError) as caught:
            decide(world, who, operation, params)
        assert field == caught.value.field
