"""Converted artifacts cached beside the checkpoint they come from (stdlib only).

The checkpoint folder's name is a hash of what decides its weights, so an artifact under
``CHECKPOINT/converted/TAG`` (TAG names the engine, its version and the conversion's
settings) is the same conversion of the same weights. A conversion is written to a
temporary folder and renamed into place, so a killed conversion leaves nothing that looks done.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time


def converted(checkpoint: str, tag: str, command) -> tuple[str, float]:
    """The artifact folder for ``tag`` and the seconds converting took now (0 when cached).

    ``command(tmp_dir)`` is the converter's command line (it writes ``tmp_dir``); it runs in a
    child process, so the converter's memory is not billed to the engine's serving peak.
    """
    out = os.path.join(checkpoint, "converted", tag)
    if os.path.exists(os.path.join(out, ".done")):
        return out, 0.0
    tmp = f"{out}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    t0 = time.perf_counter()
    cmd = command(tmp)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise RuntimeError(f"converting for {tag} failed (exit {proc.returncode}): " + " | ".join(lines[-3:])[-400:])
    seconds = time.perf_counter() - t0
    with open(os.path.join(tmp, ".done"), "w") as f:
        f.write(json.dumps({"seconds": seconds, "command": cmd}))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out, seconds


def model_config(checkpoint: str) -> dict:
    """The checkpoint's transformers ``config.json``."""
    with open(os.path.join(checkpoint, "config.json")) as f:
        return json.load(f)


def token_names(checkpoint: str) -> list[str]:
    """id -> token string of the checkpoint's word-level tokenizer."""
    with open(os.path.join(checkpoint, "tokenizer.json")) as f:
        vocab = json.load(f)["model"]["vocab"]
    names = [""] * (max(vocab.values()) + 1)
    for tok, i in vocab.items():
        names[i] = tok
    return names
