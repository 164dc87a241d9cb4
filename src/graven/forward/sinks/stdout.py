"""The stdout sink: one formatted record per line, then the batch's proof line; flushed per batch."""

from __future__ import annotations

import sys
from typing import BinaryIO

from graven.forward.config import SinkConfig
from graven.forward.sinks import Batch, Refused, Retry


class StdoutSink:
    def __init__(self, config: SinkConfig, stream: BinaryIO | None = None) -> None:
        self.config = config
        self.stream = stream

    def open(self) -> None:
        if self.stream is None:
            self.stream = sys.stdout.buffer

    def send(self, batch: Batch) -> Refused:
        assert self.stream is not None
        parts = [r.line + b"\n" for r in batch.records]
        if batch.proof_line is not None:
            parts.append(batch.proof_line + b"\n")
        try:
            self.stream.write(b"".join(parts))
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise Retry(f"stdout: {exc.strerror or exc}") from None
        return Refused()

    def tick(self) -> None:
        return None

    def close(self) -> None:
        if self.stream is not None:
            self.stream.flush()
