"""Hardware probe: what this process runs on, as a descriptor with a stable id.

The thread count is part of the profile: the same machine with 1 and with 2 threads
gives two hardware ids. Library versions go with each observation, not with the
hardware, so an upgrade of torch does not change the machine's identity.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from typing import Any

#: Dense bf16 TFLOP/s and memory bandwidth (GB/s) of GPUs the probe may meet.
GPU_SPECS: dict[str, tuple[float, float]] = {
    "H200": (989.0, 4800.0), "H100": (989.0, 3350.0), "GH200": (989.0, 4000.0), "A100": (312.0, 2039.0),
    "L40S": (362.0, 864.0), "L4": (121.0, 300.0), "A10": (125.0, 600.0), "T4": (65.0, 320.0),
    "V100": (125.0, 900.0), "RTX 4090": (165.0, 1008.0), "MI300X": (1307.0, 5300.0),
}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_peak_gflops(threads: int, flags: set[str]) -> float:
    """Nominal fp32 peak: threads × 2.5 GHz × FMA lanes (AVX-512 32, AVX2 16, else 8) — an estimate."""
    per_cycle = 32 if "avx512f" in flags else 16 if "avx2" in flags else 8
    return threads * 2.5 * per_cycle


def probe(*, threads: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """Describe this machine as a hardware descriptor ``{hardware_id, name, specs, price_per_hour}``.

    Args:
        threads: torch threads the collector will use (default: all cores).
        device: ``cpu`` or ``cuda``; with ``cuda`` the GPU's name, memory and compute
            capability are part of the profile.
    """
    import psutil

    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    logical = psutil.cpu_count(logical=True) or cores
    threads = int(threads or logical)
    flags = _cpu_flags()
    specs: dict[str, Any] = {
        "device": "cpu", "cpu_model": _cpu_model(), "cpu_arch": platform.machine(), "cores": int(cores),
        "logical_cpus": int(logical), "threads": threads,
        "memory_gb": int(round(psutil.virtual_memory().total / 2**30)),
        "isa": "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other",
        "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_tile" in flags,
        "peak_tflops": round(_cpu_peak_gflops(threads, flags) / 1000.0, 4),
        "mem_bw_gbs": None, "count": 1,
    }
    name = f"cpu {specs['cpu_model']} ({threads} thread{'s' if threads != 1 else ''})"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            from metasel.errors import UnsupportedError

            raise UnsupportedError("--device cuda: torch sees no CUDA device on this machine")
        props = torch.cuda.get_device_properties(0)
        gpu = props.name
        peak, bw = next(((p, b) for key, (p, b) in GPU_SPECS.items() if key.lower() in gpu.lower()), (None, None))
        specs.update({
            "device": "cuda", "gpu": gpu, "gpu_memory_gb": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}", "gpu_count": 1,
            "peak_tflops": peak, "mem_bw_gbs": bw, "accelerator_memory_gb": round(props.total_memory / 2**30, 1),
        })
        name = f"cuda {gpu} (+{threads} cpu threads)"
    ident = {k: specs[k] for k in ("device", "cpu_model", "cpu_arch", "cores", "logical_cpus", "threads", "isa")}
    ident["memory_gb"] = specs["memory_gb"]
    if specs["device"] == "cuda":
        ident.update(gpu=specs["gpu"], gpu_memory_gb=round(specs["gpu_memory_gb"]), cc=specs["compute_capability"])
    hid = "hw-" + hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    return {"hardware_id": hid, "name": name, "specs": specs, "price_per_hour": None}


def library_versions() -> dict[str, str]:
    """Versions of the libraries a measurement depends on."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "numpy", "metasel"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
