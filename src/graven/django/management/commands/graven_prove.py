"""``manage.py graven_prove INDEX``: ``graven prove`` (an offline proof bundle for one entry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from django.core.management.base import CommandParser

from graven.django import conf
from graven.django.management import GravenCommand


class Command(GravenCommand):
    help = "Write an offline proof bundle: the entry, its inclusion proof and a signed checkpoint."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("index", type=int)
        parser.add_argument("-o", "--output", help="Write the bundle here (default: the output).")

    def handle(self, *args: Any, **options: Any) -> None:
        data = orjson.dumps(conf.trail().prove(options["index"]), option=orjson.OPT_INDENT_2).decode()
        if options["output"]:
            Path(options["output"]).write_text(data + "\n")
            self.stderr.write(f"wrote {options['output']}")
        else:
            self.stdout.write(data)
