"""Graven: a tamper-evident audit trail."""
