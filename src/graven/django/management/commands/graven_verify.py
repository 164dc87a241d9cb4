"""``manage.py graven_verify``: ``graven verify`` on the log named by ``settings.GRAVEN``."""

from __future__ import annotations

from typing import Any

import orjson
from django.core.management.base import CommandError, CommandParser

from graven.django import conf
from graven.django.management import GravenCommand
from graven.keys import load_verifier
from graven.witnessing.client import witness_evidence
from graven.witnessing.keys import load_cosigner_verifier


class Command(GravenCommand):
    help = (
        "Check every entry, the Merkle tree, every signed checkpoint and the witnessed ones. "
        "Exits 0 when the log is intact, 1 when damage is found, 2 on bad input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help='Print {"ok", "first_bad_index", "kind", ...}.')
        parser.add_argument("--key", help="Trust only this verifier key (its text form, or a file holding it).")
        parser.add_argument("--witness-key", action="append", default=[], help="A witness's public key (repeatable).")
        parser.add_argument("--witness", action="append", default=[], help="A witness URL to hold the log against.")

    def handle(self, *args: Any, **options: Any) -> None:
        trail = conf.trail()
        key = options["key"]
        cosigners = [load_cosigner_verifier(k) for k in options["witness_key"]]
        seen = witness_evidence(
            trail, keys=cosigners, urls=options["witness"], log_key=load_verifier(key) if key else None
        )
        report = trail.verify(key=key, witnessed=seen)
        if options["json"]:
            self.stdout.write(orjson.dumps(report.to_json()).decode())
        elif report.ok:
            self.stdout.write(f"OK  {report.message}")
        if not report.ok:
            raise CommandError(
                f"TAMPERED  first bad index {report.first_bad_index} ({report.kind}): {report.message}", returncode=1
            )
