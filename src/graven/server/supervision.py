"""Workers of ``graven serve --workers N`` end with their supervisor.

uvicorn's supervisor starts the workers and shares its listening socket with them; if it is killed
(``kill -9``, the OOM killer), nothing tells the workers, and as orphans they keep serving and keep
the port. :func:`follow_supervisor`, called in each worker at start-up, MUST make the worker exit
soon after its supervisor is gone, by two means: the kernel's parent-death signal (Linux
``prctl(PR_SET_PDEATHSIG, SIGTERM)``), and a watchdog thread comparing ``os.getppid()`` with the
supervisor's pid every :data:`CHECK_SECONDS`, which covers a supervisor that died before the
``prctl`` call and systems without it. Either way the worker gets SIGTERM (uvicorn's graceful
shutdown: requests in flight finish); one still running :data:`GRACE_SECONDS` later is ended.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time

SUPERVISOR_ENV = "GRAVEN_SUPERVISOR_PID"
"""Set by ``graven serve`` for its workers: the pid of the process supervising them."""
CHECK_SECONDS = 0.5
GRACE_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("graven.server")


def supervisor_from_environment() -> int | None:
    """The supervisor's pid when this process is one of its workers (not the supervisor itself)."""
    text = os.environ.get(SUPERVISOR_ENV, "")
    if not text.isdigit() or int(text) == os.getpid():
        return None
    return int(text)


def follow_supervisor(supervisor: int) -> threading.Thread:
    """End this process (SIGTERM, then a hard exit after GRACE_SECONDS) once ``supervisor``, its
    parent, has died. Returns the watchdog thread (a daemon)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
                log.warning("graven: prctl(PR_SET_PDEATHSIG) failed (errno %d); the watchdog remains",
                            ctypes.get_errno())  # fmt: skip
        except (OSError, AttributeError):
            pass  # no usable libc: the watchdog alone does the job
    watchdog = threading.Thread(target=_watch, args=(supervisor,), name="graven-supervisor-watch", daemon=True)
    watchdog.start()
    return watchdog


def _watch(supervisor: int) -> None:
    while os.getppid() == supervisor:
        time.sleep(CHECK_SECONDS)
    log.warning("graven: worker %d: the supervisor %d is gone; shutting down", os.getpid(), supervisor)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_SECONDS)
    os._exit(1)
