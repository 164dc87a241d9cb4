"""Witnesses (c2sp.org/tlog-witness): a witness server, and a log pushing its checkpoints to witnesses.

- :mod:`~graven.witnessing.protocol`: the add-checkpoint request and the witness's decision (pure);
- :mod:`~graven.witnessing.service`: the witness's durable per-log state and request handling;
- :mod:`~graven.witnessing.app`: the HTTP application (needs Starlette: ``pip install graven[witness]``);
- :mod:`~graven.witnessing.client` and :mod:`~graven.witnessing.pusher`: the log's side.
"""

from graven.witnessing.client import (
    CosignedResult,
    WitnessError,
    WitnessRefused,
    fetch_checkpoint,
    push_checkpoint,
    witness_evidence,
)
from graven.witnessing.protocol import AddCheckpoint, Known, Verdict, decide, encode_request, parse_request
from graven.witnessing.pusher import Pusher
from graven.witnessing.service import WitnessService, WitnessState

__all__ = [
    "AddCheckpoint",
    "CosignedResult",
    "Known",
    "Pusher",
    "Verdict",
    "WitnessError",
    "WitnessRefused",
    "WitnessService",
    "WitnessState",
    "decide",
    "encode_request",
    "fetch_checkpoint",
    "parse_request",
    "push_checkpoint",
    "witness_evidence",
]
