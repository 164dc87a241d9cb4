"""Graven: a tamper-evident audit trail.

import graven
with graven.open("sqlite:///audit.db", signing_key="audit.key") as trail:
    index = trail.record(action="user.password.change", actor={"type": "user", "id": "u-7"},
                         targets=[{"type": "customer", "id": "c-1042"}])
    assert trail.verify().ok
"""

from graven.capture.action import Action, Denied
from graven.context import ContextThreadPoolExecutor, carry
from graven.core.audit import Problem, Report
from graven.core.bundle import verify_bundle
from graven.core.model import Actor, Change, Entry, Event, Target
from graven.core.shredding import PersonalData
from graven.errors import (
    ConfigError,
    GravenError,
    IdempotencyConflict,
    ImmutableError,
    IntegrityError,
    NotFoundError,
    RollbackRefused,
    StoreError,
    ValidationError,
)
from graven.opening import init
from graven.opening import open_trail as open
from graven.trail import Page, Trail

__version__ = "0.1.0"

__all__ = [
    "Action",
    "Actor",
    "Change",
    "ConfigError",
    "ContextThreadPoolExecutor",
    "Denied",
    "Entry",
    "Event",
    "GravenError",
    "IdempotencyConflict",
    "ImmutableError",
    "IntegrityError",
    "NotFoundError",
    "Page",
    "PersonalData",
    "Problem",
    "Report",
    "RollbackRefused",
    "StoreError",
    "Target",
    "Trail",
    "ValidationError",
    "__version__",
    "carry",
    "init",
    "open",
    "verify_bundle",
]
