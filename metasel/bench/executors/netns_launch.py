"""Run a command in a private network namespace that has only a loopback interface.

``metasel collect --ray local`` starts a one-node Ray cluster for the run. Ray's servers
(GCS, raylet, workers, the runtime-env agent) listen on every interface whatever address
they are given, and the local cluster runs without token auth, so anything that can reach
this machine could send it code. Started inside a network namespace of its own, with only
``lo`` up, nothing outside the namespace can reach any of them, by construction.

Stdlib only and started by path (``python -s netns_launch.py CMD...``): a fresh
interpreter is single-threaded, which ``unshare(CLONE_NEWUSER)`` requires (an interpreter
that has imported numpy has not). It makes an unprivileged user namespace (the same uid
inside, so files keep their owner) and a network namespace, brings ``lo`` up, then
executes ``CMD``. On a system that forbids unprivileged user namespaces it prints one line
and exits with :data:`CANNOT_ISOLATE`.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP, IFF_RUNNING = 0x1, 0x40
#: exit status when the namespace cannot be made
CANNOT_ISOLATE = 97
#: set in the command's environment: it runs inside the private namespace
ENV_FLAG = "METASEL_PRIVATE_NETNS"


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def enter() -> None:
    """Move this (single-threaded) process into new user and network namespaces, ``lo`` up."""
    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(user, network): {os.strerror(err)}")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, ifr)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP | IFF_RUNNING))


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: netns_launch.py CMD [ARG...]", file=sys.stderr)
        return 2
    try:
        enter()
    except OSError as exc:
        print(f"metasel: error: cannot start a private network namespace for the local Ray cluster ({exc}); "
              f"this system forbids unprivileged user namespaces. Measure without --ray (the same cells, one "
              f"worker here), or run a Ray cluster with token auth and pass its address", file=sys.stderr)
        return CANNOT_ISOLATE
    os.environ[ENV_FLAG] = "1"
    os.execvp(argv[0], argv)
    return 1  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
