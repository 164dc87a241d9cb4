"""The HTTP service's settings and the per-app state its routes share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graven.capture.asgi import ClientAddresses
    from graven.server.accounts.service import Accounts
    from graven.server.jobs import Jobs
    from graven.server.limits import FailureLimiter
    from graven.server.metrics import Metrics
    from graven.server.watch import LogWatcher
    from graven.trail import Trail

MiB = 1024 * 1024


@dataclass
class ServerConfig:
    """What ``create_app`` needs besides the trail. ``secret`` keys API keys, sessions and CSRF tokens.

    ``on_checkpoint`` is the witness hook: each callable is given the note text of every newly
    signed checkpoint, in a worker thread, after it is stored (an exception is logged, not raised).
    """

    secret: bytes
    max_body: int = 16 * MiB  # bytes per request body
    max_depth: int = 34  # JSON nesting of a request body (an entry allows 32 inside a batch array)
    max_batch: int = 1000  # events per ingest request
    session_ttl: timedelta = timedelta(hours=8)
    auth_failure_limit: int = 10  # failed authentications per subject and window before 429
    auth_failure_window: float = 300.0  # seconds
    trusted_proxies: tuple[str, ...] = ()  # whose X-Forwarded-For is believed
    tail_poll: float = 0.25  # seconds between looks at the log's size
    tail_keepalive: float = 15.0  # seconds between SSE comments on a quiet tail
    export_page: int = 1000  # entries read per step of an export
    after_login: str = "/console"  # where the sign-in form sends a browser without ?next=
    on_checkpoint: list[Callable[[str], None]] = field(default_factory=list)
    forward_lag_bound: float = 300.0  # seconds a forwarder may lag before /readyz fails


@dataclass
class ServerState:
    """Everything the routes of one app share (``request.app.state.graven``)."""

    trail: Trail
    config: ServerConfig
    accounts: Accounts
    limiter: FailureLimiter
    watcher: LogWatcher
    jobs: Jobs
    addresses: ClientAddresses  # the client's IP: X-Forwarded-For believed only from trusted proxies
    metrics: Metrics  # GET /metrics
