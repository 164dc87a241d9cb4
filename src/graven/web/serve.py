"""``graven demo``: the web demo on an embedded SQLite log, served by uvicorn until interrupted.

It answers only requests addressed to the names it is served under (see :func:`served_hosts`).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

import uvicorn

from graven.errors import ConfigError
from graven.web.app import create_web_app
from graven.web.http import check_host_name, served_hosts
from graven.web.sandbox import Sandbox


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: any free port), or a ConfigError saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"--host: cannot use {host!r}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--port: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """The URL to open; a socket on every interface is shown as this machine's loopback address."""
    host, port = sock.getsockname()[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 (comparing, not binding)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve_demo(
    directory: Path, host: str, port: int, announce: Callable[[str], None], allowed_hosts: Sequence[str] = ()
) -> None:
    """Seed a fresh demo log in ``directory``, serve the UI on ``host:port``, print the URL, run until stopped.

    Requests must name this server in ``Host``: a loopback name, ``host``, or one of ``allowed_hosts``
    (bound to every interface: also this machine's names and any IP address), each with the port.
    """
    for name in allowed_hosts:
        check_host_name(name)
    sock = listen(host, port)
    try:
        sandbox = Sandbox(directory)
    except BaseException:
        sock.close()
        raise
    try:
        hosts = served_hosts(host, sock.getsockname()[1], allowed_hosts)
        app = create_web_app(demo=True, sandbox=sandbox, hosts=hosts)
        # No proxy headers: the client's address (which the demo's limits key on) is the socket's, and
        # X-Forwarded-For from a local process cannot pose as a new client.
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, access_log=False,
                                proxy_headers=False)  # fmt: skip
        server = uvicorn.Server(config)
        announce(
            f"Graven demo running at {url_of(sock)}  (Ctrl+C to stop)\n"
            f"Its logs live in {directory}: each Reset starts a fresh one there, and the console shows the\n"
            f"current log's file and verifier key (now {sandbox.folder / 'trail.db'})"
        )
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn hands Ctrl+C back once it has shut down
            server.run(sockets=[sock])
        announce("Graven demo stopped.")
    finally:
        sock.close()
        sandbox.close()
