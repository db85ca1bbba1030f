"""Landmarks: cheap measurements of a task that tell how speculative decoding will pay.

How much prompt lookup speeds decoding up is set by how often the text the model
generates repeats n-grams already in its context; how much assisted decoding pays, by
how often the draft predicts the target's next token. Neither can be read from the spec:
it depends on the model's weights and the prompts. A landmark (Pfahringer et al., 2000)
measures it once per task, cheaply: the target model generates every request greedily
(plain decoding, as the collector builds it: same weights, same prompts, same seed),
then the speculative algorithms are replayed on those fixed token sequences, counting
the target's forward passes. Greedy speculative decoding emits exactly the greedy
tokens, so the replay is exact up to floating-point ties.

- ``lookup_tokens_per_pass``: generated tokens per target forward pass under
  transformers' prompt lookup as the collector runs it (8 candidate tokens, first
  left-to-right match of the last 2-gram, else of the last token).
- ``draft_tokens_per_pass``: the same under assisted decoding with the collector's draft
  (:func:`metasel.bench.serve.draft_model_dict`, seed + 1), using transformers'
  defaults: up to 20 draft tokens, the draft stops after a token it is less than 40%
  sure of.

Values are ≥ 1 (1: speculation never helps). It takes one greedy generation of the
workload and one draft pass per request: seconds for the collector's models.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from metasel.domain.pairs import LANDMARKS

LOOKUP_TOKENS = 8  # prompt_lookup_num_tokens the collector sets
LOOKUP_NGRAM = 2  # transformers' max_matching_ngram_size default
DRAFT_TOKENS = 20  # transformers' num_assistant_tokens default
DRAFT_CONFIDENCE = 0.4  # transformers' assistant_confidence_threshold default


def lookup_passes(seq: Sequence[int], start: int, *, tokens: int = LOOKUP_TOKENS, ngram: int = LOOKUP_NGRAM) -> int:
    """Target forward passes prompt lookup needs to generate ``seq[start:]`` after ``seq[:start]``.

    At each step the candidates are the (up to ``tokens``) tokens that followed the first
    earlier occurrence of the context's last ``ngram``-gram (then shorter n-grams); the
    target accepts the longest prefix of them that matches its own greedy tokens, and adds
    one token of its own.
    """
    seq = list(seq)
    end, i, passes = len(seq), start, 0
    while i < end:
        passes += 1
        cand: list[int] = []
        for g in range(min(ngram, i - 1), 0, -1):
            tail = seq[i - g: i]
            for j in range(0, i - g):  # windows that leave a continuation: start + g < i
                if seq[j: j + g] == tail:
                    cand = seq[j + g: min(j + g + tokens, i)]
                    break
            if cand:
                break
        accepted = 0
        while accepted < len(cand) and i + accepted < end and seq[i + accepted] == cand[accepted]:
            accepted += 1
        i += min(accepted + 1, end - i)
    return passes


def draft_passes(seq: Sequence[int], start: int, agree: Sequence[bool], sure: Sequence[bool], *,
                 tokens: int = DRAFT_TOKENS) -> int:
    """Target forward passes assisted decoding needs to generate ``seq[start:]``.

    ``agree[j]``: the draft's greedy token at position ``j`` (given ``seq[:j]``) is
    ``seq[j]``; ``sure[j]``: its probability reaches the confidence threshold. The draft
    proposes tokens until one it is unsure of or ``tokens`` of them; the target accepts the
    run of agreeing ones and adds its own token.
    """
    end, i, passes = len(seq), start, 0
    while i < end:
        passes += 1
        proposed = 0
        while proposed < tokens and i + proposed < end:
            proposed += 1
            if not sure[i + proposed - 1]:
                break
        accepted = 0
        while accepted < proposed and agree[i + accepted]:
            accepted += 1
        i += min(accepted + 1, end - i)
    return passes


def measure_landmarks(task: dict[str, Any], *, seed: int, device: str = "cpu") -> dict[str, float]:
    """The landmarks of one task (``task_dict`` form) with the collector's model and prompts
    for ``seed`` (:func:`metasel.bench.cells.cell_seed`). Raises ``Unsupported`` when the
    collector cannot build the task's model."""
    import torch

    from metasel.bench.serve import build_model, draft_model_dict, make_prompts

    model, workload = task["model"], task["workload"]
    out_len = int(workload["output_len"])
    prompts, _ = make_prompts(workload, model["vocab"], seed)
    max_pos = max(len(p) for p in prompts) + out_len + 16
    t0 = time.perf_counter()
    with torch.inference_mode():
        lm = build_model(model, attention="sdpa", max_positions=max_pos, seed=seed, device=device)
        draft = build_model(draft_model_dict(model), attention="sdpa", max_positions=max_pos, seed=seed + 1,
                            device=device)
        generated = lookup = drafted = 0
        for p in prompts:
            ids = torch.tensor([p], device=device)
            seq = lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=out_len,
                              min_new_tokens=out_len, do_sample=False, pad_token_id=0)[0]
            probs = torch.softmax(draft(input_ids=seq[None, :-1]).logits[0].float(), dim=-1)
            conf, guess = probs.max(dim=-1)  # position j - 1 predicts token j
            target = seq[1:]
            agree = [False] + (guess == target).tolist()
            sure = [False] + (conf >= DRAFT_CONFIDENCE).tolist()
            tokens = seq.tolist()
            generated += out_len
            lookup += lookup_passes(tokens, len(p))
            drafted += draft_passes(tokens, len(p), agree, sure)
    return {"lookup_tokens_per_pass": generated / lookup, "draft_tokens_per_pass": generated / drafted,
            "landmark_s": time.perf_counter() - t0}


def buildable(spec: dict[str, Any]) -> bool:
    """Whether the collector can build this task's model (an inference spec with an arch)."""
    model, workload = spec.get("model"), spec.get("workload")
    return isinstance(model, dict) and isinstance(workload, dict) and bool(model.get("arch")) \
        and "output_len" in workload


def task_landmarks(task_id: str, spec: dict[str, Any], *, run_seed: int = 0, device: str = "cpu") -> dict[str, float]:
    """:func:`measure_landmarks` with the seed the collector gives this task for ``run_seed``."""
    from metasel.bench.cells import cell_seed

    return measure_landmarks(spec, seed=cell_seed(run_seed, task_id), device=device)


def fill_store(store, *, run_seed: int = 0, force: bool = False, tasks: set[str] | None = None,
               say=lambda msg: None) -> dict[str, dict[str, float]]:
    """Measure the landmarks of every stored task (or of ``tasks``) that has none and whose
    model the collector can build, and store each as soon as it is measured. Returns
    ``task_id -> landmarks`` of those measured; a task the collector cannot build is skipped
    with a message, never an error."""
    import json

    from metasel.bench.serve import Unsupported

    frame = store.load().tasks
    done: dict[str, dict[str, float]] = {}
    for tid, name, spec_json, feats_json in frame[["task_id", "name", "spec", "features"]].itertuples(index=False):
        if tasks is not None and tid not in tasks:
            continue
        spec, feats = json.loads(spec_json or "{}"), json.loads(feats_json or "{}")
        if not buildable(spec) or (not force and all(k in feats for k in LANDMARKS)):
            continue
        try:
            lm = task_landmarks(tid, spec, run_seed=run_seed)
        except Unsupported as exc:
            say(f"  {name}: no landmarks ({exc})")
            continue
        seconds = lm.pop("landmark_s")
        store.set_task_features(tid, lm, replace=force)
        done[tid] = lm
        say(f"  {name}: prompt lookup {lm['lookup_tokens_per_pass']:.2f}, assisted "
            f"{lm['draft_tokens_per_pass']:.2f} tokens per pass ({seconds:.1f} s)")
    return done

