"""How a log's engine structures differ from a new log's: the comparison both deep checks share.

Structures are given as ``name -> (kind, table, definition)`` for every index and trigger. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

Structures = Mapping[str, tuple[str, str, str]]


def differences(expected: Structures, actual: Structures, tables: set[str]) -> list[str]:
    """A sentence for each expected structure missing or changed on a table the log has, and for
    each trigger nobody made on one of the log's tables. Expected structures on tables the log does
    not have are skipped: a later feature's table not made yet (a dropped table the scan reports)."""
    found = []
    for name, (kind, table, text) in sorted(expected.items()):
        if table not in tables:
            continue
        have = actual.get(name)
        if have is None:
            found.append(f"the {kind} {name} on {table} is missing (dropped)")
        elif have != (kind, table, text):
            found.append(f"the {kind} {name} on {table} was changed: {have[2]!r}")
    ours = {table for _, table, _ in expected.values()}
    for name, (kind, table, _) in sorted(actual.items()):
        if kind == "trigger" and name not in expected and table in ours:
            found.append(f"a trigger nobody made, {name}, is on {table}")
    return found
