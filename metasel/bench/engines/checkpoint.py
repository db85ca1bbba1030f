"""One set of weights per task: a random-weight checkpoint built once, saved, and converted per engine.

The checkpoint is what transformers builds from the task's model config and seed
(:func:`metasel.bench.serve.build_model`), saved as safetensors with a word-level tokenizer
over the whole vocabulary (``<pad>``, ``<s>``, ``</s>``, ``a``, ``b``, ``ab``, then ``t6`` …, with
the one merge a + b — the engines' converters and tokenizers need one; prompts are token ids,
so the tokenizer never splits text). Beside it lies ``metasel-reference.json``: transformers' greedy tokens for a few
prompts, the correctness gate every engine is checked against.

The folder name is a hash of everything that decides the weights, so every engine of a
task converts the same weights, and a converted artifact (GGUF, CTranslate2, ONNX,
OpenVINO IR) cached beside it is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

FORMAT = 2  # 2: a BPE tokenizer (llama.cpp needs merges)
REFERENCE = "metasel-reference.json"
ENV_VAR = "METASEL_CHECKPOINTS_DIR"
GATE_PROMPTS = 2
GATE_PROMPT_LEN = 12
GATE_TOKENS = 8


def checkpoints_root() -> Path:
    """``$METASEL_CHECKPOINTS_DIR``, else ``$XDG_CACHE_HOME/metasel/checkpoints`` (``~/.cache``)."""
    from metasel.bench.engines.envs import cache_dir

    return cache_dir(ENV_VAR, "checkpoints")


def max_positions_for(needed: int) -> int:
    """The position budget saved in the config: a power of two ≥ 512 that fits the workload."""
    n = 512
    while n < needed:
        n *= 2
    return n


def checkpoint_key(model: dict, seed: int, max_positions: int) -> str:
    blob = json.dumps({"format": FORMAT, "model": model, "seed": int(seed), "max_positions": int(max_positions)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _tokenizer(vocab: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # A BPE vocabulary with one merge (a + b -> ab): llama.cpp loads a BPE vocabulary only with merges.
    words = {"<pad>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "ab": 5, **{f"t{i}": i for i in range(6, vocab)}}
    tok = Tokenizer(models.BPE(words, [("a", "b")], unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<pad>")


def gate_prompts(vocab: int, seed: int) -> list[list[int]]:
    import numpy as np

    rng = np.random.default_rng(seed + 7)
    return [rng.integers(3, vocab, size=GATE_PROMPT_LEN).tolist() for _ in range(GATE_PROMPTS)]


def ensure_checkpoint(model: dict, *, seed: int, needed_positions: int, root: Path | None = None) -> tuple[Path, float]:
    """The task's checkpoint folder (built if missing) and the seconds building it took (0 when cached)."""
    import torch

    from metasel.bench.serve import build_model

    max_pos = max_positions_for(needed_positions)
    root = root or checkpoints_root()
    path = root / checkpoint_key(model, seed, max_pos)
    if (path / REFERENCE).exists():
        return path, 0.0
    t0 = time.perf_counter()
    tmp = root / f".{path.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lm = build_model(model, attention="sdpa", max_positions=max_pos, seed=seed, device="cpu")
    lm.config.bos_token_id, lm.config.eos_token_id, lm.config.pad_token_id = 1, 2, 0
    lm.generation_config.bos_token_id, lm.generation_config.eos_token_id = 1, 2
    lm.save_pretrained(tmp)
    _tokenizer(int(model["vocab"])).save_pretrained(tmp)
    prompts = gate_prompts(int(model["vocab"]), seed)
    greedy = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p])
            out = lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=GATE_TOKENS,
                              min_new_tokens=GATE_TOKENS, do_sample=False, eos_token_id=None, pad_token_id=0)
            greedy.append(out[0, len(p):].tolist())
    (tmp / REFERENCE).write_text(json.dumps({"format": FORMAT, "model": model, "seed": seed, "max_positions": max_pos,
                                             "prompts": prompts, "greedy": greedy}), encoding="utf-8")
    try:
        os.replace(tmp, path)
    except OSError:  # another process finished it first
        shutil.rmtree(tmp, ignore_errors=True)
    return path, time.perf_counter() - t0
