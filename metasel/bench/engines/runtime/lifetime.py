"""Process groups an engine backend started (a server and its children): killed with the worker (stdlib only)."""

from __future__ import annotations

import ctypes
import os
import signal

GROUPS: set[int] = set()


def die_with_parent() -> None:
    """``preexec_fn`` of a child: SIGKILL it when the worker dies, and give it its own process group."""
    os.setsid()
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def kill(pgid: int) -> None:
    """SIGKILL a process group this worker started (whatever of it is left) and forget it."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
    GROUPS.discard(pgid)


def kill_all() -> None:
    for pgid in list(GROUPS):
        kill(pgid)
