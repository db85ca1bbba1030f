"""The collector's side of the engine worker protocol (``runtime/worker.py`` documents it).

:func:`measure_engine` measures one cell of an engine method: it builds (or finds) the
task's checkpoint here, draws the prompts and arrival times here — so every method of a
task serves the same requests — and hands the cell to the engine's worker, a process
started from the engine's own environment and kept for the next cell. An engine that is
not installed gives status ``unsupported`` with the install command, never a crash.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import subprocess
import tempfile
from collections import deque
from pathlib import Path

from metasel.bench.engines import envs
from metasel.errors import MetaselError

RUNTIME = Path(__file__).resolve().parent / "runtime"


class EngineUnavailable(MetaselError):
    """The engine cannot be started here (not installed, or its worker failed to start)."""


class EngineProcess:
    """A worker process in an engine's environment, speaking JSON lines."""

    def __init__(self, engine: str, threads: int, *, root: Path | None = None):
        self.engine, self.threads, self.root = engine, int(threads), root
        self.proc: subprocess.Popen | None = None
        self.versions: dict = {}
        self._next = 0

    def start(self) -> None:
        record = envs.installed(self.engine, self.root)
        if record is None:
            raise EngineUnavailable(envs.missing_message(self.engine))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update(OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads), PYTHONNOUSERSITE="1",
                   TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        self.log = tempfile.TemporaryFile(mode="w+", prefix=f"metasel-{self.engine}-")
        cmd = [str(envs.python_of(self.engine, self.root)), "-s", str(RUNTIME / "worker.py"), self.engine,
               str(os.getpid()), str(self.threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env, cwd=str(RUNTIME))
        msg = self._read()
        if msg is None or msg.get("op") != "ready":
            why = (msg or {}).get("message") or self._log_tail()
            self.stop()
            raise EngineUnavailable(f"engine {self.engine!r}: its worker did not start: {why}")
        self.versions = dict(msg.get("versions") or {})

    def _read(self) -> dict | None:
        line = self.proc.stdout.readline()
        if not line:
            return None
        return json.loads(line)

    def _log_tail(self, n: int = 6) -> str:
        try:
            self.log.seek(0)
            lines = deque((ln.rstrip() for ln in self.log if ln.strip()), maxlen=n)
        except (OSError, ValueError):
            return "(no log)"
        return " | ".join(lines) or "(nothing on stderr)"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def measure(self, msg: dict) -> dict:
        self._next += 1
        msg = {**msg, "op": "measure", "id": self._next}
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            reply = self._read()
        except (BrokenPipeError, OSError):
            reply = None
        if reply is None:
            code = self.proc.wait(timeout=30)
            tail = self._log_tail()
            self._release()
            return {"status": "oom" if code == -9 else "error",
                    "message": f"the {self.engine} worker died (exit code {code}): {tail}"[:500]}
        return reply["result"]

    def _release(self) -> None:
        """Close the pipes and the log of a worker that has exited."""
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self.proc = None
        self.log.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self._release()


_PROCESSES: dict[tuple[str, int], EngineProcess] = {}


def _stop_all() -> None:
    for p in _PROCESSES.values():
        p.stop()
    _PROCESSES.clear()


atexit.register(_stop_all)


def engine_process(engine: str, threads: int) -> EngineProcess:
    """The running worker for an engine at a thread count (started on first use, kept)."""
    key = (engine, int(threads))
    proc = _PROCESSES.get(key)
    if proc is None or not proc.alive():
        if proc is not None:
            proc.stop()
        proc = EngineProcess(engine, threads)
        proc.start()
        _PROCESSES[key] = proc
    return proc


def arrival_times(workload: dict, n: int, seed: int) -> list[float] | None:
    """Arrival times (s) of a Poisson workload (drawn from the cell's seed) or a constant-rate one
    (evenly spaced); None for the others."""
    import numpy as np

    arrival = workload.get("arrival") or {"process": "burst"}
    if arrival.get("process") == "constant":
        return (np.arange(n) / float(arrival["rate"])).tolist()
    if arrival.get("process") != "poisson":
        return None
    rng = np.random.default_rng(seed + 11)
    gaps = rng.exponential(1.0 / float(arrival["rate"]), size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps).tolist()


def measure_engine(task: dict, method, *, repeats: int, seed: int, threads: int) -> dict:
    """Measure one cell of an engine method; the failure, if any, is the result."""
    from metasel.bench.engines.checkpoint import ensure_checkpoint
    from metasel.bench.serve import MAX_INNER, MIN_REPEAT_S, make_prompts

    model, workload = task["model"], task["workload"]
    prompts, _ = make_prompts(workload, model["vocab"], seed)
    out_len = int(workload["output_len"])
    try:
        proc = engine_process(method.engine, threads)
    except EngineUnavailable as exc:
        return {"status": "unsupported", "message": str(exc), "repeats": 0, "seed": seed}
    checkpoint, build_s = ensure_checkpoint(model, seed=seed, needed_positions=max(map(len, prompts)) + out_len + 16)
    msg = {"checkpoint": str(checkpoint), "settings": dict(method.settings), "prompts": prompts, "output_len": out_len,
           "arrival": workload.get("arrival") or {"process": "burst"},
           "arrivals": arrival_times(workload, len(prompts), seed), "slo": workload.get("slo") or {},
           "repeats": int(repeats), "min_repeat_s": MIN_REPEAT_S, "max_inner": MAX_INNER}
    result = proc.measure(msg)
    result.setdefault("repeats", 0)
    result["seed"] = seed
    result["versions"] = {f"engine:{k}": v for k, v in proc.versions.items()}
    if result.get("status") == "ok":
        result["setup_s"] = float(result.get("setup_s", math.nan)) + build_s
    elif result.get("status") == "error":
        from metasel.bench.serve import classify_text

        result.update(classify_text(result.get("message", ""), result.get("exception", "")))
    return result
