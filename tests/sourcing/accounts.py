"""A small event-sourced account, used by the tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graven.sourcing import Aggregate


class Account(Aggregate):
    stream_type = "account"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.email: str | None = None
        self.failures = 0
        self.locked = False

    def apply(self, event: str, data: Mapping[str, Any]) -> None:
        if event in ("Opened", "EmailChanged"):
            self.email = data["email"]
        elif event == "SignInFailed":
            self.failures += 1
            self.locked = self.failures >= 3
        elif event == "PasswordChanged":
            self.password = data["password"]
        else:
            raise ValueError(f"unknown event {event}")
