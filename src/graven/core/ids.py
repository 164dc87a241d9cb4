"""UUIDv7 event ids (RFC 9562): time-ordered, so the id index grows at its right edge."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def uuid7(now_ns: Callable[[], int] = time.time_ns, randbytes: Callable[[int], bytes] = os.urandom) -> str:
    """A new UUIDv7 as text: 48-bit Unix milliseconds, version 7, variant 10, 74 random bits."""
    millis = now_ns() // 1_000_000
    rand = int.from_bytes(randbytes(10), "big")
    value = (millis & 0xFFFF_FFFF_FFFF) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # variant
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
