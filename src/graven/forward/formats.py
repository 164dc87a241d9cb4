"""Formats a forwarder writes, pure and I/O-free: each turns one stored entry into one record.

Every format is built from the entry *as stored* (personal values stay sealed, so forgetting a
subject also holds for the receiver's copy) and carries the entry's index and leaf hash
(SHA-256 of 0x00 followed by the stored bytes, hex), so a receiver can tie it to the signed tree.

* ``native``: the entry as ``graven log --json`` prints it (``index`` first, then the stored
  fields) plus ``leaf_hash``. Removing ``index`` and ``leaf_hash`` and encoding the rest with
  RFC 8785 gives back the leaf bytes exactly.
"""

from __future__ import annotations

from collections.abc import Callable

Encoder = Callable[[int, bytes, bytes], bytes]


def native(index: int, body: bytes, leaf_hash: bytes) -> bytes:
    """``{"index": N, <stored fields>, "leaf_hash": "<hex>"}`` spliced from the stored JSON."""
    return b'{"index":%d,%s,"leaf_hash":"%s"}' % (index, body[1:-1], leaf_hash.hex().encode())


def encoder(name: str, *, origin: str = "graven", app_name: str = "graven", hostname: str = "-") -> Encoder:
    """The encoder of a format name (checked by the configuration)."""
    if name == "native":
        return native
    raise ValueError(f"unknown format {name!r}")
