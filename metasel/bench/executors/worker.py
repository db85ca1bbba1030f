"""The measuring process: one per hardware profile, fed cells over a pipe.

Running cells in a child process lets the driver enforce a per-cell timeout (kill and
restart the worker), survive a crash of the backend, and keep the thread count fixed
for the whole profile. The worker exits when its parent dies.
"""

from __future__ import annotations

import os
import threading
import time


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(3)


def worker_main(conn, threads: int | None, device: str, parent_pid: int) -> None:
    """Entry point of the worker process (multiprocessing, spawn)."""
    import signal

    # Ctrl-C reaches the whole process group: the driver handles it (and kills this process), so the
    # worker ignores it rather than print a traceback from the middle of a measurement
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:
                pass
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        from metasel.bench.serve import warm_up
        from metasel.bench.hardware import library_versions, probe

        hardware = probe(threads=torch.get_num_threads(), device=device)
        warm_up(device)
        conn.send(("ready", hardware, library_versions()))
    except Exception as exc:  # report and stop: the driver turns it into a clear error
        conn.send(("failed", f"{type(exc).__name__}: {exc}", None))
        return
    from metasel.bench.machine import watched
    from metasel.bench.serve import measure

    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        key, task, method, repeats, seed = msg
        result = watched(lambda: measure(task, method, repeats=repeats, seed=seed, device=device), threads=threads)
        try:
            conn.send(("result", key, result))
        except (BrokenPipeError, ConnectionResetError):  # the driver is gone: nothing to report to
            return
