"""UUIDv7 event ids (RFC 9562): time-ordered, so the id index grows at its right edge."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def uuid7(now_ns: Callable[[], int] = time.time_ns, randbytes: Callable[[int], bytes] = os.urandom) -> str:
    """A new UUIDv7 as text: 48-bit Unix milliseconds, version 7, the sub-millisecond fraction in
    12 bits (RFC 9562 section 6.2, method 3: ids made 1/4096 ms apart sort in the order they were
    made, so a new id is almost always above every stored one), variant 10, 62 random bits."""
    millis, fraction = divmod(now_ns(), 1_000_000)
    rand = int.from_bytes(randbytes(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (millis & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (fraction * 4096 // 1_000_000) << 64 | 0x2 << 62 | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
