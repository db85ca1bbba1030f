"""Importers: a generic algorithm-selection CSV, and the LLM-Inference-Bench table.

Both return a validated :class:`~metasel.data.table.PerfTable` without touching any store,
so a bad file is refused before anything is written.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metasel._schema import STATUSES
from metasel.errors import InputDataError
from metasel.spec import task_id_of

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from metasel.data.table import PerfTable

GENERIC_HARDWARE = "any"


def read_text_table(path: str | Path, *, what: str = "CSV") -> "pd.DataFrame":
    """Read a CSV into a frame of strings; every failure names the file.

    Empty cells stay empty strings (``keep_default_na=False``) so that a literal ``nan``
    can be told apart from a missing value.
    """
    import pandas as pd

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if not data.strip():
        raise InputDataError(f"{path}: expected a {what} with a header row, got an empty file")
    if b"\x00" in data:
        raise InputDataError(f"{path}: expected a UTF-8 {what} text file, got binary data")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputDataError(f"{path}: expected UTF-8 text, got an undecodable byte at offset {exc.start}") from exc
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InputDataError(f"{path}: malformed {what}: {exc}") from exc
    records = [r for r in records if r and any(cell.strip() for cell in r)]
    if not records:
        raise InputDataError(f"{path}: expected a {what} with a header row, got no columns")
    header = [c.strip() for c in records[0]]
    if any(not c for c in header):
        raise InputDataError(f"{path}: header: expected a name for every column, got an empty column name")
    seen = set()
    for c in header:
        if c in seen:
            raise InputDataError(f"{path}: header: column {c!r} appears twice")
        seen.add(c)
    for line, r in enumerate(records[1:], start=2):
        if len(r) != len(header):
            raise InputDataError(f"{path}: row {line}: expected {len(header)} fields like the header, got {len(r)}")
    frame = pd.DataFrame(records[1:], columns=header, dtype=str)
    return frame


def _number(path: Path, row: int, col: str, text: str, *, allow_empty: bool) -> float:
    text = text.strip()
    if text == "":
        if allow_empty:
            return math.nan
        raise InputDataError(f"{path}: row {row}, column {col!r}: expected a number, got an empty cell")
    try:
        value = float(text)
    except ValueError:
        raise InputDataError(f"{path}: row {row}, column {col!r}: expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise InputDataError(f"{path}: row {row}, column {col!r}: expected a finite number, got {text!r}")
    return value


#: failure words of other tools' result files, by the metasel status they mean (lower case)
_FAILURE_WORDS = {
    "oom": ("oom", "memout", "memory", "out of memory", "out_of_memory", "mem", "memlimit"),
    "timeout": ("timeout", "time", "timelimit", "time_limit", "to", "cutoff"),
    "unsupported": ("unsupported", "not supported", "not_supported", "n/a", "na", "not applicable"),
}


def status_of(word: str) -> tuple[str, str]:
    """A status word of any tool → (metasel status, message keeping the word).

    ``ok`` (or empty) is success; every other word is a failure, mapped to ``oom``,
    ``timeout`` or ``unsupported`` where the word says so (``memout``, ``TIMEOUT``), else
    ``error`` (``crash``, ``other``); the word itself is kept in the message.
    """
    raw = str(word).strip()
    low = raw.lower()
    if low in ("", "ok"):
        return "ok", ""
    if low in STATUSES:
        return low, "" if raw == low else f"status {raw!r}"
    for status, words in _FAILURE_WORDS.items():
        if low in words:
            return status, f"status {raw!r}"
    return "error", f"status {raw!r}"


#: the longest name (task, method, hardware, status word) an imported CSV may give
MAX_NAME = 200


def read_generic_csv(
    perf_csv: str | Path,
    *,
    features_csv: str | Path | None = None,
    objective: str = "min",
    hardware: str = GENERIC_HARDWARE,
) -> "PerfTable":
    """Read algorithm-selection data: ``task,method,value[,status][,hardware]``.

    Args:
        perf_csv: one row per (task, method) run. ``value`` may be empty on a row whose
            status is not ``ok``; when given there it is kept as is (e.g. a PAR10 penalty).
            ``status`` may be any word: see :func:`status_of`.
        features_csv: optional ``task,<feature>...``; empty cells are missing values,
            constant columns are fine.
        objective: ``min`` or ``max`` for ``value``.
        hardware: hardware id given to rows without a ``hardware`` column.
    """
    from metasel.data.table import PerfTable

    if objective not in ("min", "max"):
        raise InputDataError(f"--objective: expected 'min' or 'max', got {objective!r}")
    path = Path(perf_csv)
    frame = read_text_table(path)
    required = ("task", "method", "value")
    allowed = (*required, "status", "hardware")
    for col in frame.columns:
        if col not in allowed:
            raise InputDataError(f"{path}: header: unknown column {col!r}; expected {list(required)} and optionally 'status', 'hardware'")
    for col in required:
        if col not in frame.columns:
            raise InputDataError(f"{path}: header: missing column {col!r}; expected {list(required)} and optionally 'status', 'hardware'")
    if frame.empty:
        raise InputDataError(f"{path}: expected at least one data row, got only a header")
    rows = []
    source = f"import:csv:{path.name}"
    first_row: dict[tuple[str, str, str], int] = {}
    for i, rec in enumerate(frame.to_dict("records"), start=2):
        for col in ("task", "method"):
            if not rec[col].strip():
                raise InputDataError(f"{path}: row {i}, column {col!r}: expected a non-empty name, got an empty cell")
        for col, limit in (("task", MAX_NAME), ("method", MAX_NAME), ("hardware", MAX_NAME), ("status", MAX_NAME)):
            if len(rec.get(col, "")) > limit:
                raise InputDataError(f"{path}: row {i}, column {col!r}: expected at most {limit} characters, got "
                                     f"{len(rec[col]):,} ({rec[col][:20]!r}...)")
        key = (rec["task"].strip(), rec["method"].strip(), rec.get("hardware", "").strip() or hardware)
        if key in first_row:
            raise InputDataError(f"{path}: row {i}: task {key[0]!r}, method {key[1]!r} on {key[2]!r} is already given at "
                                 f"row {first_row[key]}; expected one row per run (merge repeats before importing)")
        first_row[key] = i
        status, message = status_of(rec.get("status", ""))
        value = _number(path, i, "value", rec["value"], allow_empty=status != "ok")
        if value < 0:
            raise InputDataError(f"{path}: row {i}, column 'value': expected a non-negative number, got {rec['value'].strip()!r}")
        hw = rec.get("hardware", "").strip() or hardware
        rows.append({"task_id": rec["task"].strip(), "method": rec["method"].strip(), "hardware_id": hw,
                     "value": value, "status": status, "message": message, "source": source})
    tasks = {r["task_id"]: {"task_id": r["task_id"], "name": r["task_id"],
                            "spec": {"kind": "generic", "name": r["task_id"]}, "features": {}} for r in rows}
    if features_csv is not None:
        for task, feats in read_features_csv(features_csv).items():
            entry = tasks.setdefault(task, {"task_id": task, "name": task,
                                            "spec": {"kind": "generic", "name": task}, "features": {}})
            entry["features"] = feats
    return PerfTable(rows, list(tasks.values()), directions={"value": objective}, source=str(path))


def read_features_csv(path: str | Path) -> dict[str, dict[str, float | None]]:
    """``task,<feature>...`` → {task: {feature: value or None}}; values must be numbers."""
    path = Path(path)
    frame = read_text_table(path, what="features CSV")
    if frame.columns[0] != "task":
        raise InputDataError(f"{path}: header: expected the first column to be 'task', got {frame.columns[0]!r}")
    if frame.empty:
        raise InputDataError(f"{path}: expected at least one data row, got only a header")
    out: dict[str, dict[str, float | None]] = {}
    for i, rec in enumerate(frame.to_dict("records"), start=2):
        task = rec["task"].strip()
        if not task:
            raise InputDataError(f"{path}: row {i}, column 'task': expected a non-empty name, got an empty cell")
        if task in out:
            raise InputDataError(f"{path}: row {i}: task {task!r} appears twice")
        feats = {}
        for col in frame.columns[1:]:
            v = _number(path, i, col, rec[col], allow_empty=True)
            feats[col] = None if math.isnan(v) else v
        out[task] = feats
    return out


# ---------------------------------------------------------------------- LLM-Inference-Bench

#: Public config dimensions of the models in LLM-Inference-Bench.
HF_MODELS: dict[str, dict[str, Any]] = {
    "meta-llama/Llama-2-7b-hf": dict(arch="llama", layers=32, hidden=4096, heads=32, kv_heads=32, intermediate=11008, vocab=32000),
    "meta-llama/Llama-2-13b-hf": dict(arch="llama", layers=40, hidden=5120, heads=40, kv_heads=40, intermediate=13824, vocab=32000),
    "meta-llama/Llama-2-70b-hf": dict(arch="llama", layers=80, hidden=8192, heads=64, kv_heads=8, intermediate=28672, vocab=32000),
    "meta-llama/Meta-Llama-3-8B": dict(arch="llama", layers=32, hidden=4096, heads=32, kv_heads=8, intermediate=14336, vocab=128256),
    "neuralmagic/Meta-Llama-3-8B-Instruct-FP8": dict(arch="llama", layers=32, hidden=4096, heads=32, kv_heads=8, intermediate=14336, vocab=128256, dtype="fp8"),
    "meta-llama/Meta-Llama-3-70B": dict(arch="llama", layers=80, hidden=8192, heads=64, kv_heads=8, intermediate=28672, vocab=128256),
    "mistralai/Mistral-7B-v0.1": dict(arch="mistral", layers=32, hidden=4096, heads=32, kv_heads=8, intermediate=14336, vocab=32000),
    "mistralai/Mistral-7B-v0.3": dict(arch="mistral", layers=32, hidden=4096, heads=32, kv_heads=8, intermediate=14336, vocab=32768),
    "mistralai/Mixtral-8x7B-v0.1": dict(arch="mixtral", layers=32, hidden=4096, heads=32, kv_heads=8, intermediate=14336, vocab=32000, experts=8, experts_per_token=2),
    "Qwen/Qwen2-7B": dict(arch="qwen2", layers=28, hidden=3584, heads=28, kv_heads=4, intermediate=18944, vocab=152064),
    "Qwen/Qwen2-72B": dict(arch="qwen2", layers=80, hidden=8192, heads=64, kv_heads=8, intermediate=29568, vocab=152064),
    "Qwen/Qwen1.5-7B": dict(arch="qwen2", layers=32, hidden=4096, heads=32, kv_heads=32, intermediate=11008, vocab=151936),
    "Deci/DeciLM-7B": dict(arch="deci", layers=32, hidden=4096, heads=32, kv_heads=4, intermediate=14336, vocab=32000),
    "BAAI/Aquila-7B": dict(arch="llama", layers=32, hidden=4096, heads=32, kv_heads=32, intermediate=11008, vocab=100008),
    "EleutherAI/gpt-j-6b": dict(arch="gptj", layers=28, hidden=4096, heads=16, kv_heads=16, intermediate=16384, vocab=50400),
    "bigscience/bloom-7b1": dict(arch="bloom", layers=30, hidden=4096, heads=32, kv_heads=32, intermediate=16384, vocab=250880),
    "facebook/opt-6.7b": dict(arch="opt", layers=32, hidden=4096, heads=32, kv_heads=32, intermediate=16384, vocab=50272),
    "facebook/opt-13b": dict(arch="opt", layers=40, hidden=5120, heads=40, kv_heads=40, intermediate=20480, vocab=50272),
    "huggyllama/llama-7b": dict(arch="llama", layers=32, hidden=4096, heads=32, kv_heads=32, intermediate=11008, vocab=32000),
    "huggyllama/llama-13b": dict(arch="llama", layers=40, hidden=5120, heads=40, kv_heads=40, intermediate=13824, vocab=32000),
    "google/gemma-7b": dict(arch="gemma", layers=28, hidden=3072, heads=16, kv_heads=16, intermediate=24576, vocab=256000),
    "google/gemma-1.1-7b-it": dict(arch="gemma", layers=28, hidden=3072, heads=16, kv_heads=16, intermediate=24576, vocab=256000),
}

#: Per-device public specs: dense fp16/bf16 TFLOP/s, memory bandwidth GB/s, memory GB.
ACCELERATORS: dict[str, dict[str, Any]] = {
    "A100": dict(vendor="nvidia", peak_tflops=312.0, mem_bw_gbs=2039.0, memory_gb=80.0),
    "H100": dict(vendor="nvidia", peak_tflops=989.0, mem_bw_gbs=3350.0, memory_gb=80.0),
    "GH200": dict(vendor="nvidia", peak_tflops=989.0, mem_bw_gbs=4000.0, memory_gb=96.0),
    "MI250": dict(vendor="amd", peak_tflops=362.0, mem_bw_gbs=3277.0, memory_gb=128.0),
    "MI300X": dict(vendor="amd", peak_tflops=1307.0, mem_bw_gbs=5300.0, memory_gb=192.0),
    "PVC": dict(vendor="intel", peak_tflops=839.0, mem_bw_gbs=3277.0, memory_gb=128.0),
    "Max1550": dict(vendor="intel", peak_tflops=839.0, mem_bw_gbs=3277.0, memory_gb=128.0),
    "Gaudi2": dict(vendor="intel-habana", peak_tflops=432.0, mem_bw_gbs=2460.0, memory_gb=96.0),
    "SN40L": dict(vendor="sambanova", peak_tflops=638.0, mem_bw_gbs=1600.0, memory_gb=64.0),
}

#: What each serving framework does, as a technique vector.
FRAMEWORKS: dict[str, dict[str, float]] = {
    "vLLM": {"paged_kv_cache": 1, "continuous_batching": 1, "cuda_graphs": 1, "fused_kernels": 1},
    "TensorRT-LLM": {"paged_kv_cache": 1, "continuous_batching": 1, "compiled_engine": 1, "fused_kernels": 1},
    "llama.cpp": {"gguf_kernels": 1},
    "Deepspeed-MII": {"continuous_batching": 1, "fused_kernels": 1, "blocked_kv_cache": 1},
    "Deepspeed": {"graph_mode": 1, "fused_kernels": 1},
    "sambaflow": {"compiled_engine": 1, "dataflow": 1},
}
_BITS = {"fp16": 16, "float16": 16, "fp8": 8, "int8": 8, "int8_sq": 8}

LLAMACPP_FLAG = "batch_semantics=prompt_batch"
COLLAPSE_FLAG = "latency_collapse"
_BENCH_COLUMNS = ("model", "hardware", "num_devices", "framework", "batch_size", "input_len", "output_len",
                  "precision", "latency_s", "throughput_tok_s", "ttft_s", "batch_size_semantics",
                  "flag_latency_collapse", "in_main_sweep")


def _precision_bits(precision: str) -> dict[str, float]:
    if not precision or precision == "float16":
        return {"weight_bits": 16, "kv_bits": 16}
    parts = dict(p.split(":", 1) for p in precision.split("/") if ":" in p)
    return {"weight_bits": _BITS.get(parts.get("w", "fp16"), 16), "kv_bits": _BITS.get(parts.get("kv", "fp16"), 16)}


def read_llm_inference_bench(
    path: str | Path,
    *,
    extended: bool = False,
    include_flagged: bool = False,
    llamacpp_batched: str = "mark",
) -> "PerfTable":
    """Read ``llm_inference_bench.csv`` into a performance table.

    task = model × batch × input length × output length; method = framework
    (+ precision with ``extended``); hardware = accelerator × device count.

    Args:
        extended: also take the quantisation rows, method = ``framework+precision``.
        include_flagged: keep rows with ``flag_latency_collapse`` (flagged ``latency_collapse``).
        llamacpp_batched: ``mark`` (flag llama.cpp rows at batch > 1, whose batch is the
            prompt-processing batch of one sequence) or ``drop`` them.
    """
    from metasel.data.table import PerfTable

    if llamacpp_batched not in ("mark", "drop"):
        raise InputDataError(f"llamacpp_batched: expected 'mark' or 'drop', got {llamacpp_batched!r}")
    path = Path(path)
    df, is_llamacpp_batched, flagged = _bench_rows(path, extended=extended, include_flagged=include_flagged,
                                                   llamacpp_batched=llamacpp_batched)
    tasks: dict[str, dict] = {}
    methods: dict[str, dict] = {}
    hardware: dict[str, dict] = {}
    rows = []
    for rec, lc_batched, flag in zip(df.to_dict("records"), is_llamacpp_batched, flagged[df.index]):
        tid = _bench_task(rec, tasks)
        method = _bench_method(rec, methods, extended=extended)
        hwid = _bench_hardware(rec, hardware)
        flags = ([LLAMACPP_FLAG] if lc_batched else []) + ([COLLAPSE_FLAG] if flag else [])
        rows.append({
            "task_id": tid, "method": method, "hardware_id": hwid,
            # the table's throughput counts prompt and generated tokens together
            "total_tok_s": rec["throughput_tok_s"],
            "throughput_tok_s": rec["throughput_tok_s"] * rec["output_len"] / (rec["input_len"] + rec["output_len"]),
            "latency_ms": rec["latency_s"] * 1000.0 if rec["latency_s"] == rec["latency_s"] else math.nan,
            "ttft_ms": rec["ttft_s"] * 1000.0 if rec["ttft_s"] == rec["ttft_s"] else math.nan,
            "status": "ok", "source": "llm_inference_bench", "flags": ",".join(flags),
        })
    if not rows:
        raise InputDataError(f"{path}: no usable rows (main sweep with throughput)")
    return PerfTable(rows, list(tasks.values()), list(methods.values()), list(hardware.values()), source=str(path))


def _bench_rows(path: Path, *, extended: bool, include_flagged: bool, llamacpp_batched: str):
    """The table's usable rows (typed), which are llama.cpp rows at batch > 1, and which are flagged."""
    import pandas as pd

    raw = read_text_table(path, what="LLM-Inference-Bench CSV")
    missing = [c for c in _BENCH_COLUMNS if c not in raw.columns]
    if missing:
        raise InputDataError(f"{path}: header: missing column {missing[0]!r}; is this llm_inference_bench.csv?")
    df = raw.copy()
    for col in ("num_devices", "batch_size", "input_len", "output_len"):
        vals = pd.to_numeric(df[col], errors="coerce")
        if vals.isna().any():
            i = int(vals.isna().to_numpy().nonzero()[0][0])
            raise InputDataError(f"{path}: row {i + 2}, column {col!r}: expected an integer, got {df[col].iloc[i]!r}")
        df[col] = vals.astype(int)
    for col in ("latency_s", "throughput_tok_s", "ttft_s"):
        df[col] = pd.to_numeric(df[col].replace("", None), errors="coerce")
    main = df["in_main_sweep"].str.lower() == "true"
    flagged = df["flag_latency_collapse"].str.lower() == "true"
    quant = (~main) & (df["precision"] != "") & df["throughput_tok_s"].notna()
    keep = main | (quant if extended else False)
    if not include_flagged:
        keep &= ~flagged
    df = df[keep & df["throughput_tok_s"].notna()].copy()
    is_llamacpp_batched = (df["framework"] == "llama.cpp") & (df["batch_size"] > 1)
    if llamacpp_batched == "drop":
        df = df[~is_llamacpp_batched]
        is_llamacpp_batched = is_llamacpp_batched[~is_llamacpp_batched]
    return df, is_llamacpp_batched, flagged


def _bench_task(rec: dict, tasks: dict) -> str:
    """The task id of a row (model × batch × input × output), its descriptor added to ``tasks``."""
    dims = HF_MODELS.get(rec["model"], {"arch": "unknown"})
    task = {
        "model": {**{"dtype": "float16"}, **dims, "hf_id": rec["model"]},
        "workload": {"prompt_len": rec["input_len"], "output_len": rec["output_len"],
                     "batch_size": rec["batch_size"], "num_requests": rec["batch_size"],
                     "shared_prefix": 0.0, "domain": None},
    }
    tid = task_id_of(task)
    if tid not in tasks:
        short = rec["model"].split("/")[-1]
        tasks[tid] = {"task_id": tid, "name": f"{short} b{rec['batch_size']} in{rec['input_len']} out{rec['output_len']}",
                      "spec": task, "features": {}}
    return tid


def _bench_method(rec: dict, methods: dict, *, extended: bool) -> str:
    """The method of a row (framework, + precision with ``extended``), its descriptor added to ``methods``."""
    framework = rec["framework"]
    precision = rec["precision"] if extended and not rec["in_main_sweep"].lower() == "true" else ""
    precision = "" if precision == "float16" else precision
    method = framework if not extended else f"{framework}+{precision or 'default'}"
    if method not in methods:
        techniques = {**FRAMEWORKS.get(framework, {}), **_precision_bits(precision)}
        methods[method] = {"method": method, "techniques": techniques,
                           "description": f"{framework} serving framework" + (f", precision {precision}" if precision else "")}
    return method


def _bench_hardware(rec: dict, hardware: dict) -> str:
    """The hardware id of a row (accelerator × device count), its descriptor added to ``hardware``."""
    hwid = f"{rec['hardware']} x{rec['num_devices']}"
    if hwid not in hardware:
        spec = ACCELERATORS.get(rec["hardware"], {})
        n = rec["num_devices"]
        hardware[hwid] = {"hardware_id": hwid, "name": hwid, "specs": {
            "accelerator": rec["hardware"], "device": "gpu" if spec.get("vendor") in ("nvidia", "amd", "intel") else "accelerator",
            "count": n, **{k: v for k, v in spec.items()},
            **({"total_tflops": spec["peak_tflops"] * n, "total_mem_bw_gbs": spec["mem_bw_gbs"] * n,
                "total_memory_gb": spec["memory_gb"] * n} if spec else {}),
        }}
    return hwid
