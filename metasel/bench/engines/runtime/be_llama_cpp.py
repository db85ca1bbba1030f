"""llama.cpp through llama-cpp-python: the checkpoint converted to GGUF by llama.cpp's own converter.

Settings: ``gguf_type`` (``f32``, ``f16``, ``q8_0`` from ``convert_hf_to_gguf.py``; ``q4_K_M``,
``q4_0`` through ``llama_model_quantize``; one artifact each), ``n_batch`` (the prompt
batch: tokens per decode call while reading a prompt) and ``flash_attn``. The bindings'
``Llama`` object holds one sequence, so requests are served one at a time; greedy (top-k 1),
no repetition penalty, stopping after ``output_len`` tokens whatever they are.
"""

from __future__ import annotations

import os
import sys

import artifacts

HERE = os.path.dirname(os.path.abspath(__file__))
CONVERTER = os.path.join(os.path.dirname(os.path.dirname(sys.executable)), "llama.cpp-convert")


def versions() -> dict:
    import llama_cpp

    return {"llama-cpp-python": llama_cpp.__version__}


class Backend:
    def __init__(self, checkpoint: str, settings: dict, threads: int):
        import llama_cpp

        gguf_type = settings.get("gguf_type", "f32")
        self.exact = gguf_type == "f32"
        self.max_batch = 1  # the bindings' Llama holds one sequence
        if not os.path.exists(os.path.join(CONVERTER, "convert_hf_to_gguf.py")):
            raise RuntimeError(f"llama.cpp's converter is missing from {CONVERTER}; "
                               "reinstall with: metasel engines install --force llama_cpp")
        out, self.convert_s = artifacts.converted(
            checkpoint, f"gguf-{llama_cpp.__version__}-{gguf_type}",
            lambda tmp: [sys.executable, os.path.join(HERE, "gguf_convert.py"), CONVERTER, checkpoint,
                         os.path.join(tmp, "model.gguf"), gguf_type])
        n_ctx = int(artifacts.model_config(checkpoint)["max_position_embeddings"])
        self.llm = llama_cpp.Llama(os.path.join(out, "model.gguf"), n_ctx=n_ctx, n_threads=int(threads),
                                   n_threads_batch=int(threads), n_batch=int(settings.get("n_batch", 512)),
                                   flash_attn=bool(settings.get("flash_attn", False)), verbose=False)

    def _generate(self, prompt, n, on_token):
        count = 0
        for tok in self.llm.generate(list(prompt), temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                     reset=True):
            on_token(tok)
            count += 1
            if count == n:
                break

    def greedy(self, prompt, n):
        out = []
        self._generate(prompt, n, out.append)
        return out

    def run_batch(self, prompts, n, on_token, stamp=None):
        (prompt,) = prompts
        self._generate(prompt, n, lambda tok: on_token(0))

    def close(self):
        self.llm.close()
