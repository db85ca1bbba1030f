"""A measuring child process for one hardware profile, and the local executor over it."""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Callable

from metasel.bench.cells import Cell
from metasel.errors import MetaselError


class LocalWorker:
    """A measuring child process for one hardware profile (restarted after a timeout or crash)."""

    def __init__(self, *, threads: int | None, device: str, start_timeout: float = 300.0):
        self.threads, self.device, self.start_timeout = threads, device, start_timeout
        self._ctx = mp.get_context("spawn")
        self.proc = None
        self.hardware: dict | None = None
        self.versions: dict | None = None

    def start(self) -> None:
        parent, child = self._ctx.Pipe()
        self.proc = self._ctx.Process(target=_worker_entry, args=(child, self.threads, self.device, os.getpid()),
                                      daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        if not self.conn.poll(self.start_timeout):
            self.stop(kill=True)
            raise MetaselError(f"the measuring process did not start within {self.start_timeout:.0f}s")
        try:
            kind, hardware, versions = self.conn.recv()
        except EOFError:
            code = self.proc.exitcode
            self.stop(kill=True)
            raise MetaselError(f"the measuring process died while starting (exit code {code})") from None
        if kind != "ready":
            self.stop(kill=True)
            raise MetaselError(f"the measuring process could not start: {hardware}")
        self.hardware, self.versions = hardware, versions

    def measure(self, cell: Cell, timeout_s: float) -> dict:
        if self.proc is None or not self.proc.is_alive():
            self.start()
        self.conn.send((cell.key, cell.task, cell.method, cell.repeats, cell.seed))
        if not self.conn.poll(timeout_s):
            self.stop(kill=True)
            return {"status": "timeout", "message": f"no result within {timeout_s:.0f}s; the worker was killed"}
        try:
            kind, key, result = self.conn.recv()
        except (EOFError, ConnectionResetError):
            code = self.proc.exitcode if self.proc is not None else None
            self.stop(kill=True)
            status = "oom" if code == -9 else "error"
            return {"status": status, "message": f"the measuring process died (exit code {code})"}
        assert key == cell.key, (key, cell.key)
        return result

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.proc = None


def _worker_entry(conn, threads, device, parent_pid):
    from metasel.bench.executors.worker import worker_main

    worker_main(conn, threads, device, parent_pid)


def run_local(cells: list[Cell], *, threads: int | None, device: str, timeout_s: float, wanted: Callable,
              on_result: Callable, on_skip: Callable) -> dict:
    """Measure cells on this machine with one worker; returns the hardware descriptor.
    ``wanted(cell, hardware)`` says, right before each cell, whether it is still to be measured
    (else ``on_skip``)."""
    worker = LocalWorker(threads=threads, device=device)
    worker.start()
    try:
        hardware = worker.hardware
        for cell in cells:
            if not wanted(cell, hardware):
                on_skip(cell, hardware)
                continue
            result = worker.measure(cell, timeout_s)
            on_result(cell, result, hardware, worker.versions or {})
    except KeyboardInterrupt:  # the cell in flight is abandoned; what was stored stays
        worker.stop(kill=True)
        raise
    finally:
        worker.stop()
    return hardware
