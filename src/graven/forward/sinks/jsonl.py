"""The JSON Lines file sink: one record per line into ``PATH/PREFIX.jsonl``, rotated by size and time.

A batch is acknowledged once its lines (and its proof line) are written and fsynced. Rotation
happens only between batches, so with proofs on every closed file ends with the signed checkpoint
that covers it. A closed file is renamed ``PREFIX-FIRST-LAST.jsonl`` (indices zero-padded, so
names sort in log order) and the folder is fsynced. On start a torn last line (a crash in the
middle of a write, never acknowledged) is cut off; the batch it belonged to is sent again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO

import orjson

from graven.errors import ConfigError
from graven.forward.config import SinkConfig
from graven.forward.sinks import Batch, Refused, Retry

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS = 3600.0


class JsonlSink:
    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        options = config.options
        self.folder = Path(str(options["path"]))
        self.prefix = str(options.get("prefix", "graven"))
        self.max_bytes = int(options.get("max_bytes", DEFAULT_MAX_BYTES))
        self.max_seconds = float(options.get("max_seconds", DEFAULT_MAX_SECONDS))
        self.active = self.folder / f"{self.prefix}.jsonl"
        self._file: BinaryIO | None = None
        self._size = 0
        self._first: int | None = None
        self._last: int | None = None
        self._opened = time.monotonic()
        self._ends_with_proof = True

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = open(self.active, "ab+")  # noqa: SIM115 (kept open across batches)
        except OSError as exc:
            raise ConfigError(
                f"forwarder {self.config.name}: cannot write {self.active}: {exc.strerror or exc}"
            ) from None
        self._recover()

    def _recover(self) -> None:
        """Cut a torn last line; learn the first and last index already in the active file."""
        assert self._file is not None
        f = self._file
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size:
            f.seek(max(0, size - 1))
            if f.read(1) != b"\n":
                f.seek(0)
                data = f.read()
                keep = data.rfind(b"\n") + 1
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
                size = keep
        self._size = size
        self._first = self._last = None
        if size:
            f.seek(0)
            for line in f:
                index = _index_of(line)
                if index is not None:
                    if self._first is None:
                        self._first = index
                    self._last = index
        f.seek(0, os.SEEK_END)
        self._opened = time.monotonic()

    def send(self, batch: Batch) -> Refused:
        if self._file is None:
            raise Retry(f"{self.active} is not open")
        parts = [r.line + b"\n" for r in batch.records]
        if batch.proof_line is not None:
            parts.append(batch.proof_line + b"\n")
        data = b"".join(parts)
        try:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise Retry(f"writing {self.active}: {exc.strerror or exc}") from None
        self._size += len(data)
        if batch.records:
            if self._first is None:
                self._first = batch.records[0].index
            self._last = batch.records[-1].index
        self._ends_with_proof = batch.proof_line is not None or not self.config.proofs
        if self._size >= self.max_bytes or time.monotonic() - self._opened >= self.max_seconds:
            self.rotate()  # by time too while entries keep coming (tick() only runs when idle)
        return Refused()

    def tick(self) -> None:
        if self._size and time.monotonic() - self._opened >= self.max_seconds:
            self.rotate()

    def rotate(self) -> Path | None:
        """Close the active file under its final name and start a new one (nothing when empty)."""
        if self._file is None or not self._size or not self._ends_with_proof:
            return None
        self._file.close()
        self._file = None
        if self._first is not None and self._last is not None:
            closed = self.folder / f"{self.prefix}-{self._first:020d}-{self._last:020d}.jsonl"
        else:  # a format without a top-level index: named by time
            closed = self.folder / f"{self.prefix}-t{time.time_ns():020d}.jsonl"
        os.replace(self.active, closed)
        _fsync_folder(self.folder)
        self._file = open(self.active, "ab+")  # noqa: SIM115
        self._size = 0
        self._first = self._last = None
        self._opened = time.monotonic()
        return closed

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _index_of(line: bytes) -> int | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, dict) and isinstance(value.get("index"), int):
        return int(value["index"])
    return None


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
