"""The engine worker: runs inside an engine's own environment and measures cells for the collector.

Started by path (``ENV/bin/python -s .../runtime/worker.py ENGINE PARENT_PID THREADS``) so
that nothing of metasel's own environment is imported: this folder holds only stdlib
modules and the backends (``be_<engine>.py``), each importing its engine.

Protocol: one JSON object per line. The worker writes on its original stdout (engine
chatter is sent to stderr) and reads stdin.

- worker → collector, once: ``{"op": "ready", "engine": ..., "versions": {dist: version}}``
  or ``{"op": "failed", "message": ...}``.
- collector → worker: ``{"op": "measure", "id": ..., "checkpoint": DIR, "settings": {...},
  "prompts": [[ids]], "output_len": N, "arrival": {"process": ...}, "arrivals": [s] | null,
  "slo": {...}, "repeats": R, "min_repeat_s": S, "max_inner": K}`` (a short workload is served
  several times per repeat, as the transformers collector does, with its constants); the worker answers ``{"op": "result", "id": ..., "result":
  {"status": ..., metrics ..., "message": ...}}``. A failure of the engine is a result
  (status ``error``/``unsupported``/``oom`` with the engine's message), never a dead worker.
- collector → worker: ``{"op": "quit"}`` (or end of stdin).

The worker exits when its parent dies, so a collector killed for a timeout leaves no engine behind.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import statistics
import sys
import threading
import time

def _watch_parent(parent_pid: int) -> None:
    import lifetime

    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            lifetime.kill_all()  # servers the backends started go with us
            os._exit(3)


def _reset_peak(pids) -> dict:
    base = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
            base[pid] = _status_kb(pid, "VmRSS")
        except OSError:
            pass
    return base


def _status_kb(pid, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return math.nan


def _peak_mb(base: dict) -> float:
    """Peak resident memory above the cell's start, summed over the engine's processes (MiB)."""
    total = 0.0
    for pid, rss in base.items():
        try:
            total += max(0.0, _status_kb(pid, "VmHWM") - rss)
        except OSError:
            pass
    return total / 1024.0


class Worker:
    def __init__(self, engine: str, threads: int):
        self.engine, self.threads = engine, threads
        self.mod = importlib.import_module(f"be_{engine}")
        import loadgen

        self.loadgen = loadgen
        self.loaded = None  # (checkpoint, settings json) -> backend
        self.backend = None

    def _backend(self, checkpoint: str, settings: dict):
        key = (checkpoint, json.dumps(settings, sort_keys=True))
        if self.loaded != key:
            self.close()
            self.backend = self.mod.Backend(checkpoint, settings, self.threads)
            self.loaded = key
            return self.backend, True
        return self.backend, False

    def close(self):
        if self.backend is not None and hasattr(self.backend, "close"):
            self.backend.close()
        self.backend, self.loaded = None, None

    def gate(self, backend, checkpoint: str) -> tuple[float, str]:
        with open(os.path.join(checkpoint, "metasel-reference.json")) as f:
            ref = json.load(f)
        same = total = 0
        for prompt, want in zip(ref["prompts"], ref["greedy"]):
            got = list(backend.greedy(prompt, len(want)))
            same += sum(int(a == b) for a, b in zip(got, want))
            total += len(want)
        agreement = same / total
        return agreement, f"greedy tokens agree with transformers on {same} of {total}"

    def measure(self, msg: dict) -> dict:
        lg = self.loadgen
        t0 = time.perf_counter()
        base = _reset_peak([os.getpid()])
        backend, fresh = self._backend(msg["checkpoint"], msg["settings"])
        load_s = time.perf_counter() - t0 if fresh else 0.0
        base.update(_reset_peak(getattr(backend, "pids", lambda: [])()))
        agreement, gate_msg = self.gate(backend, msg["checkpoint"])
        if getattr(backend, "exact", False) and agreement < 1.0:
            return {"status": "error", "message": f"token gate failed: {gate_msg} (an unquantised engine must agree on all)",
                    "token_agreement": agreement}
        prompts, out_len = msg["prompts"], int(msg["output_len"])
        arrival, arrivals, slo = msg.get("arrival") or {"process": "burst"}, msg.get("arrivals"), msg.get("slo")

        def one_serve():
            if hasattr(backend, "serve"):  # an engine with its own server (vLLM)
                return backend.serve(prompts, out_len, arrival, arrivals)
            return lg.serve_batched(prompts, out_len, arrival, arrivals, backend.max_batch, backend.run_batch)

        w0 = time.perf_counter()
        warm = lg.summarise([one_serve()], out_len, slo=slo)
        setup_s = load_s + (time.perf_counter() - w0)
        inner = 1 if arrival.get("process") in ("poisson", "constant") else \
            max(1, min(int(msg["max_inner"]), math.ceil(float(msg["min_repeat_s"]) * 1000.0 / max(warm["latency_ms"], 1e-3))))
        runs = [lg.summarise([one_serve() for _ in range(inner)], out_len, slo=slo) for _ in range(int(msg["repeats"]))]
        result = lg.median_runs(runs)
        thr = [r["throughput_tok_s"] for r in runs]
        result.update(status="ok", repeats=len(runs), setup_s=setup_s,
                      convert_s=getattr(backend, "convert_s", 0.0) if fresh else 0.0,
                      peak_mem_mb=_peak_mb(base), token_agreement=agreement,
                      spread=statistics.pstdev(thr) / statistics.median(thr) if len(thr) > 1 else 0.0,
                      message=gate_msg + (f"; {inner} serves per repeat" if inner > 1 else ""))
        return result


def _failure(exc: BaseException) -> dict:
    text = f"{type(exc).__name__}: {exc}".strip()
    return {"status": "error", "message": text.splitlines()[0][:500], "exception": type(exc).__name__}


def main(argv) -> int:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the collector's to handle; this process dies with it
    engine, parent, threads = argv[1], int(argv[2]), int(argv[3])
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the engine prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()

    def send(obj):
        proto.write(json.dumps(obj, allow_nan=True) + "\n")
        proto.flush()

    try:
        worker = Worker(engine, threads)
        send({"op": "ready", "engine": engine, "versions": worker.mod.versions(), "pid": os.getpid()})
    except Exception as exc:  # noqa: BLE001 - reported to the collector, which says what is missing
        send({"op": "failed", "message": f"{type(exc).__name__}: {exc}"})
        return 1
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("op") == "quit":
            break
        try:
            result = worker.measure(msg)
        except Exception as exc:  # noqa: BLE001 - the failure is the observation
            worker.close()
            result = _failure(exc)
        send({"op": "result", "id": msg.get("id"), "result": result})
    worker.close()
    import lifetime

    lifetime.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
