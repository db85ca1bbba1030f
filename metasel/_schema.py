"""Names shared by the table, the store and the specs: metrics, statuses, columns."""

from __future__ import annotations

#: metric name -> (direction, unit). ``value`` is the generic metric of imported
#: algorithm-selection data; its direction is set by the import (``--objective``).
METRICS: dict[str, tuple[str | None, str]] = {
    "throughput_tok_s": ("max", "tokens/s"),  # generated tokens per second
    "total_tok_s": ("max", "tokens/s"),  # prompt + generated tokens per second
    "ttft_ms": ("min", "ms"),
    "tpot_ms": ("min", "ms"),
    "latency_ms": ("min", "ms"),
    "peak_mem_mb": ("min", "MiB"),
    "setup_s": ("min", "s"),
    "value": (None, "as imported"),
    # store schema 2: serving percentiles over the requests of one serve (median over repeats)
    **{f"{m}_{q}_ms": ("min", "ms") for m in ("ttft", "tpot", "e2e") for q in ("p50", "p90", "p99")},
    "goodput_req_s": ("max", "requests/s"),  # requests per second that met the workload's SLO
    "convert_s": ("min", "s"),  # converting the shared checkpoint to the engine's format (cached afterwards)
}
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
#: metrics added in store schema 2; an observation's id hashes them only when they are set,
#: so the ids of observations written before them do not change
SCHEMA2_METRICS: tuple[str, ...] = METRIC_NAMES[METRIC_NAMES.index("value") + 1:]

STATUSES: tuple[str, ...] = ("ok", "oom", "error", "timeout", "unsupported")

#: observation columns in store order, with their kinds.
OBS_COLUMNS: dict[str, str] = {
    "obs_id": "str",
    "task_id": "str",
    "method": "str",
    "hardware_id": "str",
    **{m: "float" for m in METRIC_NAMES},
    "repeats": "int",
    "spread": "float",
    "status": "str",
    "message": "str",
    "timestamp": "str",
    "versions": "str",
    "seed": "int",
    "source": "str",
    "flags": "str",
    "machine": "str",  # store schema 3: the machine's state during the cell (JSON; bench.machine)
}
#: observation columns added after schema 1; an observation's id hashes one only when it is set,
#: so the ids of observations written before it do not change
LATE_COLUMNS: frozenset[str] = frozenset({*SCHEMA2_METRICS, "machine"})
#: the flag of an observation measured on a busy machine or with disagreeing repeats
NOISY = "noisy"
KEY_COLUMNS: tuple[str, ...] = ("task_id", "method", "hardware_id")

TASK_COLUMNS: tuple[str, ...] = ("task_id", "name", "spec", "features")
METHOD_COLUMNS: tuple[str, ...] = ("method", "techniques", "description")
HARDWARE_COLUMNS: tuple[str, ...] = ("hardware_id", "name", "specs", "price_per_hour")

DIRECTIONS: tuple[str, ...] = ("min", "max")
